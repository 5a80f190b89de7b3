"""Rewards for the diffusion trainers and best-of-n: a scorer or any callable.

Like trl's DDPO trainer, which took the reward as a callable, everything here takes a
``RewardFn`` — ``(images, prompts) -> tensor of shape (n,)`` — so tests pass a lambda, and
``reward_fn_from_scorer`` adapts any ``prefalign.scoring.ScorerLike`` (HPS in 100·cos units, a
Lee et al. reward model in (0, 1), ImageReward, MPS, ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from prefalign.adapt.config import REWARD_TRANSFORMS
from prefalign.scoring.protocol import ScorerLike

RewardFn = Callable[[Sequence[Any], Sequence[str]], torch.Tensor]


def reward_fn_from_scorer(scorer: ScorerLike, *, batch_size: int = 4) -> RewardFn:
    """Wrap ``scorer.score(images, prompt)``: images are grouped by prompt so each is encoded once."""

    def reward(images: Sequence[Any], prompts: Sequence[str]) -> torch.Tensor:
        out = torch.empty(len(images), dtype=torch.float32)
        by_prompt: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            by_prompt.setdefault(p, []).append(i)
        for prompt, idx in by_prompt.items():
            out[idx] = scorer.score([images[i] for i in idx], prompt, batch_size=batch_size).float()
        return out

    return reward


def as_reward_fn(reward: Any) -> RewardFn:
    """A ``RewardFn`` from a ``ScorerLike`` (any scorer), a scorer directory or name, or a
    callable ``(images, prompts) -> (n,) tensor`` (returned as is)."""
    if reward is None:
        raise ValueError("no reward given")
    if isinstance(reward, ScorerLike):
        return reward_fn_from_scorer(reward)
    if callable(reward):
        return reward
    from prefalign.scoring import load_scorer

    return reward_fn_from_scorer(load_scorer(reward))


# ---------------------------------------------------------------------- into [0, 1]
# Lee et al.'s reward is a probability in [0, 1] (binary human labels, or their reward model's
# sigmoid output), and their loss weights each ε-prediction error by it against the unit-weight
# pre-training term. A raw HPS (about 20-30) would weigh the data term ~25x; so model scores are
# mapped to [0, 1] first. The transforms and the per-kind choice are this toolkit's.
AUTO, SIGMOID, MINMAX, NO_TRANSFORM = REWARD_TRANSFORMS
# Kinds whose scores are logits of a choice model (a 1-point gap is a factor e in the odds).
_LOGIT_KINDS = frozenset({"hps", "pickscore"})
# Kinds whose scores are already probabilities in [0, 1].
_PROBABILITY_KINDS = frozenset({"reward"})


def default_transform(kind: str | None, values: torch.Tensor) -> str:
    """The transform ``auto`` picks for a scorer kind (None: a callable of unknown kind).

    ``reward`` (Lee et al.'s reward model, already in (0, 1)): none. ``hps`` and ``pickscore``
    (choice-model logits): sigmoid. ``clip``, ``aesthetic`` and other kinds: minmax. A callable:
    none when its values lie in [0, 1], else minmax.
    """
    if kind in _PROBABILITY_KINDS:
        return NO_TRANSFORM
    if kind in _LOGIT_KINDS:
        return SIGMOID
    if kind is None and values.numel() and float(values.min()) >= 0.0 and float(values.max()) <= 1.0:
        return NO_TRANSFORM
    return MINMAX


def transform_rewards(values: torch.Tensor, name: str) -> torch.Tensor:
    """Map one set of model scores (shape ``(n,)``) to rewards in [0, 1].

    ``sigmoid``: σ(s − median(s)), in the scores' own units; for HPS (100·cos, the logits of its
    choice model) this is the probability that the image is preferred over the set's median
    image. ``minmax``: (s − min) / (max − min), every reward 1 when all scores are equal.
    ``none``: the scores as they are; a warning (once per call) when any lies outside [0, 1].

    Raises:
        ValueError: an unknown transform name (``auto`` is resolved by :func:`default_transform`).
    """
    values = values.float()
    if name == SIGMOID:
        return torch.sigmoid(values - values.median()) if values.numel() else values
    if name == MINMAX:
        if not values.numel():
            return values
        low, high = values.min(), values.max()
        if float(high - low) == 0.0:
            return torch.ones_like(values)
        return (values - low) / (high - low)
    if name == NO_TRANSFORM:
        outside = int(((values < 0) | (values > 1)).sum())
        if outside:
            warnings.warn(
                f"--reward-transform none: {outside} of {values.numel()} rewards lie outside [0, 1] "
                f"(range {float(values.min()):.4g} to {float(values.max()):.4g}); Lee et al.'s reward is a "
                "probability, so the data term is weighted unlike the paper's (use sigmoid or minmax)",
                stacklevel=2,
            )
        return values
    raise ValueError(f"reward transform must be one of {', '.join(REWARD_TRANSFORMS)}, got {name!r}")
