"""Score heads that sit on top of CLIP embeddings."""

from __future__ import annotations

import torch
from torch import nn

# The LAION improved-aesthetic-predictor (christophschuhmann/improved-aesthetic-predictor), as
# released: Linear layers at these Sequential indices, Dropout between them, no activation
# (``sac+logos+ava1-l14-linearMSE.pth``, ``ava+logos-l14-linearMSE.pth``).
AESTHETIC_LINEAR_INDICES = (0, 2, 4, 6, 7)
_AESTHETIC_DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}
# Its ReLU variant (``ava+logos-l14-reluMSE.pth``): the same MLP with the ``nn.ReLU()`` lines of
# the released training script uncommented, which moves the Linear layers to these indices.
AESTHETIC_RELU_LINEAR_INDICES = (0, 3, 6, 9, 11)
_AESTHETIC_RELU_INDICES = (1, 4, 7, 10)
_AESTHETIC_RELU_DROPOUT = {2: 0.2, 5: 0.2, 8: 0.1}


class AestheticMLP(nn.Module):
    """The LAION aesthetic MLP on the L2-normalised CLIP image embedding (keys ``layers.N``).

    Input ``(n, d)`` embeddings, output ``(n,)`` scores (the AVA 1-10 rating scale).
    """

    head_type = "aesthetic-mlp"
    linear_indices: tuple[int, ...] = AESTHETIC_LINEAR_INDICES
    relu_indices: tuple[int, ...] = ()
    dropout: dict[int, float] = _AESTHETIC_DROPOUT

    def __init__(self, dims: list[int]):
        """Args:
        dims: the feature sizes along the chain, e.g. ``[768, 1024, 128, 64, 16, 1]``.
        """
        super().__init__()
        if len(dims) != len(self.linear_indices) + 1:
            raise ValueError(f"aesthetic MLP needs {len(self.linear_indices) + 1} dims, got {dims}")
        self.dims = list(dims)
        modules: list[nn.Module] = []
        linear = iter(zip(dims[:-1], dims[1:]))
        for index in range(self.linear_indices[-1] + 1):
            if index in self.linear_indices:
                modules.append(nn.Linear(*next(linear)))
            elif index in self.relu_indices:
                modules.append(nn.ReLU())
            else:
                modules.append(nn.Dropout(self.dropout[index]))
        self.layers = nn.Sequential(*modules)

    @classmethod
    def dims_from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> list[int]:
        """Infer ``dims`` from a state dict in the released layout."""
        first = state_dict[f"layers.{cls.linear_indices[0]}.weight"]
        return [first.shape[1]] + [state_dict[f"layers.{i}.weight"].shape[0] for i in cls.linear_indices]

    @classmethod
    def expected_keys(cls) -> set[str]:
        return {f"layers.{i}.{p}" for i in cls.linear_indices for p in ("weight", "bias")}

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(image_embeds).squeeze(-1)


class AestheticReluMLP(AestheticMLP):
    """The ReLU variant of the LAION aesthetic MLP (``layers.{0,3,6,9,11}``): Linear, ReLU,
    Dropout three times, then Linear, ReLU, Linear."""

    head_type = "aesthetic-relu-mlp"
    linear_indices = AESTHETIC_RELU_LINEAR_INDICES
    relu_indices = _AESTHETIC_RELU_INDICES
    dropout = _AESTHETIC_RELU_DROPOUT


# The released aesthetic layouts, tried in this order when converting a checkpoint.
AESTHETIC_HEADS: tuple[type[AestheticMLP], ...] = (AestheticMLP, AestheticReluMLP)


def expected_aesthetic_keys() -> set[str]:
    return AestheticMLP.expected_keys()


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
HEADS: dict[str, type[nn.Module]] = {
    AestheticMLP.head_type: AestheticMLP,
    AestheticReluMLP.head_type: AestheticReluMLP,
    RewardMLP.head_type: RewardMLP,
}
