"""``benchmark compare OLD NEW``: what changed between two leaderboards.

Per model and scorer present in both: the old and new mean, the difference, and whether the two
bootstrap intervals overlap (a change whose intervals overlap may be noise); rank changes; models
and scorers only in one; and a warning when the prompt sets or seeds differ (then means are not
comparable as they stand).
"""

from __future__ import annotations

import json
from pathlib import Path

from prefalign.benchmark.images import BenchmarkError
from prefalign.benchmark.leaderboard import FORMAT


def read_leaderboard(path: str | Path) -> dict:
    """A ``leaderboard.json`` (or the run directory holding one).

    Raises:
        BenchmarkError: no such file, not JSON, or not a prefalign leaderboard.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "leaderboard.json"
    if not path.is_file():
        raise BenchmarkError(f"{path}: no such leaderboard (give a leaderboard.json or its run directory)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: not a JSON leaderboard ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BenchmarkError(
            f'{path}: not a prefalign leaderboard (no "format": "{FORMAT}"); write one with `prefalign benchmark run`'
        )
    return data


def compare_leaderboards(old: dict, new: dict) -> dict:
    """The differences of ``new`` against ``old`` (both as read by ``read_leaderboard``).

    Returns:
        ``{"rows": [{model, scorer, old, new, difference, old_ci, new_ci, intervals_overlap,
        old_rank, new_rank}], "only_old": [...], "only_new": [...], "scorers_only_old": [...],
        "scorers_only_new": [...], "warnings": [...]}``.
    """
    warnings = []
    po, pn = old.get("prompt_set", {}), new.get("prompt_set", {})
    if (po.get("name"), po.get("selected"), po.get("categories")) != (
        pn.get("name"),
        pn.get("selected"),
        pn.get("categories"),
    ):
        warnings.append(
            f"prompt sets differ (old {po.get('name')} with {po.get('selected')} prompts, new {pn.get('name')} "
            f"with {pn.get('selected')}): means are not comparable as they stand"
        )
    if old.get("seeds") != new.get("seeds"):
        warnings.append(f"seeds differ (old {old.get('seeds')}, new {new.get('seeds')})")
    so = [s["name"] for s in old.get("scorers", [])]
    sn = [s["name"] for s in new.get("scorers", [])]
    scorers = [s for s in sn if s in so]
    models_old, models_new = list(old.get("results", {})), list(new.get("results", {}))
    rank_old = {m: i + 1 for i, m in enumerate(old.get("ranking", []))}
    rank_new = {m: i + 1 for i, m in enumerate(new.get("ranking", []))}
    rows = []
    for m in (m for m in models_new if m in models_old):
        for s in scorers:
            a, b = old["results"][m].get(s), new["results"][m].get(s)
            if a is None or b is None:
                continue
            diff = None if a["mean"] is None or b["mean"] is None else b["mean"] - a["mean"]
            overlap = None
            if None not in (a.get("ci_low"), a.get("ci_high"), b.get("ci_low"), b.get("ci_high")):
                overlap = not (b["ci_low"] > a["ci_high"] or b["ci_high"] < a["ci_low"])
            rows.append(
                {
                    "model": m,
                    "scorer": s,
                    "old": a["mean"],
                    "new": b["mean"],
                    "difference": diff,
                    "old_ci": [a.get("ci_low"), a.get("ci_high")],
                    "new_ci": [b.get("ci_low"), b.get("ci_high")],
                    "intervals_overlap": overlap,
                    "old_rank": rank_old.get(m),
                    "new_rank": rank_new.get(m),
                }
            )
    return {
        "rows": rows,
        "only_old": [m for m in models_old if m not in models_new],
        "only_new": [m for m in models_new if m not in models_old],
        "scorers_only_old": [s for s in so if s not in sn],
        "scorers_only_new": [s for s in sn if s not in so],
        "warnings": warnings,
    }


def format_comparison(diff: dict) -> str:
    """The comparison as a Markdown table with its notes."""

    def num(x, signed=False):
        return "–" if x is None else (f"{x:+.4f}" if signed else f"{x:.4f}")

    lines = [
        "| model | scorer | old | new | difference | intervals overlap | rank old → new |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in diff["rows"]:
        overlap = (
            "–"
            if r["intervals_overlap"] is None
            else ("yes" if r["intervals_overlap"] else "no (a real change)")
        )
        lines.append(
            f"| {r['model']} | {r['scorer']} | {num(r['old'])} | {num(r['new'])} | {num(r['difference'], True)} | "
            f"{overlap} | {r['old_rank'] or '–'} → {r['new_rank'] or '–'} |"
        )
    for key, label in (
        ("only_old", "models only in OLD"),
        ("only_new", "models only in NEW"),
        ("scorers_only_old", "scorers only in OLD"),
        ("scorers_only_new", "scorers only in NEW"),
    ):
        if diff[key]:
            lines.append(f"\n{label}: {', '.join(diff[key])}")
    for w in diff["warnings"]:
        lines.append(f"\nwarning: {w}")
    return "\n".join(lines) + "\n"
