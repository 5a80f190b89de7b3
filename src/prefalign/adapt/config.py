"""Configs of the diffusion trainers: one dataclass per method, help text on every field.

The CLI is generated from these fields (``prefalign adapt train-lora --help``), so a default
or a help text is written once, here. Each method has its own defaults, and each help text says
where its default comes from:

- ``LoraTrainingConfig``: HPS section 6 and the authors' script (tgxs002/align_sd
  ``scripts/train_lora.sh`` and ``train_text_to_image_lora.py``): LoRA rank 32, AdamW lr 1e-5,
  weight decay 1e-2, constant schedule, batch 40, 10k steps, images resized (shorter side,
  bilinear) to 512 and randomly cropped.
- ``RewardWeightedConfig``: Lee et al. fine-tune the diffusion model (the UNet) itself with the
  text encoder frozen, on rewards in [0, 1] plus a β-weighted pre-training term. The optimiser
  numbers are this toolkit's choice, marked "ours".
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# Stable Diffusion's own defaults, which HPS and Lee et al. generate with.
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5
DEFAULT_SCHEDULER = "pndm"

TRAIN_TARGETS = ("lora", "unet")
CROP_MODES = ("random", "center")
# Named ways of mapping model scores into Lee et al.'s [0, 1] (prefalign.adapt.rewards applies them).
REWARD_TRANSFORMS = ("auto", "sigmoid", "minmax", "none")


@dataclass
class DiffusionTrainingConfig:
    """What every ε-prediction fine-tuning run needs."""

    data: str = field(
        metadata={"help": "image-caption dataset: each image is a training pair with its record's prompt"}
    )
    base: str = field(
        metadata={
            "help": "Stable Diffusion 1.x: a diffusers directory, a hub id, or one .safetensors/.ckpt file"
        }
    )
    out: str = field(metadata={"help": "output directory: adapter (or UNet), checkpoints/, train_log.jsonl"})
    steps: int = field(default=10_000, metadata={"help": "optimizer steps"})
    batch_size: int = field(
        default=40,
        metadata={"help": "pairs per optimizer step, over all processes and accumulation steps"},
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "split each step's batch into this many forward/backward passes"}
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (constant schedule)"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(
        default=1.0,
        metadata={"help": "clip gradients to this norm (0: no clipping; diffusers' scripts: 1.0)"},
    )
    resolution: int = field(
        default=512,
        metadata={
            "help": "training images: shorter side resized to this (bilinear), then cropped to a square "
            "(the authors' script: 512)"
        },
    )
    center_crop: bool = field(
        default=False,
        metadata={
            "help": "crop the centre instead of a random square (the authors' script crops at random unless "
            "--center_crop)"
        },
    )
    rank: int = field(default=32, metadata={"help": "LoRA rank (HPS section 6: 32)"})
    lora_alpha: float | None = field(
        default=None, metadata={"help": "LoRA alpha (default: the rank, i.e. scale 1)"}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute UNet activations in the backward pass to save memory"}
    )
    mixed_precision: str = field(
        default="no", metadata={"help": "accelerate's mixed precision", "choices": ("no", "fp16", "bf16")}
    )
    seed: int = field(default=0, metadata={"help": "seeds the LoRA init, data order, noise and timesteps"})
    checkpoint_every: int = field(
        default=500, metadata={"help": "save a resumable checkpoint every N steps (0: never)"}
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "keep only the newest N checkpoints"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in --out"})
    merge: bool = field(
        default=False, metadata={"help": "also save the base with the LoRA fused in, under OUT/merged"}
    )
    log_every: int = field(default=50, metadata={"help": "log the loss every N steps"})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even if a GPU is available"})

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class LoraTrainingConfig(DiffusionTrainingConfig):
    """HPS section 6: LoRA on the selected set, non-preferred captions carrying the identifier.

    Defaults: the authors' ``scripts/train_lora.sh`` (tgxs002/align_sd) where it sets a value,
    the paper (rank 32) where the script leaves it at the script's default.
    """

    steps: int = field(default=10_000, metadata={"help": "optimizer steps (the authors' script: 10000)"})
    batch_size: int = field(
        default=40,
        metadata={
            "help": "pairs per optimizer step, over all processes and accumulation steps (the authors' script: "
            "40 per GPU)"
        },
    )
    learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW learning rate, constant schedule (the authors' script: 1e-5)"}
    )
    weight_decay: float = field(
        default=1e-2, metadata={"help": "AdamW weight decay (the authors' script's default: 1e-2)"}
    )

    identifier: str | None = field(
        default=None,
        metadata={
            "help": "identifier of non-preferred captions, recorded in the adapter for use as negative "
            "prompt (default: the one `adapt select` recorded in the data)"
        },
    )


@dataclass
class RewardWeightedConfig(DiffusionTrainingConfig):
    """Lee et al.: reward-weighted ε-prediction on generated pairs plus a pre-training term.

    Lee et al. fine-tune the UNet (the text encoder frozen), so that is the default target; LoRA
    is an option (``train="lora"``). Rewards are probabilities in [0, 1] in the paper; model
    scores are mapped there by ``reward_transform``. Step count, batch, learning rate, weight
    decay and β are this toolkit's choices ("ours"), not values taken from the paper.
    """

    steps: int = field(default=10_000, metadata={"help": "optimizer steps (ours)"})
    batch_size: int = field(
        default=64,
        metadata={
            "help": "model-generated pairs per optimizer step, over all processes and accumulation steps (ours)"
        },
    )
    learning_rate: float = field(
        default=1e-5,
        metadata={"help": "AdamW learning rate, constant (ours: diffusers' full fine-tuning example's 1e-5)"},
    )
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay (ours: AdamW's 1e-2)"})
    rank: int = field(default=32, metadata={"help": "LoRA rank, with --train lora only (ours)"})
    reward: str | None = field(
        default=None,
        metadata={
            "help": "reward or preference model for images without human ratings (any scorer directory)"
        },
    )
    reward_transform: str = field(
        default="auto",
        metadata={
            "help": "map model scores to [0, 1], Lee et al.'s reward range: sigmoid (σ(s − median), in the "
            "score's units), minmax, or none; auto (ours) picks none for reward models (already in [0, 1]), "
            "sigmoid for hps and pickscore, minmax otherwise. Human ratings are used as they are",
            "choices": REWARD_TRANSFORMS,
        },
    )
    prior_data: str | None = field(
        default=None,
        metadata={
            "help": "pre-training image-caption dataset for the β term (Lee et al.: a LAION subset); "
            "without it the run is not the paper's recipe"
        },
    )
    beta: float = field(default=1.0, metadata={"help": "weight β of the pre-training loss (ours)"})
    prior_batch_size: int | None = field(
        default=None, metadata={"help": "pre-training pairs per step (default: --batch-size)"}
    )
    train: str = field(
        default="unet",
        metadata={
            "help": "what to train: unet (every UNet weight, text encoder frozen, as Lee et al.) or lora "
            "(an adapter on the attention projections)",
            "choices": TRAIN_TARGETS,
        },
    )
