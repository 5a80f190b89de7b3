"""The differentiable path: pixels in [0, 1] -> preprocessing in torch -> scores with gradients.

``score_pixels(pixels, prompts)`` exists on every scorer; trainers that backpropagate a reward
into a generator (ReFL, DRaFT, AlignProp) call it on decoded images. The preprocessing mirrors
the file path (``prefalign.data.images``) with the same size and offset arithmetic, but resizes
with ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``: the same Keys kernel
(a = -0.5) and support scaling as PIL's ``BICUBIC``, computed in float instead of PIL's 8-bit
intermediate rounding. The distance this leaves to the file path is measured per family in
``tests/scoring/test_pixels.py`` and stated in ``docs/scorers.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from prefalign.data.images import Preprocess


@runtime_checkable
class ScorerLike(Protocol):
    """Anything that scores a batch of images differentiably: a scorer or a ``WeightedReward``."""

    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """``(B,)`` float32 scores of ``(B, 3, H, W)`` pixels in [0, 1], differentiable in ``pixels``."""
        ...


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
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) == 1:
        prompts = prompts * pixels.shape[0]
    if len(prompts) != pixels.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {pixels.shape[0]} images (give 1 or one per image)")
    return prompts


def _bicubic(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(pixels.shape[-2:]) == (height, width):
        return pixels
    # antialias=True is PIL's filter (support widened by the scale when shrinking, a = -0.5);
    # without it torch uses a = -0.75 and no widening, several times farther from PIL.
    return F.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False, antialias=True)


def resize_center_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``Resize(size)`` + ``CenterCrop(size)`` arithmetic on ``(B, 3, H, W)`` pixels."""
    height, width = pixels.shape[-2:]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    pixels = _bicubic(pixels, new_h, new_w)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return pixels[..., top : top + size, left : left + size]


def pad_to_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """open_clip ``ResizeMaxSize`` arithmetic: longest edge to ``size``, centred black padding."""
    height, width = pixels.shape[-2:]
    scale = size / float(max(width, height))
    new_w, new_h = round(width * scale), round(height * scale)
    pixels = _bicubic(pixels, new_h, new_w)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    return F.pad(pixels, (left, size - new_w - left, top, size - new_h - top))


def preprocess_pixels(pixels: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """The scorer's preprocessing in torch: ``(B, 3, H, W)`` in [0, 1] -> normalised model input.

    PIL clips each resampled value to [0, 255]; so does this (``clamp``), after the resize.
    """
    resize = pad_to_square if preprocess.mode == "pad" else resize_center_crop
    pixels = resize(pixels.float(), preprocess.size).clamp(0.0, 1.0)
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

    def __init__(self, terms: Sequence[tuple[float, ScorerLike]]):
        if not terms:
            raise ValueError("a weighted reward needs at least one (weight, scorer) term")
        for weight, scorer in terms:
            if not isinstance(scorer, ScorerLike):
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
