"""Which CLIP parameters train, and which of those decay.

Frozen parameters cost nothing: they get ``requires_grad=False`` (so autograd records no graph
through them and DDP does not reduce them) and never enter the optimizer (no Adam moments).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from prefalign.train.preference_config import MAX_LOGIT_SCALE, UNLOCK_SEMANTICS

logger = logging.getLogger(__name__)


def unfreeze_last_blocks(
    model: nn.Module,
    vision_blocks: int,
    text_blocks: int,
    *,
    logit_scale: bool = True,
    semantics: str = "paper",
) -> None:
    """Freeze a Hugging Face ``CLIPModel`` except its last blocks, final norms and projections.

    The HPS paper trains "the last 10 layers" of the ViT-L/14 image encoder and the last 6 of the
    text encoder. We read a layer as a transformer block (``semantics="paper"``: 10 blocks + final
    norm + projection); ``semantics="open_clip"`` counts the image tower in open_clip's lock
    groups instead (10 groups = 9 blocks + final norm + projection). The text tower always counts
    blocks.

    Args:
        model: a ``CLIPModel``.
        vision_blocks: image-tower blocks (or open_clip groups) to train, counted from the end;
            -1 trains the whole tower (embeddings and pre-norm too). Larger than the tower means
            every block.
        text_blocks: the same for the text tower, in blocks.
        logit_scale: train the temperature of the choice softmax.
        semantics: ``paper`` or ``open_clip`` (see :data:`UNLOCK_SEMANTICS`).

    Raises:
        ValueError: an unknown ``semantics``.
    """
    if semantics not in UNLOCK_SEMANTICS:
        raise ValueError(f"unlock semantics must be one of {', '.join(UNLOCK_SEMANTICS)}, got {semantics!r}")
    model.requires_grad_(False)
    if semantics == "open_clip" and vision_blocks != -1:
        _unlock_open_clip_groups(model, vision_blocks)
        vision_blocks = None  # done
    towers = (
        (model.vision_model, vision_blocks, (model.vision_model.post_layernorm, model.visual_projection)),
        (model.text_model, text_blocks, (model.text_model.final_layer_norm, model.text_projection)),
    )
    for tower, blocks, finals in towers:
        if blocks is None:
            continue
        if blocks == -1:
            tower.requires_grad_(True)
        elif blocks > 0:
            layers = tower.encoder.layers
            if blocks > len(layers):
                logger.info("%d blocks asked, the tower has %d: training all of them", blocks, len(layers))
            for layer in layers[-blocks:]:
                layer.requires_grad_(True)
        for module in finals:
            module.requires_grad_(True)
    model.logit_scale.requires_grad_(logit_scale)


def _unlock_open_clip_groups(model: nn.Module, groups: int) -> None:
    """open_clip's ``lock(unlocked_groups=groups)`` on a Hugging Face CLIP image tower."""
    vision = model.vision_model
    layers = list(vision.encoder.layers)
    ordered: list[list[nn.Module]] = [
        [vision.embeddings, vision.pre_layrnorm],
        *([layer] for layer in layers[:-1]),
        [layers[-1], vision.post_layernorm],
        [model.visual_projection],
    ]
    if groups > len(ordered):
        logger.info("%d groups asked, the tower has %d: training all of them", groups, len(ordered))
    for group in ordered[len(ordered) - min(groups, len(ordered)) :] if groups > 0 else []:
        for module in group:
            module.requires_grad_(True)


def clamp_logit_scale(model: nn.Module, max_scale: float = MAX_LOGIT_SCALE) -> None:
    """Clamp ``model.logit_scale`` (a log) to ``[0, ln max_scale]`` in place, as open_clip does
    after every optimizer step; ``max_scale`` 0 or less leaves it alone."""
    if max_scale > 0:
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(max_scale))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters: decay on weight matrices and embeddings only.

    No decay on norms (their scale is the point), biases, or logit_scale (a temperature): the
    convention of open_clip's training code (its ``exclude`` of 1-d parameters, norms, biases and
    logit_scale), on which HPS v2 trains; the HPS paper gives the decay value, not the exclusions.
    Frozen parameters are left out entirely.
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower():
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if (
            id(param) in no_decay_ids
            or param.ndim < 2
            or name.endswith("bias")
            or name.endswith("logit_scale")
        ):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
