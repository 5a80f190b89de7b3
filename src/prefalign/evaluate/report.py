"""Reports: the same content as JSON (numbers), Markdown (PNG files beside it) and one HTML file
with the PNGs embedded, so a report travels as a single file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


@dataclass
class Section:
    """One part of a report: paragraphs, an optional table, optional figures (name, figure, caption)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    columns: list[str] | None = None
    rows: list[list[str]] = field(default_factory=list)
    figures: list[tuple[str, Figure, str]] = field(default_factory=list)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` places, None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_report(
    out: str | Path, title: str, sections: list[Section], data: dict[str, Any]
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.html`` and ``plots/*.png`` into ``out``.

    Args:
        out: the report directory (created).
        title: the report's heading.
        sections: the human-readable content.
        data: every number, for ``report.json``.

    Returns:
        The paths written: ``json``, ``markdown``, ``html`` and one per plot name.
    """
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    pngs: dict[str, bytes] = {}
    for section in sections:
        for name, figure, _ in section.figures:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            pngs[name] = buffer.getvalue()
            paths[name] = out / "plots" / f"{name}.png"
            paths[name].write_bytes(pngs[name])

    text = json.loads(json.dumps(data, default=_json_default))
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(_clean(text), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(_markdown(title, sections), encoding="utf-8")
    paths["html"] = out / "report.html"
    paths["html"].write_text(_html(title, sections, pngs), encoding="utf-8")
    return paths


def _markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for p in s.paragraphs:
            lines += [p, ""]
        if s.columns:
            lines.append("| " + " | ".join(s.columns) + " |")
            lines.append("|" + "|".join("---" for _ in s.columns) + "|")
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in s.rows]
            lines.append("")
        for name, _, caption in s.figures:
            lines += [f"![{caption}](plots/{name}.png)", "", f"*{caption}*", ""]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
    "th{background:#f3f3f3}figure{margin:1rem 0}img{max-width:100%}figcaption{color:#555;font-size:.9rem}"
)


def _html(title: str, sections: list[Section], pngs: dict[str, bytes]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"]
    parts.append(f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>")
    for s in sections:
        parts.append(f"<h2>{e(s.title)}</h2>")
        parts += [f"<p>{_inline(p)}</p>" for p in s.paragraphs]
        if s.columns:
            parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in s.columns) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in s.rows]
            parts.append("</table>")
        for name, _, caption in s.figures:
            data = base64.b64encode(pngs[name]).decode("ascii")
            parts.append(
                f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape a paragraph and render its `code` spans (the only Markdown the reports use inline)."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
