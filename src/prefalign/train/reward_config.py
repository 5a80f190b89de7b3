"""Configuration of the Lee et al. reward model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prefalign.train.config import TrainConfig, TrainConfigError, option


@dataclass
class RewardConfig(TrainConfig):
    """Learn r(x, z) in (0, 1) from binary labels: an MLP on frozen CLIP image and text embeddings.

    Loss = mean (y − r(x, z))² + λ · (on good images) −log softmax_j(r(x, z_j) / T), where
    z_1 = z and z_2..z_N are perturbations of the prompt (another count, colour, object or
    background). T = 2 and λ = 0.5 as in the paper; N, the MLP width and the optimiser settings
    are configurable.
    """

    # An MLP on precomputed embeddings: no activations worth recomputing.
    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset({"gradient_checkpointing"})

    learning_rate: float = option(1e-4, "peak learning rate of AdamW")
    per_device_train_batch_size: int = option(64, "images per optimizer step on each process")
    num_train_epochs: int = option(
        10, "passes over the training images (the MLP is small and the CLIP embeddings are cached)"
    )
    eval_steps: int = option(
        50, "evaluate on the held-out images every N optimizer steps (0: only at the end)"
    )
    hidden_size: int = option(1024, "width of the MLP's hidden layer (paper: 1024)")
    temperature: float = option(2.0, "T of the prompt-classification softmax (paper: 2)")
    aux_weight: float = option(0.5, "λ, the weight of the prompt-classification loss (paper: 0.5)")
    num_prompts: int = option(4, "N: the true prompt plus N-1 perturbations of it in the auxiliary loss")
    good_threshold: float = option(
        0.5, "labels at or above this count as good (the auxiliary loss uses good images only)"
    )
    preprocess: str = option(
        "center-crop",
        "image preprocessing of the frozen CLIP: center-crop (CLIP's own) or pad",
        choices=("pad", "center-crop"),
    )
    family: str | None = option(
        None,
        "YAML file of the compositional prompt family the perturbations draw from "
        "(objects, colours, backgrounds, counts; default: the built-in family)",
    )

    def validate(self) -> None:
        super().validate()
        if self.num_prompts < 1:
            raise TrainConfigError(f"num_prompts must be >= 1, got {self.num_prompts}")
        if self.temperature <= 0:
            raise TrainConfigError(f"temperature must be positive, got {self.temperature}")
        if self.hidden_size < 1:
            raise TrainConfigError(f"hidden_size must be >= 1, got {self.hidden_size}")
