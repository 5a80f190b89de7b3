"""The diffusion losses, each a visible line or two.

Lee et al.'s reward-weighted objective (their eq. 2), with per-sample ε-prediction errors:

    loss = mean_i r_i · ||ε_i − ε_θ(x_t, t, z)_i||²  +  β · mean_j ||ε_j − ε_θ(x_t, t, z)_j||²
           (model-generated pairs, rewards r)          (pre-training pairs)

HPS's LoRA training is the special case r = 1, β = 0: the plain ε-prediction MSE.
"""

from __future__ import annotations

import torch


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||target − prediction||² averaged over every non-batch dimension; shape ``(batch,)``.

    Averaged rather than summed, as in diffusers' trainers, so that the loss scale (and the
    learning rate that suits it) does not depend on the latent size.
    """
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def reward_weighted_loss(
    model_mse: torch.Tensor,
    rewards: torch.Tensor,
    prior_mse: torch.Tensor | None = None,
    beta: float = 0.0,
) -> torch.Tensor:
    """Lee et al.'s loss from per-sample errors.

    Args:
        model_mse: per-sample errors on model-generated pairs, shape ``(n,)``.
        rewards: their rewards r(x, z), shape ``(n,)`` (human labels or a reward model's output).
        prior_mse: per-sample errors on pre-training pairs, shape ``(m,)``; None or empty for none.
        beta: the weight of the pre-training term.
    """
    loss = (rewards.to(model_mse) * model_mse).mean()
    if prior_mse is not None and prior_mse.numel() and beta:
        loss = loss + beta * prior_mse.mean()
    return loss
