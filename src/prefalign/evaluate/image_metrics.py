"""Image-set metrics of the HPS paper's Tables 1 and 4: IS, FID, and mean scores (CLIP, aesthetic, HPS).

IS and FID are torchmetrics' ``InceptionScore`` and ``FrechetInceptionDistance``; this module
only feeds them. Their feature extractor is injectable: tests pass a tiny network, users with
the Inception v3 weights (torch-fidelity's ``pt_inception-2015-12-05``) get the standard
numbers. prefalign never downloads those weights: without them the error says where to put them.

Mean scores exist as a function (``mean_score``) and a metric class (``MeanScore``) sharing
``_moments`` / ``_summary``, with running sums as states, so they gather across processes.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from prefalign.data.images import ImageInput, load_image
from prefalign.evaluate.errors import EvaluationError

# torch-fidelity's port of the TF Inception v3 used by the original IS and FID code.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE
)
INCEPTION_SIZE = 299
IS_SPLITS = 10  # the convention of Salimans et al. and of the HPS paper's Table 1


# ---------------------------------------------------------------------------- feature extractors
def default_inception_weights() -> Path:
    """The Inception weights file when none is given: ``$PREFALIGN_INCEPTION_WEIGHTS`` if set, else
    where torch hub keeps it, ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``."""
    env = os.environ.get("PREFALIGN_INCEPTION_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def load_inception(output: str, weights: str | Path | None = None) -> nn.Module:
    """The standard Inception v3 feature extractor, from a local weights file only.

    Args:
        output: ``"logits_unbiased"`` (for IS) or ``"2048"`` (the pool features of FID).
        weights: the weights file (default: ``default_inception_weights()``).

    Raises:
        EvaluationError: torch-fidelity is not installed or the weights file is absent.
    """
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise EvaluationError(
            "IS and FID with the standard Inception v3 need torch-fidelity (pip install torch-fidelity) "
            "and its weights file; or give your own feature extractor"
        ) from None
    path = Path(weights) if weights else default_inception_weights()
    if not path.is_file():
        raise EvaluationError(
            f"{path}: Inception v3 weights not found; prefalign does not download them. Fetch "
            f"{INCEPTION_WEIGHTS_URL} once and pass --inception-weights FILE (or set "
            "$PREFALIGN_INCEPTION_WEIGHTS, or put it at that path)"
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(
        name="inception-v3-compat", features_list=[output], feature_extractor_weights_path=str(path)
    )


def load_images_uint8(images: Sequence[ImageInput], size: int) -> torch.Tensor:
    """Load images as a ``(n, 3, size, size)`` uint8 tensor (bicubic resize, no crop).

    IS and FID compare sets, not single images, so every image is squashed to the extractor's
    square input the way torch-fidelity resizes its inputs.
    """
    from PIL import Image

    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i, src in enumerate(images):
        img = load_image(src).resize((size, size), Image.Resampling.BICUBIC)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


def _batches(images: Sequence[ImageInput], size: int, batch_size: int, bar=None):
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        yield load_images_uint8(chunk, size)
        if bar is not None:
            bar.update(len(chunk))


# ---------------------------------------------------------------------------- IS and FID
def inception_score_metric(feature: nn.Module | None = None, *, splits: int = IS_SPLITS, weights=None):
    """torchmetrics' ``InceptionScore`` over ``splits`` splits (the class door of IS)."""
    from torchmetrics.image.inception import InceptionScore

    feature = feature if feature is not None else load_inception("logits_unbiased", weights)
    with warnings.catch_warnings():  # it warns that it keeps every feature: IS needs them all
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        return InceptionScore(feature=feature, splits=splits)


def fid_metric(feature: nn.Module | None = None, *, weights=None, image_size: int = INCEPTION_SIZE):
    """torchmetrics' ``FrechetInceptionDistance`` (the class door of FID)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    feature = feature if feature is not None else load_inception("2048", weights)
    return FrechetInceptionDistance(feature=feature, input_img_size=(3, image_size, image_size))


def check_inception_score_input(n_images: int, splits: int = IS_SPLITS) -> None:
    """IS needs at least one image per split (and many more for a stable value)."""
    if n_images < splits:
        raise EvaluationError(f"IS over {splits} splits needs at least {splits} images, got {n_images}")


def check_fid_input(n_images: int, n_reference: int) -> None:
    """FID needs at least two images on each side to estimate a covariance."""
    if n_reference < 2:
        raise EvaluationError(
            f"the reference set has {n_reference} image(s); FID needs at least 2 (and, for a stable "
            "estimate, more than the feature dimension: 2048 for Inception)"
        )
    if n_images < 2:
        raise EvaluationError(f"FID needs at least 2 generated images, got {n_images}")


def compute_inception_score(metric, *, seed: int = 0) -> tuple[float, float]:
    """``(mean, std)`` of IS over its splits; the split shuffle is seeded, so runs repeat."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def inception_score(
    images: Sequence[ImageInput],
    *,
    feature: nn.Module | None = None,
    splits: int = IS_SPLITS,
    image_size: int = INCEPTION_SIZE,
    batch_size: int = 32,
    inception_weights: str | Path | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Inception Score of a set of images: mean and std over ``splits`` splits.

    Args:
        images: paths, PIL images or arrays.
        feature: a module mapping uint8 ``(n, 3, s, s)`` images to ``(n, classes)`` logits
            (default: the standard Inception v3, from local weights).
        splits: number of splits (10 by convention).
        image_size: the square size images are resized to before ``feature``.
        batch_size: images per forward pass.
        inception_weights: the Inception weights file when ``feature`` is None.
        seed: seed of the split shuffle.

    Returns:
        ``(mean, std)``.
    """
    check_inception_score_input(len(images), splits)
    metric = inception_score_metric(feature, splits=splits, weights=inception_weights)
    for batch in _batches(images, image_size, batch_size):
        metric.update(batch)
    return compute_inception_score(metric, seed=seed)


def frechet_distance(
    images: Sequence[ImageInput],
    reference: Sequence[ImageInput],
    *,
    feature: nn.Module | None = None,
    image_size: int = INCEPTION_SIZE,
    batch_size: int = 32,
    inception_weights: str | Path | None = None,
) -> float:
    """Fréchet distance between the features of ``images`` and of ``reference`` (FID with Inception).

    Args:
        images: the generated images.
        reference: the reference (real) images; at least 2, ideally more than the feature size.
        feature: a module mapping uint8 images to ``(n, d)`` features (default: Inception v3 pool3).
        image_size, batch_size, inception_weights: as in ``inception_score``.

    Raises:
        EvaluationError: fewer than 2 images on either side, or no Inception weights.
    """
    check_fid_input(len(images), len(reference))
    metric = fid_metric(feature, weights=inception_weights, image_size=image_size)
    for batch in _batches(reference, image_size, batch_size):
        metric.update(batch, real=True)
    for batch in _batches(images, image_size, batch_size):
        metric.update(batch, real=False)
    return float(metric.compute())


# ---------------------------------------------------------------------------- mean scores
@dataclass
class ScoreSummary:
    """Mean and standard deviation (ddof=0) of per-image scores, over ``n`` finite scores."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _moments(values: np.ndarray) -> tuple[int, float, float]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    return len(v), float(v.sum()), float((v * v).sum())


def _summary(n: float, total: float, total_sq: float) -> ScoreSummary | None:
    if n == 0:
        return None
    mean = total / n
    return ScoreSummary(mean, math.sqrt(max(total_sq / n - mean * mean, 0.0)), int(n))


def mean_score(values: np.ndarray) -> ScoreSummary | None:
    """Mean ± std of scores, NaN (failed images) left out; None when nothing is left."""
    return _summary(*_moments(values))


class MeanScore(Metric):
    """``mean_score`` as a torchmetrics metric; its running sums gather across processes."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("n", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_sq", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: np.ndarray) -> None:
        n, total, total_sq = _moments(values)
        self.n += n
        self.total += total
        self.total_sq += total_sq

    def compute(self) -> ScoreSummary | None:
        return _summary(float(self.n), float(self.total), float(self.total_sq))


def score_correlation(x: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """Pearson and Spearman correlation of two scorers' scores of the same images (finite pairs)."""
    from scipy.stats import pearsonr, spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return {"pearson": float(pearsonr(x, y)[0]), "spearman": float(spearmanr(x, y)[0]), "n": int(len(x))}
