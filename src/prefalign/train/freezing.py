"""Which CLIP parameters train, and which of those decay.

Frozen parameters cost nothing: they get ``requires_grad=False`` (so autograd records no graph
through them and DDP does not reduce them) and never enter the optimizer (no Adam moments).
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)


def unfreeze_last_blocks(
    model: nn.Module, vision_blocks: int, text_blocks: int, *, logit_scale: bool = True
) -> None:
    """Freeze a Hugging Face ``CLIPModel`` except its last blocks, final norms and projections.

    The HPS paper trains the last 10 image blocks and the last 6 text blocks of ViT-L/14.

    Args:
        model: a ``CLIPModel``.
        vision_blocks: image-tower blocks to train, counted from the end; -1 trains the whole
            tower (embeddings and pre-norm too). Larger than the tower means every block.
        text_blocks: the same for the text tower.
        logit_scale: train the temperature of the choice softmax.
    """
    model.requires_grad_(False)
    towers = (
        (model.vision_model, vision_blocks, (model.vision_model.post_layernorm, model.visual_projection)),
        (model.text_model, text_blocks, (model.text_model.final_layer_norm, model.text_projection)),
    )
    for tower, blocks, finals in towers:
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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters: decay on weight matrices and embeddings only.

    No decay on norms (their scale is the point), biases, or logit_scale (a temperature), as
    the HPS paper specifies; frozen parameters are left out entirely.
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower():
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in no_decay_ids or name.endswith("bias") or name.endswith("logit_scale"):
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
