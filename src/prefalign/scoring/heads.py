"""Score heads that sit on top of CLIP embeddings."""

from __future__ import annotations

import torch
from torch import nn

# The LAION improved-aesthetic-predictor: Linear layers at these Sequential indices (the
# others are Dropout), with no activation in between, exactly as released.
AESTHETIC_LINEAR_INDICES = (0, 2, 4, 6, 7)
_AESTHETIC_DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}


class AestheticMLP(nn.Module):
    """The LAION aesthetic MLP on the L2-normalised CLIP image embedding (keys ``layers.N``)."""

    head_type = "aesthetic-mlp"

    def __init__(self, dims: list[int]):
        """Args:
        dims: the feature sizes along the chain, e.g. ``[768, 1024, 128, 64, 16, 1]``.
        """
        super().__init__()
        if len(dims) != len(AESTHETIC_LINEAR_INDICES) + 1:
            raise ValueError(f"aesthetic MLP needs {len(AESTHETIC_LINEAR_INDICES) + 1} dims, got {dims}")
        self.dims = list(dims)
        modules: list[nn.Module] = []
        linear = iter(zip(dims[:-1], dims[1:]))
        for index in range(AESTHETIC_LINEAR_INDICES[-1] + 1):
            if index in AESTHETIC_LINEAR_INDICES:
                modules.append(nn.Linear(*next(linear)))
            else:
                modules.append(nn.Dropout(_AESTHETIC_DROPOUT[index]))
        self.layers = nn.Sequential(*modules)

    @staticmethod
    def dims_from_state_dict(state_dict: dict[str, torch.Tensor]) -> list[int]:
        """Infer ``dims`` from a state dict in the released layout."""
        first = state_dict["layers.0.weight"]
        return [first.shape[1]] + [
            state_dict[f"layers.{i}.weight"].shape[0] for i in AESTHETIC_LINEAR_INDICES
        ]

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(image_embeds).squeeze(-1)


def expected_aesthetic_keys() -> set[str]:
    return {f"layers.{i}.{p}" for i in AESTHETIC_LINEAR_INDICES for p in ("weight", "bias")}


class RewardMLP(nn.Module):
    """Lee et al.'s reward model: r(x, z) in (0, 1) from frozen CLIP image and text embeddings.

    ``sigmoid(Linear(ReLU(Linear([image; text]))))``: two layers, 1024 hidden units in the paper,
    on the concatenated L2-normalised embeddings.
    """

    head_type = "reward-mlp"

    def __init__(self, dims: list[int]):
        """Args:
        dims: ``[2 * embedding_dim, hidden, 1]``, e.g. ``[1536, 1024, 1]`` for ViT-L/14.
        """
        super().__init__()
        if len(dims) != 3 or dims[-1] != 1 or dims[0] % 2:
            raise ValueError(f"reward MLP needs dims [2 * embedding_dim, hidden, 1], got {dims}")
        self.dims = list(dims)
        self.layers = nn.Sequential(nn.Linear(dims[0], dims[1]), nn.ReLU(), nn.Linear(dims[1], 1))

    @staticmethod
    def dims_from_state_dict(state_dict: dict[str, torch.Tensor]) -> list[int]:
        hidden, inputs = state_dict["layers.0.weight"].shape
        return [inputs, hidden, state_dict["layers.2.weight"].shape[0]]

    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Rewards of aligned rows (``(..., d)`` each; a single text row broadcasts)."""
        image_embeds, text_embeds = torch.broadcast_tensors(image_embeds, text_embeds)
        return torch.sigmoid(self.layers(torch.cat([image_embeds, text_embeds], -1))).squeeze(-1)


# head type in prefalign.json -> its class
HEADS: dict[str, type[nn.Module]] = {AestheticMLP.head_type: AestheticMLP, RewardMLP.head_type: RewardMLP}
