"""``run_images``: IS, FID and mean scores of an image set (``prefalign eval images``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from prefalign.data.dataset import RECORDS_FILE, load_dataset
from prefalign.evaluate.distributed import gather_lists, metric_device, process_group
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
from prefalign.evaluate.runs.common import (
    IMAGE_METRICS,
    IMAGE_SUFFIXES,
    SCORE_METRICS,
    _local_shard,
    _no_progress,
    collapse_list_states,
    score_records,
    scorer_runtime,
)
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)


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
    runtime: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "command": "images",
            "images": self.images,
            "reference": self.reference,
            "metrics": self.metrics,
            "groups": self.groups,
            "hps_clip_correlation": self.correlation,
            "notes": self.notes,
            "runtime": self.runtime,
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
        runtime=scorer_runtime(scorers),
    )


# ---------------------------------------------------------------------------- compare
