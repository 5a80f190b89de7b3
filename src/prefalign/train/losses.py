"""The training losses of both papers, each a visible one-liner over masked tensors.

Shapes: ``B`` records (or images) in a batch, ``n`` images of a record (padded to the batch's
largest record), ``N`` prompts per image for the reward model (the true prompt first, then its
perturbations, padded likewise). Masks are boolean, True where an entry is real.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def choice_logits(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """HPS logits ``logit_scale.exp() · cos(image_i, prompt)`` of each record's images.

    Args:
        image_embeds: ``(B, n, d)`` image embeddings (any norm; padding rows may be zero).
        text_embeds: ``(B, d)`` prompt embeddings.
        logit_scale: CLIP's learnt log temperature (a scalar parameter).

    Returns:
        ``(B, n)`` logits; padding entries are 0 and must be masked by the loss.
    """
    image = F.normalize(image_embeds, dim=-1, eps=1e-12)
    text = F.normalize(text_embeds, dim=-1)
    return logit_scale.exp() * (image * text[:, None, :]).sum(-1)


def choice_loss(
    logits: torch.Tensor, mask: torch.Tensor, chosen: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of the chosen image among a record's n images (Wu et al., HPS).

    ``loss = mean over valid records of −log softmax_i(logits)[chosen]``, the softmax taken over
    the record's real images only. Records of 2, 3 and 4 images mix in one batch through ``mask``.

    Args:
        logits: ``(B, n)``.
        mask: ``(B, n)`` True for real images.
        chosen: ``(B,)`` index of the preferred image.
        valid: ``(B,)`` False for records dropped at load time (they add nothing). Default: all.

    Returns:
        A scalar; 0 (still attached to the graph) when no record is valid.
    """
    if valid is not None:  # unmask dropped records so they stay finite (NaN gradients otherwise)
        mask = mask | ~valid[:, None]
    per_record = F.cross_entropy(logits.masked_fill(~mask, float("-inf")), chosen, reduction="none")
    return _masked_mean(per_record, valid, logits)


def choice_accuracy(logits: torch.Tensor, mask: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``(B,)`` booleans: the top-scored real image is the chosen one."""
    return logits.masked_fill(~mask, float("-inf")).argmax(-1) == chosen


def reward_mse(rewards: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``mean (y − r(x, z))²`` over images: the first term of Lee et al.'s reward loss."""
    return ((labels - rewards) ** 2).mean()


def prompt_classification_loss(
    rewards: torch.Tensor, prompt_mask: torch.Tensor, good: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Lee et al.'s auxiliary loss: which prompt produced this good image?

    ``−log softmax_j(r(x, z_j) / T)`` at the true prompt ``j = 0``, averaged over the images
    labelled good that have at least one perturbed prompt. Bad images carry no prompt signal
    (they failed their prompt), so they are left out.

    Args:
        rewards: ``(B, N)`` rewards of each image against its true prompt (column 0) and the
            ``N − 1`` perturbations.
        prompt_mask: ``(B, N)`` True for real prompts.
        good: ``(B,)`` True for images labelled good.
        temperature: ``T`` (2 in the paper).

    Returns:
        A scalar; 0 when the batch has no good image with perturbations.
    """
    per_image = -torch.log_softmax((rewards / temperature).masked_fill(~prompt_mask, float("-inf")), -1)[:, 0]
    return _masked_mean(per_image, good & (prompt_mask.sum(-1) > 1), rewards)


def reward_loss(
    rewards: torch.Tensor,
    prompt_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 2.0,
    aux_weight: float = 0.5,
    good_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lee et al.'s reward loss: ``MSE + λ · prompt classification`` (T = 2, λ = 0.5).

    Returns:
        ``(loss, mse, aux)``, all scalars.
    """
    mse = reward_mse(rewards[:, 0], labels)
    aux = prompt_classification_loss(rewards, prompt_mask, labels >= good_threshold, temperature)
    return mse + aux_weight * aux, mse, aux


def _masked_mean(values: torch.Tensor, keep: torch.Tensor | None, anchor: torch.Tensor) -> torch.Tensor:
    if keep is None:
        return values.mean()
    if not bool(keep.any()):
        # Zero that stays connected to the graph, so every process still runs its backward pass.
        return anchor.sum() * 0.0
    return values[keep].mean()
