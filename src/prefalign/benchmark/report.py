"""Write a leaderboard as ``leaderboard.json`` (every number), ``leaderboard.md`` (tables, PNG
plots beside it) and one self-contained ``leaderboard.html`` (plots and image grid embedded)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from prefalign.benchmark.leaderboard import Leaderboard
from prefalign.evaluate.report import fmt
from prefalign.files import write_atomic

GRID_PROMPTS = 6  # prompts shown in the image grid (ours)
THUMBNAIL = 160  # px, longest side of a grid image (ours)


def _clean(value):
    """NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def leaderboard_tables(board: Leaderboard) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) of the leaderboard's tables, shared by Markdown and HTML."""
    level = board.settings.get("level", 0.95)
    scorers = [s["name"] for s in board.scorers]
    columns = ["rank", "model"] + [f"{s} (mean [{level:.0%} CI])" for s in scorers] + ["images"]
    rows = []
    for i, m in enumerate(board.ranking, 1):
        cells = [str(i), m]
        for s in scorers:
            r = board.results[m][s]
            cells.append(f"{fmt(r['mean'], 4)} [{fmt(r['ci_low'], 4)}, {fmt(r['ci_high'], 4)}]")
        cells.append(str(board.results[m][scorers[0]]["n_images"]))
        rows.append(cells)
    tables = [(f"Ranking (by {board.ranking_scorer})", columns, rows)]
    for s in scorers:
        wr = board.win_rates[s]
        rows = []
        for i, a in enumerate(board.ranking):
            for b in board.ranking[i + 1 :]:  # each pair once, the higher-ranked model first
                r = wr[a][b]
                record = f"{r['wins']}/{r['losses']}/{r['ties']}"
                rows.append([a, b, fmt(r["win_rate"]), record, _p(r["sign_test_p"])])
        tables.append(
            (
                f"Paired win rates: {s}",
                ["model", "against", "win rate", "wins/losses/ties", "sign test p"],
                rows,
            )
        )
    for s, per_model in board.categories.items():
        cats = list(board.prompt_set.get("categories") or [])
        rows = [[m] + [fmt(per_model[m].get(c, {}).get("mean"), 3) for c in cats] for m in board.ranking]
        tables.append((f"Per category: {s}", ["model", *cats], rows))
    return tables


def _p(p) -> str:
    if p is None:
        return "–"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def leaderboard_figures(board: Leaderboard) -> list[tuple[str, object, str]]:
    """(file stem, figure, caption) of every plot."""
    from prefalign.benchmark import plots

    figures = []
    level = board.settings.get("level", 0.95)
    models = board.ranking
    for s in (x["name"] for x in board.scorers):
        stem = _stem(s)
        res = [board.results[m][s] for m in models]
        figures.append(
            (
                f"scores-{stem}",
                plots.score_intervals(
                    models,
                    [r["mean"] for r in res],
                    [r["ci_low"] for r in res],
                    [r["ci_high"] for r in res],
                    scorer=s,
                    level=level,
                ),
                f"{s}: mean score per model with its {level:.0%} bootstrap interval (resampling prompts)",
            )
        )
        if s in board.categories:
            cats = list(board.prompt_set.get("categories") or [])
            values = np.array(
                [[board.categories[s][m].get(c, {}).get("mean", np.nan) for c in cats] for m in models],
                dtype=float,
            )
            figures.append(
                (
                    f"categories-{stem}",
                    plots.category_heatmap(models, cats, values, scorer=s),
                    f"{s}: mean score per model and category",
                )
            )
        if len(models) > 1:
            rates = win_rate_matrix(board, s)
            figures.append(
                (
                    f"wins-{stem}",
                    plots.win_matrix(models, rates, scorer=s),
                    f"{s}: how often the row model's image beats the column model's, same prompt and seed",
                )
            )
    return figures


def win_rate_matrix(board: Leaderboard, scorer: str) -> np.ndarray:
    """Row model's win rate over column model, models in ranking order; NaN on the diagonal."""
    rates = board.win_rates[scorer]
    models = board.ranking
    out = np.full((len(models), len(models)), np.nan)
    for i, a in enumerate(models):
        for j, b in enumerate(models):
            value = rates[a][b]["win_rate"] if a != b else None
            if value is not None:  # a win rate of 0.0 is a value, not a gap
                out[i, j] = value
    return out


def _stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-60:]


def write_leaderboard(
    board: Leaderboard,
    out: str | Path,
    *,
    images: dict[str, dict[tuple[int, int], str]] | None = None,
    prompts: dict[int, str] | None = None,
) -> dict[str, Path]:
    """Write ``leaderboard.json``, ``leaderboard.md`` (+ ``plots/*.png``) and ``leaderboard.html``.

    Args:
        board: the leaderboard.
        out: the run directory.
        images: model -> {(prompt index, seed): path} for the image grid (first seed, first
            ``GRID_PROMPTS`` prompts); None for no grid.
        prompts: prompt index -> text, for the grid's row labels.

    Returns:
        The paths written, by kind (``json``, ``markdown``, ``html``) and plot name.
    """
    out = Path(out)
    paths: dict[str, Path] = {}
    data = _clean(json.loads(json.dumps(board.to_dict(), default=float)))
    paths["json"] = out / "leaderboard.json"
    write_atomic(paths["json"], json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    pngs: dict[str, bytes] = {}
    figures = leaderboard_figures(board)
    for stem, figure, _ in figures:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        pngs[stem] = buffer.getvalue()
        paths[stem] = out / "plots" / f"{stem}.png"
        write_atomic(paths[stem], pngs[stem])
    grid = _grid(board, images or {}, prompts or {})
    tables = leaderboard_tables(board)
    paths["markdown"] = out / "leaderboard.md"
    write_atomic(paths["markdown"], _markdown(board, tables, figures, grid, out))
    paths["html"] = out / "leaderboard.html"
    write_atomic(paths["html"], _html(board, tables, figures, pngs, grid))
    return paths


def _grid(
    board: Leaderboard, images: dict, prompts: dict[int, str]
) -> list[tuple[int, str, list[str | None]]]:
    """Rows of the image grid: (prompt index, text, one image path per ranked model)."""
    if not images:
        return []
    seed = board.seeds[0] if board.seeds else 0
    keys = sorted({k[0] for m in board.ranking for k in images.get(m, {}) if k[1] == seed})[:GRID_PROMPTS]
    return [(p, prompts.get(p, ""), [images.get(m, {}).get((p, seed)) for m in board.ranking]) for p in keys]


def _header_lines(board: Leaderboard) -> list[str]:
    ps = board.prompt_set
    seeds = board.seeds
    seed_text = (
        f"{seeds[0]}–{seeds[-1]}"
        if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1
        else ", ".join(map(str, seeds))
    )
    lines = [
        f"Prompt set `{ps['name']}`: {ps['selected']} of {ps['total']} prompts; seeds {seed_text}; "
        f"{len(board.models)} models; scorers {', '.join(s['name'] for s in board.scorers)}.",
    ]
    if ps.get("source") and ps["source"] != ps["name"]:
        lines.append(
            f"Prompts from {ps['source']}" + (f", license {ps['license']}." if ps.get("license") else ".")
        )
    lines.append(
        "Means over every image; intervals are percentile bootstrap intervals resampling prompts "
        f"({board.settings.get('n_bootstrap')} resamples); win rates pair images by prompt and seed (ties count half), "
        "with a two-sided sign test (ties left out)."
    )
    return lines


def _markdown(board: Leaderboard, tables, figures, grid, out: Path) -> str:
    lines = ["# Benchmark leaderboard", ""]
    for line in _header_lines(board):
        lines += [line, ""]
    for title, columns, rows in tables:
        lines += [
            f"## {title}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "|".join("---" for _ in columns) + "|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    for stem, _, caption in figures:
        lines += [f"![{caption}](plots/{stem}.png)", "", f"*{caption}*", ""]
    if grid:
        lines += [
            "## Images (first seed)",
            "",
            "| prompt | " + " | ".join(board.ranking) + " |",
            "|" + "---|" * (len(board.ranking) + 1),
        ]
        for p, text, paths in grid:
            cells = [f"![]({_relative(path, out)})" if path else "–" for path in paths]
            lines.append(f"| {p}: {text.replace('|', '/')} | " + " | ".join(cells) + " |")
        lines.append("")
    if board.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in board.notes] + [""]
    return "\n".join(lines)


def _relative(path: str, out: Path) -> str:
    try:
        return Path(path).resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}figure{margin:1rem 0}img{max-width:100%}figcaption{color:#555;font-size:.9rem}"
    ".grid td{text-align:center}.grid img{width:" + str(THUMBNAIL) + "px;image-rendering:pixelated}"
    ".grid td.prompt{text-align:left;max-width:18rem;font-size:.9rem}"
)


def _thumbnail(path: str) -> str | None:
    """A data URL of the image, scaled to THUMBNAIL px (None if it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            im.save(buffer, format="PNG")
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _html(board: Leaderboard, tables, figures, pngs: dict[str, bytes], grid) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Benchmark leaderboard</title>"]
    parts.append(f"<style>{_CSS}</style></head><body><h1>Benchmark leaderboard</h1>")
    for line in _header_lines(board):
        pieces = e(line).split("`")
        parts.append(
            "<p>" + "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces)) + "</p>"
        )
    # The ranking first, then the plots, then the detailed tables: the top of the page sums it up.
    for k, (title, columns, rows) in enumerate(tables):
        parts.append(
            f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
        if k == 0:
            parts.append("<h2>Plots</h2>")
            for stem, _, caption in figures:
                data = base64.b64encode(pngs[stem]).decode("ascii")
                parts.append(
                    f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{e(caption)}</figcaption></figure>"
                )
    if grid:
        parts.append("<h2>Images (first seed)</h2><table class='grid'><tr><th>prompt</th>")
        parts += [f"<th>{e(m)}</th>" for m in board.ranking]
        parts.append("</tr>")
        for p, text, paths in grid:
            cells = []
            for path in paths:
                url = _thumbnail(path) if path else None
                cells.append(f"<td><img alt='' src='{url}'></td>" if url else "<td>–</td>")
            parts.append(f"<tr><td class='prompt'>{p}: {e(text)}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    if board.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in board.notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
