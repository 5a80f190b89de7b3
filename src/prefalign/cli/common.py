"""Arguments and output helpers shared by several commands."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from prefalign.cli.main import CommandError
from prefalign.files import write_atomic


def add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--model, --kind, --tokenizer, --device, --precision, --batch-size, --compile."""
    p.add_argument(
        "--model",
        "-m",
        required=required,
        help="model directory, hub id, or known name (see `prefalign score --list-models`); "
        "prefix with KIND: (e.g. clip:DIR) to override the score kind",
    )
    from prefalign.scoring.catalog import SCORE_KINDS

    p.add_argument(
        "--kind",
        choices=sorted(SCORE_KINDS),
        help="the score kind (hps, clip, pickscore, aesthetic, reward); default: the model's prefalign.json, "
        "the catalog's kind for a known name or hub id, else clip (ours: never guessed from a folder name)",
    )
    p.add_argument(
        "--tokenizer",
        help="tokenizer directory or hub id for a model shipped without one (PickScore's is "
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K, as in its authors' README)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ... (default: auto)"
    )
    add_precision_arg(p)
    p.add_argument(
        "--batch-size", type=int, default=4, help="images per forward pass (default 4: best on 2 cores)"
    )
    p.add_argument(
        "--allow-slow",
        action="store_true",
        help="run a GPU-only scorer on the CPU anyway (HPSv3 is a 7B model: minutes and ~33 GB per image "
        "on a CPU; without this flag it refuses)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the image tower with inductor freezing (faster on some CPUs, not all: measure "
        "with benchmarks/bench_score.py; a one-off compile of about a minute; falls back to eager if it fails)",
    )


def describe_scorer(scorer) -> str:
    """One line saying which score kind a scorer uses and what decided it."""
    from prefalign.scoring.catalog import SCORE_KINDS

    source = getattr(scorer, "kind_source", None)
    return f"scoring with {scorer.name}: kind {scorer.kind} = {SCORE_KINDS.get(scorer.kind, scorer.kind)}" + (
        f" (kind from {source})" if source else ""
    )


def add_precision_arg(p: argparse.ArgumentParser) -> None:
    """--precision, default auto (detected per machine, see prefalign.scoring.precision)."""
    from prefalign.scoring.catalog import PRECISION_CHOICES, PRECISION_HELP

    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto", help=PRECISION_HELP)


def write_table(
    rows: Sequence[dict[str, Any]],
    out: str | Path,
    columns: Sequence[str],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write rows as Parquet or CSV (by the extension), atomically.

    ``metadata`` (how the values were computed) goes into the Parquet schema metadata under the key
    ``prefalign`` as JSON; CSV has no place for it.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise CommandError(f"{out}: output must end in .parquet or .csv")

    def write(fh: BinaryIO) -> None:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
            if not rows:
                table = pa.table({c: pa.array([], pa.string()) for c in columns})
            if metadata:
                table = table.replace_schema_metadata({"prefalign": json.dumps(metadata)})
            pq.write_table(table, fh)
        else:
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            text.flush()
            text.detach()  # leave the binary file to write_atomic

    write_atomic(out, write)
    return out


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], max_width: int = 60) -> str:
    """A plain aligned text table for the terminal."""

    def cell(v: Any) -> str:
        if v is None:
            s = "-"
        elif isinstance(v, float):
            s = f"{v:.4f}"
        else:
            s = str(v)
        return s if len(s) <= max_width else "…" + s[-(max_width - 1) :]

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------------- existing outputs
OUTPUT_DEST = "_output_dest"  # the parser default naming a command's output option
OUTPUT_MARKER = "_output_marker"  # the file inside an output directory that makes it "existing"
_MARKED = {"records.parquet": "a dataset", "report.json": "a report", "leaderboard.json": "a leaderboard"}


def guard_output(p: argparse.ArgumentParser, dest: str = "out", *, marker: str | None = None) -> None:
    """Declare ``p``'s output option: an existing output is refused unless ``--overwrite``.

    Every command that writes an output behaves the same (``prefalign.cli.main`` runs
    :func:`check_output` before the command): a file that exists, or a directory holding
    ``marker`` (a dataset's ``records.parquet``, a report's ``report.json``; without a marker: any
    entry), is refused with one line naming it and ``--overwrite``. With ``--overwrite`` the command
    writes over it. Adds ``--overwrite`` unless the command has it already.
    """
    if not any(a.dest == "overwrite" for a in p._actions):
        p.add_argument(
            "--overwrite", action="store_true", help="replace an existing output (default: refuse it)"
        )
    p.set_defaults(**{OUTPUT_DEST: dest, OUTPUT_MARKER: marker})


def existing_output(path: Path, marker: str | None) -> Path | None:
    """What makes ``path`` an existing output (the file, the marker, the directory), else None."""
    if path.is_file():
        return path
    if path.is_dir():
        if marker is not None:
            return path / marker if (path / marker).exists() else None
        return path if any(path.iterdir()) else None
    return None


def check_output(args: argparse.Namespace) -> None:
    """Refuse the command's existing output unless ``--overwrite`` (see :func:`guard_output`)."""
    dest = getattr(args, OUTPUT_DEST, None)
    value = getattr(args, dest, None) if dest else None
    if value is None or getattr(args, "overwrite", False):
        return
    found = existing_output(Path(value), getattr(args, OUTPUT_MARKER, None))
    if found is not None:
        what = (
            "already exists"
            if found == Path(value)
            else f"already holds {_MARKED.get(found.name, found.name)}"
        )
        raise CommandError(f"{value}: {what}; pass --overwrite to replace it, or choose another output")
