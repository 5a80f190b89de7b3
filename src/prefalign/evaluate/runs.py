"""Whole evaluations of datasets: score (sharded across processes), measure, gather.

The command line and the demo call these. Under ``accelerate launch`` (or any running
``torch.distributed`` process group) each process scores a contiguous shard and the metric
classes gather their states, so every process ends with the 1-process result.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from prefalign.data.dataset import RECORDS_FILE, Dataset, Record, load_dataset
from prefalign.evaluate.agreement import Agreement, AgreementResult, Vote, vote_credit, votes_from_dataset
from prefalign.evaluate.bootstrap import bootstrap_ci
from prefalign.evaluate.compare import PairedComparison, PairedResult, pair_generated_sets
from prefalign.evaluate.distributed import gather_lists, metric_device, process_group, shard_range
from prefalign.evaluate.errors import EvaluationError, NothingEvaluated
from prefalign.evaluate.image_metrics import (
    IS_SPLITS,
    check_fid_input,
    check_inception_score_input,
    compute_inception_score,
    fid_metric,
    inception_score_metric,
    load_images_uint8,
    mean_score,
    score_correlation,
)
from prefalign.evaluate.labels import human_ranks
from prefalign.evaluate.preference import PreferenceAccuracy, PreferenceResult
from prefalign.evaluate.splits import select_split
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)

IMAGE_METRICS = ("is", "fid", "clip", "aesthetic", "hps")
SCORE_METRICS = ("clip", "aesthetic", "hps")  # image metrics that are a scorer's mean score
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


# ---------------------------------------------------------------------------- helpers
def unique_names(scorers: Sequence) -> list[str]:
    """Scorer names for tables, with ``#2``, ``#3``... when the same name is given twice."""
    names: list[str] = []
    for s in scorers:
        name, k = s.name, 2
        while name in names:
            name, k = f"{s.name}#{k}", k + 1
        names.append(name)
    return names


def score_records(
    scorer: ScorerLike, records: Sequence[tuple[str, Sequence[str]]], *, batch_size: int, progress
) -> list[np.ndarray]:
    """Scores of ``(prompt, image paths)`` records; failures are logged and left as NaN."""
    result = scorer.score_records(records, batch_size=batch_size, progress=progress)
    for failure in result.failures:
        logger.warning("%s: could not score %s", scorer.name, failure)
    return result.scores


def _no_progress(progress: bool | None) -> bool:
    """Progress bars by default only on a terminal, as the scorer does."""
    import sys

    return (not sys.stderr.isatty()) if progress is None else not progress


def collapse_list_states(metric) -> None:
    """Concatenate each list state of a torchmetrics metric into one tensor.

    torchmetrics gathers list states element by element, which interleaves the batches of the
    processes; with one tensor per process the gathered order is the 1-process order, so IS's
    seeded split shuffle sees the same features in the same places.
    """
    from torchmetrics.utilities.data import dim_zero_cat

    for name in metric._defaults:
        value = getattr(metric, name)
        if isinstance(value, list) and len(value) > 1:
            setattr(metric, name, [dim_zero_cat(value)])


def _local_shard(items: Sequence, *, rank: int, world: int) -> list:
    return [items[k] for k in shard_range(len(items), rank, world)]


# ---------------------------------------------------------------------------- preference
@dataclass
class PreferenceRun:
    """Preference accuracy of several scorers on one dataset, with the scores behind it."""

    dataset: str
    scorers: list[str]
    kinds: list[str]
    results: dict[str, PreferenceResult]
    records: list[Record] = field(repr=False)
    scores: dict[str, list[np.ndarray]] = field(repr=False)
    selection: dict = field(default_factory=dict)  # which split was evaluated, and why (splits.Selection)

    def to_dict(self) -> dict:
        return {
            "command": "preference",
            "dataset": self.dataset,
            "selection": self.selection,
            "scorers": [{"name": n, "kind": k} for n, k in zip(self.scorers, self.kinds)],
            "results": {name: r.to_dict() for name, r in self.results.items()},
        }


def run_preference(
    dataset: Dataset,
    scorers: Sequence[ScorerLike],
    *,
    split: str | None = None,
    tie_threshold: float | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 4,
    progress: bool | None = None,
) -> PreferenceRun:
    """Preference accuracy of each scorer on a labelled dataset (Table 2 of the HPS paper).

    Args:
        dataset: records with ``chosen``, ``ranks`` or ``ratings``.
        scorers: loaded scorers (``load_eval_scorer``).
        split: the split to evaluate: None for the default (the test split, or the data's only
            split), ``"all"`` for every split together, or a name (see ``evaluate.splits``);
            validation records that are not evaluated tune the tie threshold.
        tie_threshold: a fixed tie threshold for tie-aware accuracy instead of tuning it.
        n_bootstrap, level, seed: the bootstrap confidence intervals.
        batch_size, progress: scoring.

    Raises:
        EvaluationError: no record carries a preference label, or the default split rule cannot
            decide (several splits and no test split).
        NothingEvaluated: 0 records evaluated (an empty split, none labelled, every image failed).
    """

    def labelled(i: int) -> bool:
        return (ranks := human_ranks(dataset[i])) is not None and len(ranks) >= 2

    if not any(labelled(i) for i in range(len(dataset))):
        raise EvaluationError(
            f"{dataset.root}: no record has a preference label (`chosen`, `ranks` or `ratings` "
            "over 2 or more images); eval preference needs them"
        )
    chosen = select_split([r.split for r in dataset], split, where=str(dataset.root))
    if not any(labelled(i) for i in chosen.evaluated):
        raise NothingEvaluated(
            f"{dataset.root}: 0 records evaluated: none of the {len(chosen.evaluated)} records of "
            f"{chosen.what} has a preference label (choose another --split)"
        )
    selected = sorted(chosen.evaluated + chosen.tuning)
    tuning_set = set(chosen.tuning)
    rank, world = process_group()
    shard = _local_shard(selected, rank=rank, world=world)
    names = unique_names(scorers)
    results, scores = {}, {}
    for name, scorer in zip(names, scorers):
        records = [dataset[i] for i in shard]
        local = score_records(
            scorer,
            [(r.prompt, [dataset.image_path(p) for p in r.images]) for r in records],
            batch_size=batch_size,
            progress=progress,
        )
        metric = PreferenceAccuracy(
            tie_threshold=tie_threshold, n_bootstrap=n_bootstrap, level=level, seed=seed
        ).to(metric_device())
        metric.update(local, records, indices=shard, tuning=[i in tuning_set for i in shard])
        results[name] = metric.compute()
        scores[name] = gather_lists(local)
        if results[name].n_records == 0:
            raise NothingEvaluated(
                f"{dataset.root}: 0 records evaluated by {name}: all {results[name].n_skipped} records of "
                f"{chosen.what} were skipped (no label, or an image that could not be scored: "
                "see the warnings above)"
            )
    return PreferenceRun(
        dataset=str(dataset.root),
        scorers=names,
        kinds=[s.kind for s in scorers],
        results=results,
        records=[dataset[i] for i in selected],
        scores=scores,
        selection=chosen.to_dict(),
    )


# ---------------------------------------------------------------------------- agreement
@dataclass
class AgreementRun:
    """Table 3: scorers and participants against the participants of a votes dataset."""

    votes: str
    result: AgreementResult

    def to_dict(self) -> dict:
        return {"command": "agreement", "votes": self.votes, **self.result.to_dict()}


def _pair_scores(scorer, votes: Sequence[Vote], *, batch_size: int, progress) -> list[np.ndarray]:
    """Each vote's two scores in the vote's order, scoring each distinct (prompt, pair) once."""
    distinct: dict[tuple, int] = {}
    for v in votes:
        distinct.setdefault((v.prompt, *sorted(v.images)), len(distinct))
    keys = list(distinct)
    scored = score_records(
        scorer, [(k[0], [k[1], k[2]]) for k in keys], batch_size=batch_size, progress=progress
    )
    by_image = [dict(zip(k[1:], s)) for k, s in zip(keys, scored)]
    return [
        np.array([by_image[distinct[tuple([v.prompt, *sorted(v.images)])]][img] for img in v.images])
        for v in votes
    ]


def run_agreement(
    votes_dataset: Dataset, scorers: Sequence, *, batch_size: int = 4, progress=None
) -> AgreementRun:
    """Agreement of each scorer with each participant, and of participants with each other.

    Args:
        votes_dataset: one participant's vote on one pair per record (see ``agreement``).
        scorers: loaded scorers.
        batch_size, progress: scoring.
    """
    votes = votes_from_dataset(votes_dataset)
    rank, world = process_group()
    shard = _local_shard(votes, rank=rank, world=world)
    names = unique_names(scorers)
    credits = {
        name: vote_credit(shard, _pair_scores(s, shard, batch_size=batch_size, progress=progress))
        for name, s in zip(names, scorers)
    }
    metric = Agreement(names).to(metric_device())
    metric.update(shard, credits)
    # Participant names of the other processes' shards, so per-participant rows are named.
    metric._names.update(dict(gather_lists(list(metric._names.items()))))
    return AgreementRun(str(votes_dataset.root), metric.compute())


# ---------------------------------------------------------------------------- image sets
@dataclass
class ImageItem:
    """One image of an evaluated set: its prompt (None in a plain folder) and preference label."""

    path: str
    prompt: str | None
    preferred: bool | None = None


def image_items(source: str | Path) -> list[ImageItem]:
    """The images of a dataset directory (with prompts and labels) or of a plain folder.

    In a dataset, the image people chose (``chosen``, or the unique best of ``ranks`` /
    ``ratings``) is preferred and the others are not.
    """
    source = Path(source)
    if (source / RECORDS_FILE).exists() or source.suffix == ".parquet":
        ds = load_dataset(source)
        items = []
        for rec in ds:
            ranks = human_ranks(rec)
            best = None
            if ranks is not None and len(ranks) >= 2 and np.sum(ranks == ranks.min()) == 1:
                best = int(np.argmin(ranks))
            for i, img in enumerate(rec.images):
                items.append(ImageItem(ds.image_path(img), rec.prompt, None if best is None else i == best))
        return items
    if not source.is_dir():
        raise EvaluationError(f"{source}: neither a dataset directory nor a folder of images")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [ImageItem(str(p), None) for p in files]


@dataclass
class ImagesRun:
    """Tables 1 and 4: image metrics of a set, and of its preferred vs non-preferred images."""

    images: str
    reference: str | None
    metrics: list[str]
    groups: dict[str, dict[str, dict | None]]
    correlation: dict | None
    notes: list[str]
    scores: dict[str, np.ndarray] = field(repr=False)
    preferred: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "command": "images",
            "images": self.images,
            "reference": self.reference,
            "metrics": self.metrics,
            "groups": self.groups,
            "hps_clip_correlation": self.correlation,
            "notes": self.notes,
        }


def run_images(
    source: str | Path,
    metrics: Sequence[str],
    *,
    reference: str | Path | None = None,
    scorers: dict[str, ScorerLike] | None = None,
    is_feature: nn.Module | None = None,
    fid_feature: nn.Module | None = None,
    image_size: int = 299,
    inception_weights: str | Path | None = None,
    splits: int = IS_SPLITS,
    batch_size: int = 4,
    feature_batch_size: int = 32,
    seed: int = 0,
    progress: bool | None = None,
) -> ImagesRun:
    """IS, FID and mean scores of an image set; for a choice dataset also per preferred / non-preferred.

    Args:
        source: a dataset directory or a folder of images.
        metrics: any of ``IMAGE_METRICS``.
        reference: the reference images of FID (dataset or folder).
        scorers: the scorer of each of ``clip``, ``aesthetic``, ``hps`` that is requested.
        is_feature, fid_feature: feature extractors of IS (logits) and FID (default: Inception v3).
        image_size: square size of the images given to the feature extractors.
        inception_weights: the Inception weights file (when no extractor is given).
        splits: IS splits.
        batch_size: images per scorer forward pass; feature_batch_size: per extractor pass.
        seed: seed of the IS split shuffle.
        progress: show progress bars.

    Raises:
        EvaluationError: an unknown metric, a missing scorer or reference, prompts needed but
            absent, too few images for IS or FID, or no Inception weights.
    """
    from tqdm.auto import tqdm

    scorers = scorers or {}
    unknown = sorted(set(metrics) - set(IMAGE_METRICS))
    if unknown:
        raise EvaluationError(f"unknown image metric(s) {unknown}; choose from {', '.join(IMAGE_METRICS)}")
    for m in SCORE_METRICS:
        if m in metrics and m not in scorers:
            raise EvaluationError(f"the {m} metric needs a scorer (--{m}-model)")
    if "fid" in metrics and reference is None:
        raise EvaluationError("the fid metric needs --reference DIR (the real images to compare with)")
    items = image_items(source)
    if not items:
        raise NothingEvaluated(
            f"{source}: 0 images to evaluate (no image files, or a dataset with no records)"
        )
    if any(scorers[m].uses_text for m in SCORE_METRICS if m in metrics) and items[0].prompt is None:
        raise EvaluationError(
            f"{source}: a plain folder has no prompts; clip and hps need a dataset directory"
        )
    ref_items = image_items(reference) if reference is not None else []
    preferred = np.array([np.nan if it.preferred is None else float(it.preferred) for it in items])
    groups = {"all": np.arange(len(items))}
    if np.any(preferred == 1):
        groups["preferred"] = np.flatnonzero(preferred == 1)
        groups["non-preferred"] = np.flatnonzero(preferred == 0)
    if "is" in metrics:
        check_inception_score_input(len(items), splits)
    if "fid" in metrics:
        check_fid_input(len(items), len(ref_items))

    rank, world = process_group()
    notes: list[str] = []
    out: dict[str, dict[str, dict | None]] = {g: {} for g in groups}
    scores: dict[str, np.ndarray] = {}
    for m in SCORE_METRICS:
        if m not in metrics:
            continue
        local = _local_shard(items, rank=rank, world=world)
        got = score_records(
            scorers[m],
            [(it.prompt or "", [it.path]) for it in local],
            batch_size=batch_size,
            progress=progress,
        )
        scores[m] = np.array(gather_lists([float(s[0]) for s in got]))
        for g, idx in groups.items():
            summary = mean_score(scores[m][idx])
            out[g][m] = None if summary is None else {**summary.to_dict(), "scorer": scorers[m].name}

    def features_of(metric, paths: list[str], desc: str, **update) -> None:
        local = _local_shard(paths, rank=rank, world=world)
        bar = tqdm(total=len(local), unit="img", desc=desc, disable=_no_progress(progress))
        for start in range(0, len(local), feature_batch_size):
            chunk = local[start : start + feature_batch_size]
            metric.update(load_images_uint8(chunk, image_size).to(metric.device), **update)
            bar.update(len(chunk))
        bar.close()
        collapse_list_states(metric)

    device = metric_device()
    if "is" in metrics:
        metric = inception_score_metric(is_feature, splits=splits, weights=inception_weights).to(device)
        for g, idx in groups.items():
            if len(idx) < splits:
                notes.append(f"IS of the {g} images skipped: {len(idx)} images for {splits} splits")
                continue
            metric.reset()
            features_of(metric, [items[i].path for i in idx], f"IS features ({g})")
            mean, std = compute_inception_score(metric, seed=seed)
            out[g]["is"] = {"mean": mean, "std": std, "splits": splits, "n": len(idx)}
    if "fid" in metrics:
        metric = fid_metric(fid_feature, weights=inception_weights, image_size=image_size).to(device)
        metric.reset_real_features = False  # the reference features serve every group
        features_of(metric, [it.path for it in ref_items], "FID features (reference)", real=True)
        dim = int(metric.real_features_sum.shape[0])
        if len(ref_items) <= dim:
            notes.append(
                f"the reference set has {len(ref_items)} images, not more than the feature dimension "
                f"{dim}: its covariance is singular and FID is biased; use more reference images"
            )
        for g, idx in groups.items():
            if len(idx) < 2:
                notes.append(f"FID of the {g} images skipped: {len(idx)} image(s)")
                continue
            metric.reset()
            features_of(metric, [items[i].path for i in idx], f"FID features ({g})", real=False)
            out[g]["fid"] = {"value": float(metric.compute()), "n": len(idx), "reference_n": len(ref_items)}
    correlation = None
    if "hps" in scores and "clip" in scores:
        correlation = score_correlation(scores["clip"], scores["hps"])
    return ImagesRun(
        images=str(source),
        reference=None if reference is None else str(reference),
        metrics=list(metrics),
        groups=out,
        correlation=correlation,
        notes=notes,
        scores=scores,
        preferred=preferred,
    )


# ---------------------------------------------------------------------------- compare
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

    def to_dict(self) -> dict:
        return {
            "command": "compare",
            "a": self.a,
            "b": self.b,
            "n_pairs": self.n_pairs,
            "results": {k: None if v is None else v.to_dict() for k, v in self.results.items()},
            "win_rate_b_ci": self.win_rate_ci,
            "votes": self.votes,
        }


def ab_votes(votes: Sequence[Vote], a_images: set[str], b_images: set[str]) -> tuple[dict, np.ndarray]:
    """Tally an A/B study: which set each vote picked, and per pair the share of votes for B.

    Args:
        votes: votes on pairs of one image of A and one of B (in either order).
        a_images, b_images: the ``file_key`` of each image of the two sets.

    Returns:
        ``(summary, shares)``: counts and B's overall share of decided votes, and one share per
        item with at least one decided vote.
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
    picks = [x for xs in per_item.values() for x in xs]
    shares = np.array([np.mean(xs) for xs in per_item.values()])
    summary = {
        "votes_b": int(sum(picks)),
        "votes_a": int(len(picks) - sum(picks)),
        "ties": ties,
        "unmatched": unmatched,
        "share_b": float(np.mean(picks)) if picks else None,
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
    return CompareRun(str(a.root), str(b.root), len(pairs), results, cis, vote_summary, shares)
