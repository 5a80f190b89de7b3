"""``TrainingConfig``: the shared vocabulary of every trainer (the names of transformers' ``TrainingArguments``).

Each field carries its help text once (``metadata={"help": ...}``); extra argparse settings
(``choices``, ``nargs``, ``const``) sit beside it in the metadata, where
``transformers.HfArgumentParser`` reads them. Defaults here are transformers' where the toolkit has
no reason to differ; the trainers override what their paper or authors' code sets.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefalign.errors import PrefalignError

MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("linear", "cosine", "constant")
REPORT_TO = ("none", "tensorboard", "wandb")


class ConfigError(PrefalignError, ValueError):
    """A configuration that cannot train, naming the field (or file) and what is wrong."""


def option(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A config field with its help text and optional argparse settings (``choices``, ``nargs``...)."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclass
class TrainingConfig:
    """Settings every trainer has, under transformers' ``TrainingArguments`` names.

    Class attributes each trainer sets:

    - ``UNSUPPORTED``: shared fields its loop does not implement yet; a value other than the
      default is refused by :meth:`validate` rather than ignored.
    - ``DEPRECATED``: old option name -> new name, accepted for one release with a warning.
    - ``BATCH_SIZE_WAS_GLOBAL``: the old ``batch_size`` counted pairs over all processes and
      accumulation steps (adapt), not per process (train); converted explicitly.
    """

    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()
    DEPRECATED: ClassVar[dict[str, str]] = {}
    BATCH_SIZE_WAS_GLOBAL: ClassVar[bool] = False

    data: str = option("", "training dataset directory (records.parquet + images)")
    base: str = option("", "base model: a model directory, hub id or known name")
    output_dir: str = option("", "directory to write the trained model to")
    max_steps: int = option(0, "stop after this many optimizer steps (0: num_train_epochs decides)")
    num_train_epochs: int = option(1, "passes over the training records when max_steps is 0")
    per_device_train_batch_size: int = option(
        8,
        "examples per forward pass on each process; an optimizer step sees this x processes x "
        "gradient_accumulation_steps (transformers' default: 8)",
    )
    gradient_accumulation_steps: int = option(1, "forward/backward passes per optimizer step")
    learning_rate: float = option(5e-5, "peak AdamW learning rate (transformers' default: 5e-5)")
    lr_scheduler_type: str = option(
        "linear", "learning-rate schedule after warm-up: linear, cosine or constant", choices=LR_SCHEDULERS
    )
    warmup_steps: int = option(0, "linear warm-up steps")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "clip gradients to this norm (0: no clipping; transformers': 1.0)")
    mixed_precision: str = option(
        "no", "accelerate's mixed precision: no, fp16 or bf16", choices=MIXED_PRECISION
    )
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    seed: int = option(0, "seed of initialisation, data order and noise (ours: 0)")
    save_steps: int = option(500, "write a resumable checkpoint every N optimizer steps (0: never)")
    save_total_limit: int = option(2, "keep at most this many checkpoints (0: keep all; ours: 2)")
    resume_from_checkpoint: str | None = option(
        None,
        "continue from a checkpoint: 'latest' (the bare flag) or a checkpoint directory",
        nargs="?",
        const="latest",
    )
    eval_steps: int = option(0, "evaluate on held-out records every N optimizer steps (0: only at the end)")
    logging_steps: int = option(1, "log the loss every N optimizer steps")
    report_to: str = option(
        "none",
        "experiment tracker through accelerate: none, tensorboard (OUTPUT_DIR/logs; pip install tensorboard) "
        "or wandb (ours: none; training_log.jsonl is always written)",
        choices=REPORT_TO,
    )
    dataloader_num_workers: int = option(0, "DataLoader worker processes that decode images")
    cpu: bool = option(False, "train on the CPU even when a GPU is present (ours; transformers: use_cpu)")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ConfigError`` for a value that cannot work, before anything loads."""
        for name in ("data", "output_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required (--{name}, here or in --config)")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in (
            "max_steps",
            "warmup_steps",
            "save_steps",
            "save_total_limit",
            "eval_steps",
            "dataloader_num_workers",
            "max_grad_norm",
            "weight_decay",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.logging_steps < 1:
            raise ConfigError(f"logging_steps must be at least 1, got {self.logging_steps}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in sorted(self.UNSUPPORTED):
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r}: {type(self).__name__}'s training loop does not implement "
                    f"it yet; leave it at {defaults[name]!r}"
                )

    # ------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Resolved type hints of the fields (the annotations are strings under PEP 563)."""
        return {
            k: v
            for k, v in typing.get_type_hints(cls).items()
            if k in {f.name for f in dataclasses.fields(cls)}
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainingConfig:
        """Build a config from option: value pairs, typed as the fields (YAML's ``1e-5`` is a string).

        Old names are mapped to the new ones with a ``FutureWarning``; unknown keys raise one
        ``ConfigError`` naming all of them.
        """
        values = upgrade_names(cls, values, source=source)
        types = cls.field_types()
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ConfigError(
                f"{source}: unknown option(s) {', '.join(unknown)} for {cls.__name__} "
                f"(see --help for the option names)"
            )
        typed = {k: coerce(k, types[k], v, source) for k, v in values.items()}
        choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(cls)}
        for name, value in typed.items():
            allowed = choices[name]
            if allowed and value is not None and value not in allowed:
                raise ConfigError(f"{source}: {name} must be one of {', '.join(allowed)}, got {value!r}")
        return cls(**typed)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainingConfig:
        """Read a YAML (or JSON) file of option: value lines; ``overrides`` win over the file."""
        return cls.from_dict({**read_recipe(path), **overrides}, source=str(path))


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file as a dict with underscore keys; ``ConfigError`` naming the file otherwise."""
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def upgrade_names(
    cls: type[TrainingConfig], values: dict[str, Any], *, source: str, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Map deprecated option names to the new ones, warning once per name (FutureWarning).

    ``batch_size`` of a trainer whose old batch size was global (pairs over all processes and
    accumulation steps) becomes ``per_device_train_batch_size = batch_size / (processes x
    gradient_accumulation_steps)``; processes from ``$WORLD_SIZE`` (set by ``accelerate launch``),
    accumulation from ``values`` or else ``context`` (the recipe file's values).
    """
    out = dict(values)
    for old, new in cls.DEPRECATED.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out:
            raise ConfigError(f"{source}: both {old} (deprecated) and {new} given; keep only {new}")
        note = ""
        if old == "batch_size" and cls.BATCH_SIZE_WAS_GLOBAL:
            accumulation = int(
                out.get("gradient_accumulation_steps", (context or {}).get("gradient_accumulation_steps", 1))
            )
            processes = int(os.environ.get("WORLD_SIZE", "1"))
            passes = accumulation * processes
            if int(value) % passes:
                raise ConfigError(
                    f"{source}: batch_size {value} (pairs over all processes and accumulation steps) is not "
                    f"divisible by {processes} process(es) x {accumulation} accumulation step(s); "
                    f"give per_device_train_batch_size instead"
                )
            note = (
                f" (batch_size was global: {value} = {processes} process(es) x {accumulation} accumulation "
                f"step(s) x {int(value) // passes} per device)"
            )
            value = int(value) // passes
        elif old == "resume" and value is True:
            value = "latest"
        elif old == "resume" and value is False:
            value = None
        warnings.warn(
            f"{source}: '{old}' is deprecated and will be removed in the next release; use '{new}'{note}",
            FutureWarning,
            stacklevel=3,
        )
        out[new] = value
    return out


def coerce(name: str, tp: Any, value: Any, source: str) -> Any:
    """A value as the field's type: YAML 1.1 reads ``1e-5`` as a string, for one."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
        if args:  # Optional
            return None
        raise ConfigError(f"{source}: {name} cannot be empty")
    base = args[0] if args else tp
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
    if base in (int, float, str):
        if base is not str and isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be a number, got {value!r}")
        try:
            converted = base(value)
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number", str: "text"}[base]
            raise ConfigError(f"{source}: {name} must be {kind}, got {value!r}") from None
        if base is int and isinstance(value, float) and value != converted:
            raise ConfigError(f"{source}: {name} must be a whole number, got {value!r}")
        return converted
    return value
