"""The training loop core every trainer runs on: accelerate, accumulation, metrics, trackers, checkpoints.

A trainer (``prefalign.train.loop.Trainer`` for preference and reward models,
``prefalign.adapt.trainer.DiffusionFineTuner`` for the diffusion trainers) derives from
:class:`LoopCore` and says what a batch, the loss and the saved model are; the core does the
rest the same way for every one of them:

* ``Accelerator(gradient_accumulation_steps=..., mixed_precision=..., log_with=report_to,
  project_dir=output_dir)`` (:meth:`LoopCore.make_accelerator`); fp16 needs a GPU and is refused
  on a CPU (accelerate would silently train in fp32 there).
* An optimizer step (:meth:`LoopCore.optimizer_step`) clips the gradients to ``max_grad_norm``
  (on sync steps only: after the last accumulation pass) and steps the optimizer.
* Metrics are averaged across processes before they are logged (:meth:`LoopCore.reduce_metrics`:
  ``*_min`` / ``*_max`` names take the minimum / maximum instead), then go to the trainer's
  ``training_log.jsonl`` and to the ``report_to`` trackers (accelerate's ``init_trackers`` /
  ``log`` / ``end_training``; TensorBoard logs under ``OUTPUT_DIR/logs/<trainer>``).
* A checkpoint (``step-NNNNNNN``) is ``accelerator.save_state`` (model, optimizer, scheduler,
  fp16 grad scaler, RNG states) plus ``trainer_state.json`` and ``training_config.yaml``, written
  to a temporary name and renamed (a checkpoint that exists is complete); the oldest beyond
  ``save_total_limit`` are deleted. A model with frozen weights (a LoRA UNet) can checkpoint only
  its trainable parameters (:meth:`LoopCore.checkpoint_trainable_only`, accelerate's save/load
  state pre-hooks), so a checkpoint never holds the frozen base.
* ``resume_from_checkpoint`` is ``latest`` or a checkpoint directory; resuming with settings that
  change the results is refused, naming them.
* Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current optimizer step
  (:class:`StopRequest`): the trainer writes a checkpoint and raises :class:`TrainingInterrupted`,
  which the CLI turns into exit status 130. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefalign.errors import PrefalignError
from prefalign.files import share_written
from prefalign.training.config import ConfigError, TrainingConfig

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
CONFIG_FILE = "training_config.yaml"
LOG_FILE = "training_log.jsonl"
TRAINABLE_WEIGHTS_FILE = "trainable.safetensors"
LOGGING_DIR = "logs"  # trackers' files, under the output directory
# Options that may change between a run and its resumption without changing the results.
RESUME_FREE_OPTIONS = frozenset(
    {
        "resume_from_checkpoint",
        "progress",
        "dataloader_num_workers",
        "logging_steps",
        "report_to",
        "overwrite",
        "save_steps",
        "save_total_limit",
        "checkpoint_dir",
        "eval_steps",
        "merge",
        "output_dir",
        "disable_tqdm",
        # sample grids (prefalign.adapt.validation) sample without touching the training streams
        "validation_prompts",
        "validation_steps",
        "num_validation_images",
        "validation_inference_steps",
    }
)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM) after writing a resumable checkpoint."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        super().__init__(
            f"interrupted; checkpoint written to {checkpoint} (continue with --resume_from_checkpoint)"
        )


class StopRequest:
    """SIGINT/SIGTERM handlers that ask the loop to stop at the next optimizer-step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now, without a checkpoint
            self.restore()
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stopping after this step and writing a checkpoint (Ctrl-C again to stop now)")

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        self.restore()


def compute_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype frozen modules are cast to under ``mixed_precision`` (the diffusers LoRA recipe)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (those with a ``trainer_state.json``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def tracker_config(config: TrainingConfig) -> dict[str, Any]:
    """The config as tracker hyper-parameters: TensorBoard takes numbers, text and booleans only."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.to_dict().items()}


class LoopCore:
    """What every trainer's loop shares; a trainer sets ``config`` and calls these pieces.

    Attributes a subclass provides:
        config: the trainer's :class:`~prefalign.training.config.TrainingConfig`.
        name: the trainer's name (tracker run name, log lines).
        error_cls: the error raised for an unusable checkpoint or setting.
    """

    name = "trainer"
    error_cls: type[PrefalignError] = ConfigError
    config: TrainingConfig
    accelerator: Any = None

    # ------------------------------------------------------------------ accelerate
    def make_accelerator(self, project_dir: Path, logging_dir: Path | None = None) -> Any:
        """The run's ``Accelerator``; trackers log under ``logging_dir`` (default ``project_dir/logs``).

        Raises:
            error_cls: fp16 without a GPU (accelerate would run in fp32 and say nothing).
        """
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        cfg = self.config
        if cfg.mixed_precision == "fp16" and (cfg.cpu or not torch.cuda.is_available()):
            raise self.error_cls(
                "mixed_precision fp16 needs a GPU (on a CPU accelerate would train in fp32); "
                "use --mixed_precision bf16 or no"
            )
        # accelerate keeps one AcceleratorState per process, fixed by the first Accelerator; a second
        # run in the same process (a notebook, the tests) with another mixed precision would be
        # refused. The distributed state (PartialState) is kept.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            cpu=cfg.cpu,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with=None if cfg.report_to == "none" else cfg.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(project_dir),
                logging_dir=str(logging_dir or Path(project_dir) / LOGGING_DIR),
            ),
        )
        return self.accelerator

    @property
    def weight_dtype(self) -> torch.dtype:
        """The compute dtype of frozen modules: fp16/bf16 under mixed precision, else fp32."""
        return compute_dtype(self.accelerator.mixed_precision)

    def start_trackers(self) -> None:
        """``accelerator.init_trackers`` for ``report_to`` (every process calls it; main logs)."""
        if self.config.report_to != "none":
            self.accelerator.init_trackers(self.name, config=tracker_config(self.config))

    def end_trackers(self) -> None:
        """Flush and close the trackers (what ``accelerator.end_training`` does, less its
        ``destroy_process_group``: a second run in the same processes needs the group)."""
        if self.accelerator is None:
            return
        if self.accelerator.is_main_process:
            for tracker in self.accelerator.trackers:
                tracker.finish()
        self.accelerator.trackers = []

    def lr_scheduler(self, optimizer: Any, total_steps: int) -> Any:
        """transformers' ``get_scheduler`` for ``lr_scheduler_type`` with ``warmup_steps`` linear
        warm-up (``constant`` with warm-up is ``constant_with_warmup``), registered for
        checkpointing. Not passed to ``accelerator.prepare``, which would step it once per process:
        call ``.step()`` once per optimizer step."""
        from transformers import get_scheduler

        name = self.config.lr_scheduler_type
        if name == "constant" and self.config.warmup_steps:
            name = "constant_with_warmup"
        scheduler = get_scheduler(
            name, optimizer, num_warmup_steps=self.config.warmup_steps, num_training_steps=total_steps
        )
        self.accelerator.register_for_checkpointing(scheduler)
        return scheduler

    def optimizer_step(self, optimizer: Any, parameters: list[nn.Parameter]) -> None:
        """Clip to ``max_grad_norm`` (0: no clipping), step and zero the gradients: call on sync steps."""
        if self.config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(parameters, self.config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def any_process(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process (a stop request seen by one process)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=acc.device)
        return bool(acc.reduce(t, reduction="sum").item() > 0)

    # ------------------------------------------------------------------ metrics
    def reduce_metrics(self, values: dict[str, float | torch.Tensor]) -> dict[str, float]:
        """Scalar metrics of this process -> their mean over processes (every process calls it).

        Names ending in ``_min`` / ``_max`` take the minimum / maximum over processes.
        """
        acc = self.accelerator
        names = list(values)
        local = torch.tensor(
            [float(v.detach().float()) if isinstance(v, torch.Tensor) else float(v) for v in values.values()],
            dtype=torch.float64 if acc.device.type == "cpu" else torch.float32,
            device=acc.device,
        )
        # (processes, metrics)
        every = acc.gather(local.unsqueeze(0)) if acc.num_processes > 1 else local.unsqueeze(0)
        out = {}
        for j, name in enumerate(names):
            column = every[:, j]
            if name.endswith("_min"):
                out[name] = float(column.min())
            elif name.endswith("_max"):
                out[name] = float(column.max())
            else:
                out[name] = float(column.mean())
        return out

    def log_to_trackers(self, row: dict[str, Any], step: int, prefix: str = "") -> None:
        """The numbers of ``row`` to the ``report_to`` trackers (main process; no-op for none)."""
        if self.config.report_to == "none":
            return
        scalars = {
            prefix + k: v
            for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "type")
        }
        self.accelerator.log(scalars, step=step)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_trainable_only(self, model: nn.Module) -> None:
        """Checkpoint only ``model``'s trainable parameters (a LoRA adapter, never the frozen base).

        Registers accelerate's save/load state pre-hooks: saving writes ``trainable.safetensors``
        instead of the model's whole state dict; loading copies it back by parameter name and
        refuses a checkpoint whose names differ (another rank or target).
        """
        acc = self.accelerator

        def target_index(models: list[nn.Module]) -> int | None:
            for i, m in enumerate(models):
                if acc.unwrap_model(m) is model:
                    return i
            return None

        def trainable() -> dict[str, nn.Parameter]:
            return {n: p for n, p in model.named_parameters() if p.requires_grad}

        def save_hook(models: list[nn.Module], weights: list[dict], output_dir: str) -> None:
            i = target_index(models)
            if i is None:
                return
            if acc.is_main_process:
                from safetensors.torch import save_file

                tensors = {n: p.detach().cpu().contiguous() for n, p in trainable().items()}
                save_file(tensors, str(Path(output_dir) / TRAINABLE_WEIGHTS_FILE))
                share_written(Path(output_dir) / TRAINABLE_WEIGHTS_FILE)  # safetensors writes 0600
            if i < len(weights):
                weights.pop(i)

        def load_hook(models: list[nn.Module], input_dir: str) -> None:
            i = target_index(models)
            if i is None:
                return
            from safetensors.torch import load_file

            path = Path(input_dir) / TRAINABLE_WEIGHTS_FILE
            if not path.is_file():
                raise self.error_cls(f"{input_dir}: not a checkpoint of this trainer (no {path.name})")
            saved = load_file(str(path))
            params = trainable()
            if set(saved) != set(params):
                raise self.error_cls(
                    f"{input_dir}: the checkpoint's trainable weights do not match this run's "
                    "(another LoRA rank or training target?); resume with the same settings"
                )
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(saved[name].to(param))
            models.pop(i)

        acc.register_save_state_pre_hook(save_hook)
        acc.register_load_state_pre_hook(load_hook)

    def save_checkpoint(self, root: Path, step: int, state: dict[str, Any]) -> Path:
        """``root/step-NNNNNNN``: ``accelerator.save_state`` + ``state`` + the config, all processes.

        Written under a temporary name and renamed; older checkpoints beyond ``save_total_limit``
        are deleted.
        """
        acc = self.accelerator
        final = root / f"step-{step:07d}"
        tmp = root / f".step-{step:07d}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            (tmp / CONFIG_FILE).write_text(self.config.to_yaml(), encoding="utf-8")
            share_written(tmp)  # safetensors and torch.save outputs: the usual mode
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            limit = self.config.save_total_limit
            for old in list_checkpoints(root)[:-limit] if limit else []:
                shutil.rmtree(old, ignore_errors=True)
            logger.info("checkpoint: %s", final)
        acc.wait_for_everyone()
        return final

    def find_checkpoint(self, root: Path) -> Path:
        """The checkpoint ``resume_from_checkpoint`` names (``latest``: the newest under ``root``).

        Raises:
            error_cls: no checkpoint, not a checkpoint, or one written with other settings.
        """
        wanted = self.config.resume_from_checkpoint
        if wanted == "latest":
            found = list_checkpoints(root)
            if not found:
                raise self.error_cls(f"--resume_from_checkpoint: no checkpoint in {root}")
            checkpoint = found[-1]
        else:
            checkpoint = Path(str(wanted))
            if not (checkpoint / STATE_FILE).is_file():
                old = " (a checkpoint of prefalign before issue 13 cannot be resumed)" * (
                    (checkpoint / "state.json").is_file()
                )
                raise self.error_cls(f"{checkpoint}: not a checkpoint (no {STATE_FILE}){old}")
        self.check_resume_config(checkpoint)
        return checkpoint

    def check_resume_config(self, checkpoint: Path) -> None:
        """Refuse to resume with settings that change the results, naming them."""
        import yaml

        config_file = checkpoint / CONFIG_FILE
        if not config_file.is_file():
            return
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        # A checkpoint written before the shared vocabulary (issue 13) names its settings the old way.
        saved = {self.config.DEPRECATED.get(k, k): v for k, v in saved.items()}
        now = self.config.to_dict()
        free = set(RESUME_FREE_OPTIONS)
        # Extending a run is continuing it when the schedule does not depend on its length.
        if now.get("lr_scheduler_type") == "constant" and (now.get("max_steps") or 0) >= (
            saved.get("max_steps") or 0
        ):
            free.add("max_steps")
        changed = sorted(k for k in now if k not in free and saved.get(k) != now[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
            raise self.error_cls(
                f"{checkpoint}: the checkpoint was written with other settings ({detail}); "
                "resume with the same settings to continue the same run"
            )

    def load_checkpoint(self, checkpoint: Path) -> dict[str, Any]:
        """``accelerator.load_state`` and the saved ``trainer_state.json`` (all processes)."""
        self.accelerator.load_state(str(checkpoint))
        state: dict[str, Any] = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        logger.info("resumed from %s at step %s", checkpoint, state.get("step"))
        return state


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """``training_log.jsonl``: one JSON row per logged step or evaluation (atomic)."""
    from prefalign.files import write_atomic

    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


__all__ = [
    "CONFIG_FILE",
    "LOG_FILE",
    "STATE_FILE",
    "LoopCore",
    "StopRequest",
    "TrainingInterrupted",
    "compute_dtype",
    "list_checkpoints",
    "write_log",
]
