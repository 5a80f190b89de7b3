"""The leaderboard: per model each scorer's mean with a bootstrap interval over prompts, paired
win rates with a sign test, and per-category means.

Statistics (reusing ``prefalign.evaluate``):

* mean: the mean score of a model's images (all prompts and seeds), as HPS v2's benchmark reports;
* interval: percentile bootstrap resampling *prompts* (the seeds of a prompt stay together, as
  they are not independent), ``bootstrap_ci`` with ``num`` = a prompt's score sum and ``den`` its
  image count; every model uses the same resamples (same seed, same prompts);
* win rate of A over B: the share of (prompt, seed) pairs where A's image scores higher (ties
  count half), with a two-sided sign test (ties left out), ``paired_comparison``;
* categories: the mean per category, when the prompt set has categories.

Images that failed to score are NaN and left out of every statistic; the notes count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prefalign.benchmark.prompts import PromptSet
from prefalign.evaluate.bootstrap import bootstrap_ci
from prefalign.evaluate.compare import paired_comparison

FORMAT = "prefalign-leaderboard"
VERSION = 1


@dataclass
class ScoreGrid:
    """Scores of one scorer for every model on the same (prompt, seed) keys.

    Attributes:
        keys: ``(prompt index, seed)`` in order, shared by all models.
        values: model -> array of shape ``(len(keys),)``; NaN where an image failed to score.
    """

    keys: list[tuple[int, int]]
    values: dict[str, np.ndarray]


@dataclass
class Leaderboard:
    """Everything ``leaderboard.json`` holds (see ``to_dict``)."""

    prompt_set: dict
    seeds: list[int]
    models: list[dict]
    scorers: list[dict]
    ranking_scorer: str
    ranking: list[str]
    results: dict[str, dict[str, dict]]
    win_rates: dict[str, dict[str, dict[str, dict]]]
    categories: dict[str, dict[str, dict[str, dict]]]
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "prompt_set": self.prompt_set,
            "seeds": self.seeds,
            "models": self.models,
            "scorers": self.scorers,
            "ranking_scorer": self.ranking_scorer,
            "ranking": self.ranking,
            "results": self.results,
            "win_rates": self.win_rates,
            "categories": self.categories,
            "settings": self.settings,
            "notes": self.notes,
        }


def _per_prompt(
    keys: Sequence[tuple[int, int]], values: np.ndarray, prompts: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt (in ``prompts`` order): the sum of finite scores and their count."""
    where = {p: i for i, p in enumerate(prompts)}
    num = np.zeros(len(prompts))
    den = np.zeros(len(prompts))
    for (p, _), v in zip(keys, values):
        if np.isfinite(v):
            num[where[p]] += v
            den[where[p]] += 1
    return num, den


def compute_leaderboard(
    prompt_set: PromptSet,
    seeds: Sequence[int],
    models: Sequence[dict],
    scorers: Sequence[dict],
    grids: dict[str, ScoreGrid],
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    settings: dict | None = None,
    notes: Sequence[str] = (),
) -> Leaderboard:
    """Compute the leaderboard from per-image scores.

    Args:
        prompt_set: the prompts (their categories feed the breakdown).
        seeds: the seeds.
        models: ``{"name", "base", "lora", ...}`` per model, in the order given.
        scorers: ``{"name", "kind"}`` per scorer; the first ranks the models.
        grids: scorer name -> its ``ScoreGrid``.
        n_bootstrap, level, seed: the bootstrap (1000 resamples, 95%: ours, as ``eval``'s reports).
        settings: generation settings, recorded as given.
        notes: lines about skipped or missing images.
    """
    names = [m["name"] for m in models]
    category_of = {p.index: p.category for p in prompt_set.prompts}
    notes = list(notes)
    results: dict[str, dict[str, dict]] = {m: {} for m in names}
    win_rates: dict[str, dict[str, dict[str, dict]]] = {}
    categories: dict[str, dict[str, dict[str, dict]]] = {}
    for scorer in scorers:
        sname = scorer["name"]
        grid = grids[sname]
        prompts = list(dict.fromkeys(p for p, _ in grid.keys))
        for m in names:
            values = grid.values[m]
            failed = int(np.sum(~np.isfinite(values)))
            if failed:
                notes.append(f"{m}: {failed} of {len(values)} images not scored by {sname} (left out)")
            num, den = _per_prompt(grid.keys, values, prompts)
            low, high = bootstrap_ci(num, den, n_resamples=n_bootstrap, level=level, seed=seed)
            total = den.sum()
            results[m][sname] = {
                "mean": float(num.sum() / total) if total else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "std": float(np.nanstd(values)) if total else float("nan"),
                "n_images": int(total),
                "n_prompts": int(np.sum(den > 0)),
            }
        win_rates[sname] = {
            a: {b: _pair(grid.values[a], grid.values[b]) for b in names if b != a} for a in names
        }
        if prompt_set.has_categories:
            categories[sname] = {}
            for m in names:
                per: dict[str, list[float]] = {}
                for (p, _), v in zip(grid.keys, grid.values[m]):
                    if np.isfinite(v) and category_of.get(p):
                        per.setdefault(category_of[p], []).append(float(v))
                categories[sname][m] = {
                    c: {"mean": float(np.mean(per[c])), "n_images": len(per[c])}
                    for c in prompt_set.categories()
                    if c in per
                }
    first = scorers[0]["name"]
    ranking = sorted(names, key=lambda m: -_finite(results[m][first]["mean"]))
    return Leaderboard(
        prompt_set=prompt_set.to_dict(),
        seeds=[int(s) for s in seeds],
        models=list(models),
        scorers=list(scorers),
        ranking_scorer=first,
        ranking=ranking,
        results=results,
        win_rates=win_rates,
        categories=categories,
        settings=dict(settings or {}, n_bootstrap=n_bootstrap, level=level, bootstrap_seed=seed),
        notes=notes,
    )


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -np.inf


def _pair(a: np.ndarray, b: np.ndarray) -> dict:
    """A's record against B: A's win rate (ties half), wins, losses, ties, sign-test p, n."""
    r = paired_comparison(b, a)  # "B" of paired_comparison is the row model
    if r is None:
        return {"win_rate": None, "wins": 0, "losses": 0, "ties": 0, "sign_test_p": None, "n": 0}
    return {
        "win_rate": r.win_rate_b,
        "wins": r.wins_b,
        "losses": r.wins_a,
        "ties": r.ties,
        "sign_test_p": r.sign_test_p,
        "n": r.n,
    }
