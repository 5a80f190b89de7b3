"""HPS-guided training-set selection (Wu et al., section 6).

For each prompt's group of n generated images, p = softmax of the HPS values (in HPS units,
100·cos, so a 1-point gap is a factor e in p). The best image I* is *preferred* when
p(I*) > α/n; the same test on the negated scores picks the *non-preferred* image, whose caption
gets the identifier prefix. With α = 2 a group of two images never qualifies (p ≤ 1 = α/n):
the test asks for an image that stands out from a crowd.

Defaults follow the authors' scripts (tgxs002/align_sd): images are first dropped by their
``is_blurry`` rule (:func:`is_blurry`), prompts need at least 4 remaining images, α = 2 and the
softmax is over 100·cos. α = 2 was tuned on HPS v1 scores; other scorers spread differently.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prefalign.adapt.errors import AdaptError
from prefalign.adapt.identifier import DEFAULT_IDENTIFIER, with_identifier
from prefalign.data.dataset import Dataset, DatasetWriter, Record
from prefalign.data.images import ImageLoadError, load_image
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)

DEFAULT_ALPHA = 2.0
# The authors' selection script (align_sd, select_training_images.py) keeps only prompts with at
# least 4 usable images (``len(v) >= 4``).
DEFAULT_MIN_GROUP_SIZE = 4
# The threshold of both image filters, in RGB values 0-255 (align_sd, process_diffusion_db.py).
BLUR_MAX_DIFF = 10
# Kept for callers of the old name.
DEGENERATE_MAX_DIFF = BLUR_MAX_DIFF
# HPS section 6 mixes in LAION images with an aesthetic score of at least 6.5 as regularisation.
PAPER_AESTHETIC_THRESHOLD = 6.5
AUTHORS, SYMMETRIC, NO_FILTER = "authors", "symmetric", "none"
IMAGE_FILTERS = (AUTHORS, SYMMETRIC, NO_FILTER)
PREFERRED, NON_PREFERRED, REGULARIZATION = "preferred", "non-preferred", "regularization"


def is_blurry(image, threshold: float = BLUR_MAX_DIFF) -> bool:
    """The authors' filter (align_sd ``process_diffusion_db.is_blurry``), exactly.

    True when the largest *signed* left-minus-right difference of horizontally adjacent values
    (over the RGB array, values 0-255) is below ``threshold``. The authors' script computes the
    same horizontal term twice and no vertical term, so besides flat images it also drops an
    image that only gets brighter from left to right (a dark-to-bright step edge or ramp) and
    one with horizontal stripes only (rows differ, columns do not). An image one pixel wide
    has no horizontal differences and counts as blurry.
    """
    arr = np.asarray(load_image(image), dtype=np.float64)
    return float((arr[:, :-1] - arr[:, 1:]).max(initial=0.0)) < threshold


def is_degenerate(image, threshold: int = BLUR_MAX_DIFF) -> bool:
    """This toolkit's symmetric variant (``--filter symmetric``): True for a near-flat image, whose
    largest *absolute* adjacent-pixel difference (RGB values 0-255) is below ``threshold`` both
    horizontally and vertically.

    Unlike :func:`is_blurry` it keeps step edges of either sign and stripes in either direction;
    only images flat in both directions are dropped.
    """
    arr = np.asarray(load_image(image), dtype=np.int16)
    horizontal = int(np.abs(np.diff(arr, axis=1)).max(initial=0))
    vertical = int(np.abs(np.diff(arr, axis=0)).max(initial=0))
    return horizontal < threshold and vertical < threshold


def filter_predicate(name: str) -> Callable[[object], bool] | None:
    """The predicate of an image filter name (True: drop the image); None for ``none``.

    Raises:
        AdaptError: an unknown name.
    """
    if name == AUTHORS:
        return is_blurry
    if name == SYMMETRIC:
        return is_degenerate
    if name == NO_FILTER:
        return None
    raise AdaptError(f"image filter must be one of {', '.join(IMAGE_FILTERS)}, got {name!r}")


def softmax(scores: Sequence[float]) -> np.ndarray:
    """Numerically stable softmax of scores given in their own units (HPS: 100·cos)."""
    s = np.asarray(scores, dtype=np.float64)
    e = np.exp(s - s.max())
    return e / e.sum()


@dataclass
class GroupChoice:
    """What selection picked from one group: indices into the group (None if nothing qualified)."""

    preferred: int | None
    non_preferred: int | None
    p_preferred: float
    p_non_preferred: float


def select_from_group(scores: Sequence[float], alpha: float = DEFAULT_ALPHA) -> GroupChoice:
    """Apply the α test to one group of HPS values.

    Args:
        scores: HPS values of the group's n images, in HPS units (100·cos).
        alpha: the image must be ``alpha`` times likelier than uniform: p > alpha / n (strict).

    Returns:
        The preferred index (argmax of softmax(scores)) and the non-preferred index (argmax of
        softmax(-scores)), each None when its p does not exceed alpha / n.
    """
    n = len(scores)
    if n == 0:
        return GroupChoice(None, None, math.nan, math.nan)
    threshold = alpha / n
    p_best = softmax(scores)
    p_worst = softmax([-s for s in scores])
    best, worst = int(p_best.argmax()), int(p_worst.argmax())
    return GroupChoice(
        preferred=best if p_best[best] > threshold else None,
        non_preferred=worst if p_worst[worst] > threshold else None,
        p_preferred=float(p_best[best]),
        p_non_preferred=float(p_worst[worst]),
    )


@dataclass
class SelectionReport:
    """Counts of one selection run (what the command prints)."""

    groups: int = 0
    groups_too_small: int = 0
    degenerate: int = 0
    failed: int = 0
    preferred: int = 0
    non_preferred: int = 0
    regularization: int = 0
    regularization_below_threshold: int = 0
    out: Path | None = None
    failures: list[str] = field(default_factory=list)

    def as_rows(self) -> list[dict]:
        keys = (
            "groups",
            "groups_too_small",
            "degenerate",
            "failed",
            PREFERRED,
            NON_PREFERRED,
            REGULARIZATION,
            "regularization_below_threshold",
        )
        return [{"count": k, "value": getattr(self, k.replace("-", "_"))} for k in keys]


def _copy_image(src: str, out: Path, kind: str, name: str) -> str:
    """Copy one image into the selected set; returns its path relative to ``out``."""
    rel = Path("images") / kind / f"{name}{Path(src).suffix.lower() or '.png'}"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / rel)
    return rel.as_posix()


def select_training_set(
    data: Dataset,
    score_fn: Callable[[list[tuple[str, list[str]]]], list[np.ndarray]],
    out: str | Path,
    *,
    alpha: float = DEFAULT_ALPHA,
    identifier: str = DEFAULT_IDENTIFIER,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    image_filter: str = AUTHORS,
    drop_degenerate: bool | None = None,
    regularization: Dataset | None = None,
    aesthetic_fn: Callable[[list[tuple[str, list[str]]]], list[np.ndarray]] | None = None,
    aesthetic_threshold: float | None = None,
) -> SelectionReport:
    """Build the image-caption set for LoRA training from groups of generated images.

    Args:
        data: generated images; records with the same prompt are one group (an imported
            DiffusionDB has one record per prompt, ``prefalign generate`` one per image).
        score_fn: HPS of ``(prompt, image paths)`` records, one array per record, NaN where an
            image failed; ``Scorer.score_records`` wrapped by :func:`scorer_score_fn` fits.
        out: the output dataset directory; images are copied under ``images/<kind>/``.
        alpha: the selection strictness (p > alpha / n).
        identifier: prefix of non-preferred captions.
        min_group_size: groups with fewer usable images (after the filter and failed images) are
            skipped; 4 as in the authors' script.
        image_filter: the image filter applied before scoring: ``authors`` (:func:`is_blurry`, the
            authors' rule), ``symmetric`` (:func:`is_degenerate`, ours) or ``none``. Dropped
            images are counted in ``report.degenerate``.
        drop_degenerate: the former switch, kept for callers: False means ``image_filter="none"``;
            True or None leave ``image_filter`` as given.
        regularization: optional real image-caption pairs (one record per caption) mixed in as is.
        aesthetic_fn: scores regularization images (kind ``aesthetic``); with
            ``aesthetic_threshold``, only pairs scoring at least the threshold are kept.
        aesthetic_threshold: the minimum aesthetic score of a regularization image.

    Returns:
        The counts. Each output record has one image; ``meta`` holds ``kind``
        (preferred / non-preferred / regularization), ``source_id``, ``hps`` and ``p``.
    """
    if alpha <= 0:
        raise AdaptError(f"alpha must be positive, got {alpha}")
    if min_group_size < 1:
        raise AdaptError(f"min group size must be at least 1, got {min_group_size}")
    if aesthetic_threshold is not None and aesthetic_fn is None and regularization is not None:
        raise AdaptError("an aesthetic threshold needs an aesthetic scorer")
    drop = None if drop_degenerate is False else filter_predicate(image_filter)
    out = Path(out)
    report = SelectionReport(out=out)

    # Records with the same prompt form one group, so both one record per prompt (DiffusionDB
    # import) and one record per image (``prefalign generate`` output) work as input.
    groups: dict[str, list[tuple[str, int, str]]] = {}  # prompt -> (record id, index, path)
    for rec in data:
        members = groups.setdefault(rec.prompt, [])
        for i, image in enumerate(rec.images):
            path = data.image_path(image)
            if drop is not None:
                try:
                    if drop(path):
                        report.degenerate += 1
                        continue
                except ImageLoadError as exc:
                    report.failed += 1
                    report.failures.append(str(exc))
                    continue
            members.append((rec.id, i, path))

    scorable = [
        (prompt, [m[2] for m in members])
        for prompt, members in groups.items()
        if len(members) >= min_group_size
    ]
    all_scores = iter(score_fn(scorable) if scorable else [])

    with DatasetWriter(out) as writer:
        for prompt, members in groups.items():
            report.groups += 1
            if len(members) < min_group_size:
                report.groups_too_small += 1
                continue
            scores = np.asarray(next(all_scores), dtype=np.float64)
            ok = ~np.isnan(scores)
            report.failed += int((~ok).sum())
            if ok.sum() < min_group_size:
                report.groups_too_small += 1
                continue
            valid = [j for j in range(len(members)) if ok[j]]
            choice = select_from_group([scores[j] for j in valid], alpha)
            for kind, pick, p in (
                (PREFERRED, choice.preferred, choice.p_preferred),
                (NON_PREFERRED, choice.non_preferred, choice.p_non_preferred),
            ):
                if pick is None:
                    continue
                source_id, source_index, path = members[valid[pick]]
                caption = prompt if kind == PREFERRED else with_identifier(prompt, identifier)
                rel = _copy_image(path, out, kind, f"{report.groups:06d}-{source_id}-{source_index}")
                writer.write(
                    Record(
                        prompt=caption,
                        images=[rel],
                        source="hps-selection",
                        meta={
                            "kind": kind,
                            "source_id": source_id,
                            "source_index": source_index,
                            "hps": float(scores[valid[pick]]),
                            "p": p,
                            "alpha": alpha,
                            "group_size": len(valid),
                            "identifier": identifier,
                        },
                    )
                )
                setattr(report, kind.replace("-", "_"), getattr(report, kind.replace("-", "_")) + 1)

        if regularization is not None:
            _add_regularization(regularization, writer, out, report, aesthetic_fn, aesthetic_threshold)
    logger.info(
        "selected %d preferred and %d non-preferred images from %d groups",
        report.preferred,
        report.non_preferred,
        report.groups,
    )
    return report


def _add_regularization(
    reg: Dataset,
    writer: DatasetWriter,
    out: Path,
    report: SelectionReport,
    aesthetic_fn,
    threshold: float | None,
) -> None:
    """Mix in real image-caption pairs, optionally only those at or above an aesthetic score."""
    pairs = [(rec, i, reg.image_path(img)) for rec in reg for i, img in enumerate(rec.images)]
    keep_score: list[float | None] = [None] * len(pairs)
    if aesthetic_fn is not None:
        scores = aesthetic_fn([(rec.prompt, [path]) for rec, _, path in pairs])
        keep_score = [float(s[0]) for s in scores]
    for k, ((rec, i, path), score) in enumerate(zip(pairs, keep_score)):
        if threshold is not None and (score is None or not score >= threshold):  # NaN fails too
            report.regularization_below_threshold += 1
            continue
        rel = _copy_image(path, out, REGULARIZATION, f"{rec.id or k}-{i}")
        meta = {"kind": REGULARIZATION, "source_id": rec.id, "source_index": i}
        if score is not None:
            meta["aesthetic"] = score
        writer.write(Record(prompt=rec.prompt, images=[rel], source="regularization", meta=meta))
        report.regularization += 1


def scorer_score_fn(scorer: ScorerLike, *, batch_size: int = 4, progress: bool | None = None):
    """Adapt a ``Scorer`` to the ``score_fn`` of :func:`select_training_set`."""

    def score(records: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        return scorer.score_records(records, batch_size=batch_size, progress=progress).scores

    return score
