"""Prompt sets of a benchmark: the shipped ones (PartiPrompts, Lee et al.'s compositional family)
and any user file, each prompt keeping its index in the full set.

The index names the images (``00042-s3.png`` is prompt 42, seed 3), so a subset (``--limit``,
``--categories``) reuses the images of a larger run, and two runs on the same set pair by index.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from prefalign.errors import PrefalignError

# Shipped sets: name -> (description, source, license).
BUILTIN_SETS: dict[str, tuple[str, str, str]] = {
    "parti": (
        "PartiPrompts (P2): 1,632 prompts with a Category and a Challenge",
        "google-research/parti, PartiPrompts.tsv (Yu et al. 2022)",
        "Apache-2.0 (see prefalign/benchmark/data/PartiPrompts.LICENSE)",
    ),
    "lee-compositional": (
        "Lee et al.'s compositional prompts: count, colour, background and combined categories",
        "prefalign.train.prompts.compositional_prompts (the family `prefalign data prompts compositional` writes)",
        "Apache-2.0 (prefalign)",
    ),
}
PARTI_FILE = "PartiPrompts.tsv"
PROMPT_FILE_SUFFIXES = (".txt", ".tsv", ".csv", ".jsonl")


class PromptSetError(PrefalignError, ValueError):
    """A prompt set that cannot be read or subset (names the file, the reason and the fix)."""


@dataclass(frozen=True)
class BenchmarkPrompt:
    """One prompt of a set: its index in the full set, its text and its category (None if none)."""

    index: int
    text: str
    category: str | None = None
    challenge: str | None = None


@dataclass
class PromptSet:
    """The prompts a benchmark runs, in order, each with its index in the full set.

    Attributes:
        name: the set's name (``parti``) or the file it came from.
        prompts: the selected prompts.
        total: how many prompts the full set has.
        source: where the prompts come from (for the leaderboard's header).
        license: their license, when known.
    """

    name: str
    prompts: list[BenchmarkPrompt]
    total: int
    source: str = ""
    license: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def has_categories(self) -> bool:
        return any(p.category for p in self.prompts)

    def categories(self) -> list[str]:
        """Distinct categories in order of first appearance."""
        return list(dict.fromkeys(p.category for p in self.prompts if p.category))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "total": self.total,
            "selected": len(self.prompts),
            "source": self.source,
            "license": self.license,
            "categories": self.categories(),
            "notes": self.notes,
        }


def load_prompt_set(
    source: str | Path, *, limit: int | None = None, categories: Sequence[str] | None = None
) -> PromptSet:
    """Read a shipped set by name or a user file, then subset it deterministically.

    Args:
        source: ``parti``, ``lee-compositional``, or a file: ``.txt`` (one prompt a line; blank
            lines and ``#`` comments skipped) or ``.tsv``/``.csv``/``.jsonl`` with a ``prompt``
            column (``Prompt`` as in PartiPrompts works too) and optional ``category``.
        limit: keep at most this many prompts (see ``subset``).
        categories: keep only prompts of these categories (case-insensitive).

    Raises:
        PromptSetError: unknown name, unreadable file, no ``prompt`` column, empty prompts,
            unknown categories or a limit below 1.
    """
    name = str(source)
    full = _builtin(name) if name in BUILTIN_SETS else _from_file(Path(source))
    return subset(full, limit=limit, categories=categories)


def subset(
    prompt_set: PromptSet, *, limit: int | None = None, categories: Sequence[str] | None = None
) -> PromptSet:
    """Keep the prompts of ``categories``, then at most ``limit`` of them.

    The limit takes prompts round-robin across categories in file order (ours: the first N of
    PartiPrompts would be almost all "Abstract"), so every category is represented and the
    choice depends on the set only, never on a random state.
    """
    prompts = prompt_set.prompts
    if categories:
        known = {c.casefold(): c for c in prompt_set.categories()}
        unknown = [c for c in categories if c.casefold() not in known]
        if unknown:
            shown = ", ".join(prompt_set.categories()) or "none (the set has no categories)"
            raise PromptSetError(f"{prompt_set.name}: unknown categories {unknown}; the set has: {shown}")
        wanted = {c.casefold() for c in categories}
        prompts = [p for p in prompts if p.category and p.category.casefold() in wanted]
    if limit is not None:
        if limit < 1:
            raise PromptSetError(f"--limit must be at least 1, got {limit}")
        prompts = _round_robin(prompts, limit)
    return PromptSet(
        prompt_set.name,
        prompts,
        prompt_set.total,
        prompt_set.source,
        prompt_set.license,
        list(prompt_set.notes),
    )


def _round_robin(prompts: list[BenchmarkPrompt], limit: int) -> list[BenchmarkPrompt]:
    """The first ``limit`` prompts taking one per category in turn; returned in index order."""
    if limit >= len(prompts):
        return list(prompts)
    groups: dict[str | None, list[BenchmarkPrompt]] = {}
    for p in prompts:
        groups.setdefault(p.category, []).append(p)
    chosen: list[BenchmarkPrompt] = []
    depth = 0
    while len(chosen) < limit:
        for group in groups.values():
            if depth < len(group) and len(chosen) < limit:
                chosen.append(group[depth])
        depth += 1
    return sorted(chosen, key=lambda p: p.index)


def _builtin(name: str) -> PromptSet:
    _, source, license_ = BUILTIN_SETS[name]
    if name == "parti":
        resource = resources.files("prefalign.benchmark") / "data" / PARTI_FILE
        with resources.as_file(resource) as path:
            full = _from_file(path)
        prompts = full.prompts
    else:
        from prefalign.train.prompts import compositional_prompts

        prompts = [BenchmarkPrompt(i, p.text, p.category) for i, p in enumerate(compositional_prompts())]
    return PromptSet(name, prompts, len(prompts), source, license_)


def _from_file(path: Path) -> PromptSet:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise PromptSetError(
            f"{path}: no such prompt file (give a file or one of the shipped sets: {', '.join(BUILTIN_SETS)})"
        )
    if suffix not in PROMPT_FILE_SUFFIXES:
        raise PromptSetError(f"{path}: prompt files end in {', '.join(PROMPT_FILE_SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptSetError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    if suffix == ".txt":
        lines = [line.strip() for line in text.splitlines()]
        texts = [(t, None, None) for t in lines if t and not t.startswith("#")]
    else:
        texts = _table_rows(path, text, suffix)
    prompts = [BenchmarkPrompt(i, t, c, ch) for i, (t, c, ch) in enumerate(texts)]
    if not prompts:
        raise PromptSetError(f"{path}: no prompts")
    return PromptSet(str(path), prompts, len(prompts), str(path))


def _table_rows(path: Path, text: str, suffix: str) -> list[tuple[str, str | None, str | None]]:
    """``(prompt, category, challenge)`` of each row of a .tsv, .csv or .jsonl file."""
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PromptSetError(f"{path}: line {n} is not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise PromptSetError(f"{path}: line {n} is not a JSON object")
            rows.append(row)
    else:
        # PartiPrompts quotes nothing and some prompts hold quotation marks ("G I G G L E"
        # painted ...), so TSV is read without quoting; CSV follows the usual rules.
        quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
        delimiter = "\t" if suffix == ".tsv" else ","
        rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter, quoting=quoting))
    out = []
    for n, row in enumerate(rows, 1):
        lowered = {str(k).strip().casefold(): v for k, v in row.items() if k is not None}
        if "prompt" not in lowered:
            raise PromptSetError(
                f"{path}: no 'prompt' column (columns: {', '.join(map(str, row))}); name the prompt column 'prompt'"
            )
        prompt = str(lowered["prompt"] or "").strip()
        if not prompt:
            raise PromptSetError(f"{path}: row {n} has an empty prompt; remove the row or fill it in")
        category = lowered.get("category")
        challenge = lowered.get("challenge")
        out.append(
            (
                prompt,
                str(category).strip() or None if category is not None else None,
                str(challenge).strip() or None if challenge is not None else None,
            )
        )
    return out
