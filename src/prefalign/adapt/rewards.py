"""Rewards for the diffusion trainers and best-of-n: a scorer or any callable.

Like trl's DDPO trainer, which took the reward as a callable, everything here takes a
``RewardFn`` — ``(images, prompts) -> tensor of shape (n,)`` — so tests pass a lambda, and
``reward_fn_from_scorer`` adapts a prefalign ``Scorer`` (HPS in 100·cos units, a Lee et al.
reward model in (0, 1), ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

RewardFn = Callable[[Sequence[Any], Sequence[str]], torch.Tensor]


def reward_fn_from_scorer(scorer, *, batch_size: int = 4) -> RewardFn:
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
    """A ``RewardFn`` from a Scorer, a scorer directory or name, or a callable (returned as is)."""
    if reward is None:
        raise ValueError("no reward given")
    if hasattr(reward, "score") and hasattr(reward, "encode_images"):
        return reward_fn_from_scorer(reward)
    if callable(reward):
        return reward
    from prefalign.scoring import load_scorer

    return reward_fn_from_scorer(load_scorer(reward))
