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

from dataclasses import dataclass, field
from typing import ClassVar

from prefalign.training.config import LR_SCHEDULERS, ConfigError, TrainingConfig, option

# Stable Diffusion's own defaults, which HPS and Lee et al. generate with.
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5
DEFAULT_SCHEDULER = "pndm"

TRAIN_TARGETS = ("lora", "unet")
CROP_MODES = ("random", "center")
# Named ways of mapping model scores into Lee et al.'s [0, 1] (prefalign.adapt.rewards applies them).
REWARD_TRANSFORMS = ("auto", "sigmoid", "minmax", "none")


# Old option names (before issue 13) -> the shared names; accepted for one release with a warning.
ADAPT_DEPRECATED = {
    "out": "output_dir",
    "steps": "max_steps",
    "batch_size": "per_device_train_batch_size",  # was global: divided by processes x accumulation
    "checkpoint_every": "save_steps",
    "keep_checkpoints": "save_total_limit",
    "resume": "resume_from_checkpoint",
    "log_every": "logging_steps",
}


@dataclass
class DiffusionTrainingConfig(TrainingConfig):
    """What every ε-prediction fine-tuning run needs, on top of the shared ``TrainingConfig``."""

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset(
        {
            "num_train_epochs",
            "eval_steps",
            "dataloader_num_workers",
        }
    )
    DEPRECATED: ClassVar[dict[str, str]] = ADAPT_DEPRECATED
    BATCH_SIZE_WAS_GLOBAL: ClassVar[bool] = True

    data: str = option("", "image-caption dataset: each image is a training pair with its record's prompt")
    base: str = option(
        "",
        "Stable Diffusion 1.x/2.x or SDXL (family read from the pipeline): a diffusers directory, a hub id, "
        "or one .safetensors/.ckpt file",
    )
    output_dir: str = option("", "output directory: adapter (or UNet), checkpoints/, training_log.jsonl")
    max_steps: int = option(10_000, "optimizer steps")
    per_device_train_batch_size: int = option(
        40,
        "pairs per forward pass on each process; an optimizer step sees this x processes x "
        "gradient_accumulation_steps",
    )
    learning_rate: float = option(1e-5, "AdamW peak learning rate (after --warmup_steps)")
    lr_scheduler_type: str = option(
        "constant",
        "learning-rate schedule after warm-up: constant (the default of the authors' script and of "
        "diffusers' training scripts), linear or cosine (decay to 0 at max_steps)",
        choices=LR_SCHEDULERS,
    )
    warmup_steps: int = option(0, "linear warm-up steps (diffusers' scripts: lr_warmup_steps, 0 for LoRA)")
    weight_decay: float = option(1e-2, "AdamW weight decay")
    max_grad_norm: float = option(
        1.0, "clip gradients to this norm (0: no clipping; diffusers' scripts: 1.0)"
    )
    resolution: int = option(
        512,
        "training images: shorter side resized to this (bilinear), then cropped to a square (the authors' "
        "script: 512)",
    )
    center_crop: bool = option(
        False,
        "crop the centre instead of a random square (the authors' script crops at random unless --center_crop)",
    )
    rank: int = option(32, "LoRA rank (HPS section 6: 32)")
    lora_alpha: float | None = option(None, "LoRA alpha (default: the rank, i.e. scale 1)")
    gradient_checkpointing: bool = option(
        False, "recompute UNet activations in the backward pass to save memory"
    )
    seed: int = option(0, "seeds the LoRA init, data order, noise and timesteps (ours: 0)")
    save_total_limit: int = option(2, "keep only the newest N checkpoints (0: keep all; ours: 2)")
    resume_from_checkpoint: str | None = option(
        None,
        "continue from a checkpoint: 'latest' (the bare flag: the newest in OUTPUT_DIR/checkpoints) or a "
        "checkpoint directory",
        nargs="?",
        const="latest",
    )
    merge: bool = option(False, "also save the base with the LoRA fused in, under OUTPUT_DIR/merged")
    logging_steps: int = option(50, "log the loss every N steps (ours: 50)")
    # Sample grids during training, named after diffusers' train_text_to_image_lora.py
    # (validation_prompt, num_validation_images, validation_epochs); see prefalign.adapt.validation.
    validation_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "prompts of the sample grids written to OUTPUT_DIR/validation/step-NNNNNNN.png: one or more "
            "prompts, or one text file with a prompt per line (diffusers' script: --validation_prompt, one prompt)"
        },
    )
    num_validation_images: int = option(
        4,
        "images per validation prompt, one grid column each, seeds seed..seed+N-1 (diffusers' script: 4)",
    )
    validation_steps: int = option(
        0,
        "write a sample grid every N optimizer steps and at the end (0: never; diffusers' script counts "
        "epochs, --validation_epochs; these trainers count steps)",
    )
    validation_inference_steps: int = option(
        30, "denoising steps of the validation samples (diffusers' script: 30)"
    )
    overwrite: bool = option(
        False,
        "replace the finished run in a non-empty OUTPUT_DIR (only a directory holding nothing but what a run "
        "writes; a checkpointed run is continued with --resume_from_checkpoint instead)",
    )
    disable_tqdm: bool = option(
        False,
        "hide the progress bar (steps/s and time left, on stderr; transformers' TrainingArguments name)",
    )

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value that cannot work, before anything loads."""
        super().validate()
        from prefalign.adapt.validation import check_validation_settings

        check_validation_settings(self)
        if not self.base:
            raise ConfigError("base is required (--base, here or in --config)")
        if self.max_steps < 1:
            raise ConfigError(
                f"max_steps must be at least 1, got {self.max_steps} (this trainer counts steps)"
            )

    def global_batch_size(self, num_processes: int) -> int:
        """Pairs per optimizer step over all processes and accumulation passes."""
        return self.per_device_train_batch_size * num_processes * self.gradient_accumulation_steps


@dataclass
class LoraTrainingConfig(DiffusionTrainingConfig):
    """HPS section 6: LoRA on the selected set, non-preferred captions carrying the identifier.

    Defaults: the authors' ``scripts/train_lora.sh`` (tgxs002/align_sd) where it sets a value,
    the paper (rank 32) where the script leaves it at the script's default.
    """

    max_steps: int = field(default=10_000, metadata={"help": "optimizer steps (the authors' script: 10000)"})
    per_device_train_batch_size: int = field(
        default=40,
        metadata={
            "help": "pairs per forward pass on each process; an optimizer step sees this x processes x "
            "gradient_accumulation_steps (the authors' script: 40 per GPU)"
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

    max_steps: int = field(default=10_000, metadata={"help": "optimizer steps (ours)"})
    per_device_train_batch_size: int = field(
        default=64,
        metadata={
            "help": "model-generated pairs per forward pass on each process; an optimizer step sees this x "
            "processes x gradient_accumulation_steps (ours)"
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
        default=None,
        metadata={
            "help": "pre-training pairs per optimizer step over all processes and accumulation passes "
            "(default: the global batch, per_device_train_batch_size x processes x gradient_accumulation_steps)"
        },
    )
    train: str = field(
        default="unet",
        metadata={
            "help": "what to train: unet (every UNet weight, text encoder frozen, as Lee et al.) or lora "
            "(an adapter on the attention projections)",
            "choices": TRAIN_TARGETS,
        },
    )
