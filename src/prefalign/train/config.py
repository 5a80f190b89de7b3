"""What the preference-model and reward-model trainers share, on top of ``prefalign.training``.

The shared vocabulary (``max_steps``, ``per_device_train_batch_size``, ``save_steps`` ...) is
``TrainingConfig``'s; this adds the held-out evaluation, AdamW's betas and the run's housekeeping.
Fields carry their help text once: the command line (``prefalign train scorer --help``) and
``--config FILE.yaml`` are generated from them by ``prefalign.training.arguments``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from prefalign.training.config import LR_SCHEDULERS, MIXED_PRECISION, ConfigError, TrainingConfig, option

# The error every train/ module raises for a bad setting (one class with the shared foundation's).
TrainConfigError = ConfigError

# Old option names (before issue 13) -> the shared names; accepted for one release with a warning.
TRAIN_DEPRECATED = {
    "out": "output_dir",
    "batch_size": "per_device_train_batch_size",  # was already per process: same value
    "num_epochs": "num_train_epochs",
    "lr_scheduler": "lr_scheduler_type",
    "resume": "resume_from_checkpoint",
    "num_workers": "dataloader_num_workers",
}


@dataclass
class TrainConfig(TrainingConfig):
    """Settings shared by the preference-model and reward-model trainers."""

    DEPRECATED: ClassVar[dict[str, str]] = TRAIN_DEPRECATED

    output_dir: str = option("", "model directory to write (the prefalign model format)")
    base: str = option(
        "openai/clip-vit-large-patch14",
        "base CLIP: a model directory, hub id or known name (both papers: CLIP ViT-L/14)",
    )
    eval_data: str | None = option(
        None,
        "held-out dataset directory (default: the records whose split is 'validation' or 'val', "
        "else --eval_fraction of the training records)",
    )
    eval_fraction: float = option(
        0.05, "fraction of training records held out for evaluation when there is no validation split (ours)"
    )
    eval_steps: int = option(
        100, "evaluate on the held-out records every N optimizer steps (0: only at the end; ours)"
    )
    eval_at_start: bool = option(True, "evaluate once before training (the untrained baseline)")
    learning_rate: float = option(1e-4, "peak learning rate of AdamW")
    weight_decay: float = option(0.0, "AdamW weight decay (never on norms, biases or logit_scale)")
    adam_beta1: float = option(0.9, "AdamW beta1 (torch's default)")
    adam_beta2: float = option(0.999, "AdamW beta2 (torch's default)")
    adam_epsilon: float = option(1e-8, "AdamW epsilon (torch's default)")
    lr_scheduler_type: str = option(
        "cosine", "learning-rate schedule after warm-up: cosine, linear or constant", choices=LR_SCHEDULERS
    )
    max_grad_norm: float = option(0.0, "clip gradients to this norm (0: no clipping; ours)")
    per_device_train_batch_size: int = option(5, "records per optimizer step on each process")
    save_steps: int = option(
        500, "write a resumable checkpoint every N steps (0: never; Ctrl-C still writes one)"
    )
    checkpoint_dir: str | None = option(
        None, "where checkpoints go (default: OUTPUT_DIR.checkpoints next to OUTPUT_DIR)"
    )
    overwrite: bool = option(False, "replace an existing output directory")
    mixed_precision: str = option(
        "no", "no, fp16 or bf16 (bf16 is ~2x slower on CPUs without AMX)", choices=MIXED_PRECISION
    )
    check_images: bool = option(
        True, "open every image header before training and skip records whose images cannot be read"
    )
    progress: bool = option(True, "show a progress bar with loss and accuracy")

    def validate(self) -> None:
        """Raise ``TrainConfigError`` for a value that cannot work, before anything loads."""
        super().validate()
        if not 0.0 <= self.eval_fraction < 1.0:
            raise TrainConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint directory (``OUTPUT_DIR.checkpoints`` unless set)."""
        out = Path(self.output_dir)
        return Path(self.checkpoint_dir) if self.checkpoint_dir else out.with_name(out.name + ".checkpoints")
