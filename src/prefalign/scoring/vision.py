"""The image tower's forward pass for scoring, with the last block pruned to the class token.

CLIP pools the class token after the last block, so that block's outputs at the other 256
tokens (ViT-L/14 at 224 px) are never read: only their keys and values matter. Computing the
query, output projection and MLP of the last block for the class token alone saves about 3.5%
of ViT-L/14's FLOPs and returns what ``model.get_image_features(...).pooler_output`` returns,
up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected (not normalised) image embeddings of a Hugging Face ``CLIPModel``.

    Args:
        model: a ``CLIPModel`` (its ``vision_model``, ``visual_projection``).
        pixel_values: preprocessed ``(n, 3, size, size)`` images.

    Returns:
        ``(n, projection_dim)``, equal to ``model.get_image_features(pixel_values).pooler_output``.
    """
    vision = model.vision_model
    hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
    *body, last = vision.encoder.layers
    for layer in body:
        hidden = layer(hidden, None)

    attn = last.self_attn
    x = last.layer_norm1(hidden)
    batch, _, width = x.shape
    heads = width // attn.head_dim

    def split(t: torch.Tensor) -> torch.Tensor:  # (b, t, width) -> (b, heads, t, head_dim)
        return t.view(batch, t.shape[1], heads, attn.head_dim).transpose(1, 2)

    query = split(attn.q_proj(x[:, :1]))  # the class token asks ...
    out = F.scaled_dot_product_attention(
        query, split(attn.k_proj(x)), split(attn.v_proj(x)), scale=attn.scale
    )
    cls = hidden[:, :1] + attn.out_proj(
        out.transpose(1, 2).reshape(batch, 1, width)
    )  # ... every token answers
    cls = cls + last.mlp(last.layer_norm2(cls))
    return model.visual_projection(vision.post_layernorm(cls[:, 0]))
