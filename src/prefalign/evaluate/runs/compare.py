"""``run_compare``: two generated sets, pair by pair (``prefalign eval compare``)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prefalign.data.dataset import Dataset
from prefalign.evaluate.agreement import Vote, votes_from_dataset
from prefalign.evaluate.bootstrap import bootstrap_ci
from prefalign.evaluate.compare import PairedComparison, PairedResult, pair_generated_sets
from prefalign.evaluate.distributed import gather_lists, metric_device, process_group
from prefalign.evaluate.errors import EvaluationError, NothingEvaluated
from prefalign.evaluate.runs.common import _local_shard, score_records, scorer_runtime, unique_names
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)


@dataclass
class CompareRun:
    """Set B against set A, image pair by image pair, per scorer; and an A/B study if given."""

    a: str
    b: str
    n_pairs: int
    results: dict[str, PairedResult | None]
    win_rate_ci: dict[str, tuple[float, float]]
    votes: dict | None
    vote_shares_b: np.ndarray = field(repr=False)
    runtime: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "command": "compare",
            "a": self.a,
            "b": self.b,
            "n_pairs": self.n_pairs,
            "results": {k: None if v is None else v.to_dict() for k, v in self.results.items()},
            "win_rate_b_ci": self.win_rate_ci,
            "votes": self.votes,
            "runtime": self.runtime,
        }


def ab_votes(votes: Sequence[Vote], a_images: set[str], b_images: set[str]) -> tuple[dict, np.ndarray]:
    """Tally an A/B study: which set each vote picked, and per pair the share of votes for B.

    Args:
        votes: votes on pairs of one image of A and one of B (in either order).
        a_images, b_images: the ``file_key`` of each image of the two sets.

    Returns:
        ``(summary, shares)``: counts, B's overall share of decided votes with its 95% Wilson
        interval and the two-sided exact binomial (sign) test p-value, and one share per item
        with at least one decided vote.
    """
    per_item: dict[str, list[float]] = {}
    unmatched = ties = 0
    for v in votes:
        keys = [file_key(p) for p in v.images]
        sides = ["a" if k in a_images else "b" if k in b_images else None for k in keys]
        if sorted(map(str, sides)) != ["a", "b"]:
            unmatched += 1
            continue
        if v.winner is None:
            ties += 1
            continue
        per_item.setdefault(v.item, []).append(float(sides[v.winner] == "b"))
    from prefalign.evaluate.ab_study import ShareOfB

    picks = [x for xs in per_item.values() for x in xs]
    shares = np.array([np.mean(xs) for xs in per_item.values()])
    tally = ShareOfB.of(int(len(picks) - sum(picks)), int(sum(picks)))
    summary = {
        "votes_b": tally.votes_b,
        "votes_a": tally.votes_a,
        "ties": ties,
        "unmatched": unmatched,
        "share_b": tally.share_b if picks else None,
        # 95% Wilson score interval and two-sided exact binomial test (see evaluate.ab_study)
        "share_b_ci": [tally.ci_low, tally.ci_high] if picks else None,
        "sign_test_p": tally.sign_test_p,
        "items": len(per_item),
    }
    return summary, shares


def file_key(path: str) -> str:
    """What identifies an image file across copies: a hash of its bytes (its real path if unreadable).

    The annotation app's export copies (or hard-links) the images it showed, so a vote's image
    is found in set A or B by content, not by path.
    """
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    except OSError:
        return os.path.realpath(path)


def run_compare(
    a: Dataset,
    b: Dataset,
    scorers: Sequence[ScorerLike],
    *,
    votes: Dataset | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 4,
    progress: bool | None = None,
) -> CompareRun:
    """Compare two generated sets of the same prompts and seeds with each scorer (and an A/B study).

    Args:
        a, b: the generated sets (``meta["seed"]`` on every record).
        scorers: loaded scorers.
        votes: an A/B study on pairs of an A image and a B image (the votes convention).
        n_bootstrap, seed: the confidence interval of B's win rate (bootstrap over pairs).
        batch_size, progress: scoring.

    Raises:
        EvaluationError: the sets are not the same prompts and seeds, or no vote is on an A/B pair.
    """
    pairs = pair_generated_sets(a, b)
    if not pairs:
        raise NothingEvaluated(f"{a.root} and {b.root}: 0 image pairs to compare (both sets are empty)")
    rank, world = process_group()
    shard = _local_shard(pairs, rank=rank, world=world)
    results, cis = {}, {}
    for name, scorer in zip(unique_names(scorers), scorers):
        sa = score_records(
            scorer, [(p.prompt, [p.a]) for p in shard], batch_size=batch_size, progress=progress
        )
        sb = score_records(
            scorer, [(p.prompt, [p.b]) for p in shard], batch_size=batch_size, progress=progress
        )
        va, vb = np.array([s[0] for s in sa]), np.array([s[0] for s in sb])
        metric = PairedComparison().to(metric_device())
        metric.update(va, vb)
        results[name] = metric.compute()
        ok = np.isfinite(va) & np.isfinite(vb)
        credit = np.array(
            gather_lists(list(np.where(vb[ok] > va[ok], 1.0, np.where(vb[ok] == va[ok], 0.5, 0.0))))
        )
        cis[name] = bootstrap_ci(credit, n_resamples=n_bootstrap, seed=seed)
    vote_summary, shares = None, np.zeros(0)
    if votes is not None:
        vote_summary, shares = ab_votes(
            votes_from_dataset(votes), {file_key(p.a) for p in pairs}, {file_key(p.b) for p in pairs}
        )
        if vote_summary["items"] == 0:
            raise EvaluationError(
                f"{votes.root}: no decided vote is on a pair of one image of A and one of B "
                f"({vote_summary['unmatched']} votes on other images)"
            )
    return CompareRun(
        str(a.root), str(b.root), len(pairs), results, cis, vote_summary, shares, scorer_runtime(scorers)
    )
