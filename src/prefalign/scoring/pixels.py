"""The differentiable path: pixels in [0, 1] -> preprocessing in torch -> scores with gradients.

``score_pixels(pixels, prompts)`` exists on every scorer; trainers that backpropagate a reward
into a generator (ReFL, DRaFT, AlignProp) call it on decoded images. The preprocessing mirrors
the file path (``prefalign.data.images``) with the same size and offset arithmetic and resizes
with ``pil_bicubic``, a torch re-implementation of Pillow's fixed-point bicubic resampler whose
forward pass is bit-exact to Pillow on 8-bit images, with straight-through rounding so gradients
flow. (``F.interpolate(mode="bicubic", antialias=True)`` has the same kernel but no 8-bit
rounding: on tiny random CLIPs it moved scores by up to 2e-3 relative on smooth 512-px images
and 2.4e-2 on noise, so it is not used.) The remaining distance to the file path is measured per
family in ``tests/scoring/test_pixels.py`` and stated in ``docs/scorers.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from prefalign.data.images import Preprocess
from prefalign.scoring.protocol import PixelScorerLike


def check_pixels(pixels: torch.Tensor, prompts: Sequence[str] | str) -> list[str]:
    """Validate a ``score_pixels`` call; returns the prompts as a list of length B (one broadcasts).

    Raises:
        ValueError: not a float ``(B, 3, H, W)`` tensor, or a prompt count that is neither 1 nor B.
    """
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3:
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ValueError(f"pixels must be a (B, 3, H, W) tensor in [0, 1], got {shape}")
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be floats in [0, 1] (divide uint8 images by 255), got {pixels.dtype}")
    out = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(out) == 1:
        out = out * pixels.shape[0]
    if len(out) != pixels.shape[0]:
        raise ValueError(f"{len(out)} prompts for {pixels.shape[0]} images (give 1 or one per image)")
    return out


# Pillow's fixed-point resampler (src/libImaging/Resample.c): coefficients scaled by 2**22 and
# rounded half away from zero (normalize_coeffs_8bpc), sums rounded by adding 2**21 and shifting.
_PRECISION_BITS = 32 - 8 - 2


def _bicubic_filter(x: float) -> float:
    """Pillow's ``bicubic_filter`` (Keys, a = -0.5)."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@lru_cache(maxsize=64)
def _pil_weights(in_size: int, out_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` integer weights (float64) of Pillow's ``precompute_coeffs``."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_bicubic_filter((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = sum(k)
        if total != 0.0:
            k = [w / total for w in k]
        scale_int = float(1 << _PRECISION_BITS)
        weights[xx, xmin : xmin + xmax] = torch.tensor(
            [math.trunc(w * scale_int + (0.5 if w >= 0 else -0.5)) for w in k], dtype=torch.float64
        )
    return weights


def _round_like_pil(sums: torch.Tensor) -> torch.Tensor:
    """Pillow's ``clip8((ss + 2**21) >> 22)`` forward; the gradient of ``sums / 2**22`` backward."""
    value = (sums / float(1 << _PRECISION_BITS)).clamp(0.0, 255.0)
    return value + (torch.floor(value + 0.5) - value).detach()


@lru_cache(maxsize=256)
def _pillow_resizes_vertically_first(in_w: int, in_h: int, width: int, height: int) -> bool:
    """Which pass the installed Pillow runs first for this size pair, found by asking it.

    Pillow skips a pass whose size does not change; up to Pillow 12 it always ran the horizontal
    pass first, and Pillow 13 (python-pillow/Pillow#9549) runs the vertical one first when the
    height shrinks much more than the width, by a rule internal to its C code. Each order rounds to
    8 bits in between, so they differ in the last bit: one resize of a random probe image of this
    size (once per size pair) tells which order this Pillow uses.
    """
    import numpy as np
    from PIL import Image

    probe = np.random.default_rng(0).integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    expected = torch.from_numpy(
        np.asarray(Image.fromarray(probe).resize((width, height), Image.BICUBIC)).copy()
    )
    x = torch.from_numpy(probe).permute(2, 0, 1).double()
    kw, kh = _pil_weights(in_w, width), _pil_weights(in_h, height)
    vertical_first = _round_like_pil(_round_like_pil(kh @ x) @ kw.T)
    return bool(torch.equal(vertical_first.permute(1, 2, 0).to(torch.uint8), expected))


def pil_bicubic(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``Image.resize((width, height), BICUBIC)`` of 8-bit RGB images, in torch, differentiably.

    ``pixels`` are floats in [0, 1] ``(B, 3, H, W)``. The forward pass is bit-exact to Pillow for
    pixels that are multiples of 1/255 (what a saved image holds): the input is rounded to 8 bits,
    the horizontal pass runs, its result is rounded to 8 bits as Pillow does, then the vertical
    pass. Every rounding is straight-through, so the gradient is that of the exact-real resampler.
    Computed in float64 (integer sums are exact there).
    """
    in_h, in_w = pixels.shape[-2:]
    x = pixels.double() * 255.0
    x = x + (torch.round(x) - x).detach()
    if (in_h, in_w) == (height, width):
        return (x / 255.0).to(pixels.dtype)

    def horizontal(x: torch.Tensor) -> torch.Tensor:
        return _round_like_pil(x @ _pil_weights(in_w, width).to(x.device).T)

    def vertical(x: torch.Tensor) -> torch.Tensor:
        return _round_like_pil(_pil_weights(in_h, height).to(x.device) @ x)

    passes = [p for p, needed in ((horizontal, in_w != width), (vertical, in_h != height)) if needed]
    if len(passes) == 2 and _pillow_resizes_vertically_first(in_w, in_h, width, height):
        passes.reverse()
    for resample in passes:
        x = resample(x)
    return (x / 255.0).to(pixels.dtype)


def resize_center_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``Resize(size)`` + ``CenterCrop(size)`` arithmetic on ``(B, 3, H, W)`` pixels."""
    height, width = pixels.shape[-2:]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    pixels = pil_bicubic(pixels, new_h, new_w)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return pixels[..., top : top + size, left : left + size]


def pad_to_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """open_clip ``ResizeMaxSize`` arithmetic: longest edge to ``size``, centred black padding."""
    height, width = pixels.shape[-2:]
    scale = size / float(max(width, height))
    new_w, new_h = round(width * scale), round(height * scale)
    pixels = pil_bicubic(pixels, new_h, new_w)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    return F.pad(pixels, (left, size - new_w - left, top, size - new_h - top))


def preprocess_pixels(pixels: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """The scorer's preprocessing in torch: ``(B, 3, H, W)`` in [0, 1] -> normalised model input.

    Pixels outside [0, 1] are clipped, as an 8-bit image would be.
    """
    resize = pad_to_square if preprocess.mode == "pad" else resize_center_crop
    pixels = resize(pixels.float().clamp(0.0, 1.0), preprocess.size)
    mean = torch.tensor(preprocess.mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def clip_score_pixels(scorer, pixels: torch.Tensor, prompts: Sequence[str] | str) -> torch.Tensor:
    """``Scorer.score_pixels`` for the CLIP families (hps, clip, pickscore, aesthetic, reward).

    Returns ``(B,)`` float32 scores on the scorer's device, in the units of ``scorer.score``,
    differentiable in ``pixels``. Text embeddings carry no gradient (the prompts are data).
    """
    from prefalign.scoring.vision import image_features

    prompts = check_pixels(pixels, prompts)
    model_input = preprocess_pixels(pixels.to(scorer.device), scorer.preprocess)
    feats = image_features(scorer.model, model_input.to(scorer.dtype)).float()
    image = feats / feats.norm(dim=-1, keepdim=True)
    if scorer.kind == "aesthetic":
        return scorer.head(image).float()
    text = scorer.encode_text(prompts).clone().to(scorer.device)  # clone: out of inference mode
    if scorer.kind == "reward":
        return scorer.head(image, text).float()
    cos = (image * text).sum(-1)
    if scorer.kind == "hps":
        return 100.0 * cos
    if scorer.kind == "pickscore":
        return scorer.model.logit_scale.float().exp() * cos
    return cos


class WeightedReward:
    """A weighted sum of scorers as one reward: ``sum_k w_k * scorer_k.score_pixels(pixels, prompts)``.

    Args:
        terms: ``(weight, scorer)`` pairs; any object with ``score_pixels`` works. Scores keep
            their own units (HPS is 100·cos, ImageReward is standardised), so choose the weights
            with the scales in mind.

    Example:
        >>> reward = WeightedReward([(1.0, hps), (0.5, imagereward)])    # doctest: +SKIP
        >>> reward.score_pixels(images, prompts).mean().backward()         # doctest: +SKIP
    """

    def __init__(self, terms: Sequence[tuple[float, PixelScorerLike]]):
        if not terms:
            raise ValueError("a weighted reward needs at least one (weight, scorer) term")
        for weight, scorer in terms:
            if not isinstance(scorer, PixelScorerLike):
                raise TypeError(f"{scorer!r} has no score_pixels(pixels, prompts)")
            if not isinstance(weight, (int, float)):
                raise TypeError(f"weight {weight!r} is not a number")
        self.terms = [(float(w), s) for w, s in terms]

    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str] | str) -> torch.Tensor:
        total = None
        for weight, scorer in self.terms:
            value = weight * scorer.score_pixels(pixels, prompts).to(pixels.device)
            total = value if total is None else total + value
        return total

    def __repr__(self) -> str:
        return "WeightedReward(" + ", ".join(f"{w:g}*{getattr(s, 'name', s)!r}" for w, s in self.terms) + ")"
