"""What every trainer is configured with; each trainer's config adds its own fields.

Fields carry their help text once (``metadata={"help": ...}``): the command line is generated
from them (``prefalign train scorer --help``) and ``--config FILE.yaml`` sets any of them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefalign.errors import PrefalignError


class TrainConfigError(PrefalignError, ValueError):
    """A configuration that cannot train, naming the field and what is wrong."""


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field with its help text (and optional extra argparse settings under ``cli``)."""
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass
class TrainConfig:
    """Settings shared by the preference-model and reward-model trainers."""

    data: str = option("", "training dataset directory (records.parquet + images)")
    out: str = option("", "model directory to write (the prefalign model format)")
    base: str = option(
        "openai/clip-vit-large-patch14",
        "base CLIP: a model directory, hub id or known name (both papers: CLIP ViT-L/14)",
    )
    eval_data: str | None = option(
        None,
        "held-out dataset directory (default: the records whose split is 'validation' or 'val', "
        "else --eval-fraction of the training records)",
    )
    eval_fraction: float = option(
        0.05, "fraction of training records held out for evaluation when there is no validation split"
    )
    eval_steps: int = option(
        100, "evaluate on the held-out records every N optimizer steps (0: only at the end)"
    )
    eval_at_start: bool = option(True, "evaluate once before training (the untrained baseline)")
    learning_rate: float = option(1e-4, "peak learning rate of AdamW")
    weight_decay: float = option(0.0, "AdamW weight decay (never on norms, biases or logit_scale)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    lr_scheduler: str = option(
        "cosine",
        "learning-rate schedule after warm-up: cosine, linear or constant",
        choices=("cosine", "linear", "constant"),
    )
    warmup_steps: int = option(0, "linear warm-up steps")
    max_grad_norm: float = option(0.0, "clip gradients to this norm (0: no clipping)")
    batch_size: int = option(5, "records per optimizer step on each process")
    num_epochs: int = option(1, "passes over the training records")
    max_steps: int = option(0, "stop after this many optimizer steps (0: num_epochs decides)")
    seed: int = option(0, "seed of the shuffling, the held-out split and the initialisation")
    save_steps: int = option(
        500, "write a resumable checkpoint every N steps (0: never; Ctrl-C still writes one)"
    )
    save_total_limit: int = option(2, "keep at most this many checkpoints (0: keep all)")
    checkpoint_dir: str | None = option(None, "where checkpoints go (default: OUT.checkpoints next to OUT)")
    resume: str | None = option(
        None,
        "continue from a checkpoint: 'latest' (the bare flag) or a checkpoint directory",
        nargs="?",
        const="latest",
    )
    overwrite: bool = option(False, "replace an existing output directory")
    mixed_precision: str = option(
        "no", "no, fp16 or bf16 (bf16 is ~2x slower on CPUs without AMX)", choices=("no", "fp16", "bf16")
    )
    cpu: bool = option(False, "train on the CPU even when a GPU is present")
    num_workers: int = option(0, "DataLoader worker processes that decode images")
    check_images: bool = option(
        True, "open every image header before training and skip records whose images cannot be read"
    )
    progress: bool = option(True, "show a progress bar with loss and accuracy")

    # ------------------------------------------------------------------ helpers
    def validate(self) -> None:
        """Raise ``TrainConfigError`` for a value that cannot work, before anything loads."""
        if not self.data:
            raise TrainConfigError("data is required (the training dataset directory)")
        if not self.out:
            raise TrainConfigError("out is required (the model directory to write)")
        positive = ("batch_size", "num_epochs", "learning_rate")
        for name in positive:
            if getattr(self, name) <= 0:
                raise TrainConfigError(f"{name} must be positive, got {getattr(self, name)}")
        non_negative = (
            "eval_steps",
            "save_steps",
            "save_total_limit",
            "max_steps",
            "warmup_steps",
            "num_workers",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise TrainConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise TrainConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")

    @property
    def checkpoint_path(self) -> Path:
        """The checkpoint directory (``OUT.checkpoints`` unless set)."""
        out = Path(self.out)
        return Path(self.checkpoint_dir) if self.checkpoint_dir else out.with_name(out.name + ".checkpoints")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Resolved type hints of the fields (the annotations are strings under PEP 563)."""
        return typing.get_type_hints(cls)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config, refusing unknown keys (a misspelt option must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainConfigError(f"{source}: unknown option(s) {', '.join(unknown)} for {cls.__name__}")
        types = cls.field_types()
        return cls(**{k: _coerce(k, types[k], v, source) for k, v in values.items()})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML file of option: value lines; ``overrides`` win over the file."""
        import yaml

        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TrainConfigError(f"{path}: cannot read the config ({exc})") from None
        if not isinstance(values, dict):
            raise TrainConfigError(f"{path}: expected a mapping of option: value")
        return cls.from_dict({**values, **overrides}, source=str(path))


def _coerce(name: str, tp: Any, value: Any, source: str) -> Any:
    """A YAML value as the field's type: YAML reads ``1e-5`` as a string, for one."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
        if args:  # Optional
            return None
        raise TrainConfigError(f"{source}: {name} cannot be empty")
    base = args[0] if args else tp
    if base is bool:
        if isinstance(value, bool):
            return value
        raise TrainConfigError(f"{source}: {name} must be true or false, got {value!r}")
    if base in (int, float, str):
        try:
            converted = base(value)
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number", str: "text"}[base]
            raise TrainConfigError(f"{source}: {name} must be {kind}, got {value!r}") from None
        if base is int and isinstance(value, float) and value != converted:
            raise TrainConfigError(f"{source}: {name} must be a whole number, got {value!r}")
        return converted
    return value
