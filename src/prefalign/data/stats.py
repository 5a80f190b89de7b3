"""What a dataset holds, as section 3 of the HPS paper reports it: ``prefalign data stats``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefalign.data.dataset import load_dataset
from prefalign.data.mining import read_mining_report


def dataset_stats(path: str | Path) -> dict[str, Any]:
    """Counts of a dataset: prompts, images, images per prompt, users, labels, and what was dropped.

    Returns:
        A JSON-friendly dict. ``dropped`` (reason -> count) and ``mining`` come from the report
        ``from-discord`` leaves beside the records, when there is one.
    """
    dataset = load_dataset(path)
    per_user = Counter(r.user for r in dataset if r.user is not None and r.chosen is not None)
    stats: dict[str, Any] = {
        "records": len(dataset),
        "prompts": len({r.prompt for r in dataset}),
        "images": sum(len(r.images) for r in dataset),
        "distinct_images": len({i for r in dataset for i in r.images}),
        "images_per_prompt": dict(sorted(Counter(len(r.images) for r in dataset).items())),
        "choices": sum(r.chosen is not None for r in dataset),
        "rankings": sum(r.ranks is not None for r in dataset),
        "ratings": sum(r.ratings is not None for r in dataset),
        "users": len({r.user for r in dataset if r.user is not None}),
        "most_choices_by_one_user": max(per_user.values(), default=0),
        "splits": dict(Counter(r.split or "(none)" for r in dataset).most_common()),
        "sources": dict(Counter(r.source or "(none)" for r in dataset).most_common()),
        "images_not_fetched": sum("://" in i for r in dataset for i in r.images),
    }
    report = read_mining_report(dataset.root)
    if report is not None:
        stats["dropped"] = dict(report.skipped.most_common())
        stats["mining"] = {
            "files": len(report.files),
            "messages": report.messages,
            "duplicate_messages": report.duplicate_messages,
            "requests": report.requests,
            "generations": report.generations,
            "errors": report.errors,
            "ignored_messages": dict(report.ignored_messages.most_common()),
            "unknown_types": dict(report.unknown_types.most_common()),
            "missing_media": dict(report.missing_media.most_common()),
        }
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    """The stats as aligned text for the terminal."""
    lines = []
    for key in (
        "records",
        "prompts",
        "images",
        "distinct_images",
        "choices",
        "rankings",
        "ratings",
        "users",
        "most_choices_by_one_user",
        "images_not_fetched",
    ):
        lines.append(f"{key.replace('_', ' '):<26}{stats[key]:>10,}")
    lines.append("images per prompt")
    total = max(1, stats["records"])
    for n, count in stats["images_per_prompt"].items():
        lines.append(f"  {n:>3} images              {count:>10,}  ({100 * count / total:.1f}%)")
    for key in ("splits", "sources"):
        lines.append(f"{key:<26}" + ", ".join(f"{k}: {v:,}" for k, v in stats[key].items()))
    if "mining" in stats:
        m = stats["mining"]
        lines.append(
            f"mined from {m['files']} export(s): {m['messages']:,} messages ({m['duplicate_messages']:,} duplicates), "
            f"{m['requests']:,} requests, {m['generations']:,} generations"
        )
        if stats["dropped"]:
            lines.append("dropped (reason: count)")
            lines += [f"  {reason:<48}{count:>8,}" for reason, count in stats["dropped"].items()]
        if m["unknown_types"]:
            kinds = ", ".join(f"{k}: {v:,}" for k, v in m["unknown_types"].items())
            lines.append(f"message types read by content (the exporter does not name them): {kinds}")
        for reason, count in m["missing_media"].items():
            lines.append(f"missing local images ({reason}): {count:,}")
        for err in m["errors"]:
            lines.append(f"error: {err}")
    return "\n".join(lines)
