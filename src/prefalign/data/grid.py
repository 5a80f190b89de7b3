"""Grid images: how a record names one cell of a grid, and cutting a grid into its cells.

A bot that answers with one grid image of n cells gives n images to choose from. Until the grid
is fetched, a record names each cell by the grid's URL plus a fragment, which servers never see:
``https://cdn.example/grid.png#grid=2x2&cell=3`` is the fourth cell (row-major) of a grid of 2
columns and 2 rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from PIL import Image


@dataclass(frozen=True)
class CellRef:
    """One cell of a grid image."""

    url: str
    columns: int
    rows: int
    cell: int


def parse_cell_ref(ref: str) -> CellRef | None:
    """The cell a ``#grid=CxR&cell=k`` reference names, or None for a plain image reference."""
    base, sep, fragment = ref.partition("#")
    if not sep or "grid=" not in fragment:
        return None
    query = parse_qs(fragment)
    try:
        cols, rows = (int(v) for v in query["grid"][0].lower().split("x"))
        cell = int(query["cell"][0])
    except (KeyError, ValueError, IndexError):
        return None
    if cols < 1 or rows < 1 or not 0 <= cell < cols * rows:
        return None
    return CellRef(base, cols, rows, cell)


def cut_grid(image: Image.Image, columns: int, rows: int) -> list[Image.Image]:
    """Cut a grid image into its ``columns * rows`` cells, row-major.

    Cell edges are rounded from exact fractions of the size, so grids whose size is not a
    multiple of the cell count lose no pixel row or column.
    """
    width, height = image.size
    cells = []
    for r in range(rows):
        top, bottom = round(r * height / rows), round((r + 1) * height / rows)
        for c in range(columns):
            left, right = round(c * width / columns), round((c + 1) * width / columns)
            cells.append(image.crop((left, top, right, bottom)))
    return cells
