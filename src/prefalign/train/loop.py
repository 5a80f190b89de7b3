"""The training loop both trainers share: accelerate, checkpoints, exact resume, Ctrl-C, logs.

A trainer subclass says what the data, the model, the loss, the evaluation and the saved model
are; this module runs them the same way on one CPU, one GPU or many processes under
``accelerate launch``:

* Data order is a seeded permutation per epoch, independent of any global RNG, so a resumed
  run sees the same batches as an uninterrupted one; accelerate shards each batch list across
  processes.
* A checkpoint (``CHECKPOINTS/step-NNNNNNN``) holds the model, optimizer, scheduler and RNG
  states (``accelerator.save_state``) plus ``trainer_state.json`` (step, epoch, position in the
  epoch, the log so far). It is written to a temporary name and renamed, so a checkpoint that
  exists is complete.
* Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step: it writes a
  checkpoint and raises ``TrainingInterrupted``. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefalign.train.config import TrainConfig, TrainConfigError
from prefalign.train.examples import SkipReport

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
LOG_FILE = "training_log.jsonl"
CONFIG_FILE = "training_config.yaml"
SUMMARY_FILE = "training_summary.json"
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
    }
)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM) after writing a resumable checkpoint."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        super().__init__(
            f"interrupted; checkpoint written to {checkpoint} (continue with --resume_from_checkpoint)"
        )


@dataclass
class TrainerState:
    """Where training is, saved with every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    total_steps: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    load_failures: dict[str, int] = field(default_factory=dict)

    @property
    def train_log(self) -> list[dict[str, Any]]:
        return [r for r in self.log if r.get("type") == "train"]

    @property
    def eval_log(self) -> list[dict[str, Any]]:
        return [r for r in self.log if r.get("type") == "eval"]


@dataclass
class TrainResult:
    """What a finished run produced."""

    model_dir: Path
    state: TrainerState
    eval_before: dict[str, float] | None
    eval_after: dict[str, float] | None
    skipped: dict[str, int]


class _StopRequest:
    """SIGINT/SIGTERM handlers that ask the loop to stop at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop now, without a checkpoint
            self.restore()
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stopping after this step and writing a checkpoint (Ctrl-C again to stop now)")

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self.restore()


class Trainer:
    """Base of the trainers: subclasses fill in the hooks below; ``train()`` runs the loop.

    Args:
        config: the trainer's config dataclass.
        callbacks: functions called as ``callback(trainer, state)`` after every optimizer step
            (after logging and checkpointing); tests use them to interrupt a run.
    """

    name = "trainer"

    def __init__(
        self, config: TrainConfig, *, callbacks: list[Callable[[Trainer, TrainerState], None]] | None = None
    ):
        config.validate()
        self.config = config
        self.callbacks = list(callbacks or [])
        self.accelerator = None
        self.model = self.optimizer = self.scheduler = None  # set by train(), for inspection
        self.train_examples: list = []
        self.eval_examples: list = []
        self.skipped = SkipReport()

    # ------------------------------------------------------------------ hooks
    def setup(self) -> None:
        """Read the data and the base model; raise before training on anything unusable."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """The module whose forward computes what ``compute_loss`` needs (accelerate wraps it)."""
        raise NotImplementedError

    def collate(self, examples: list) -> dict[str, Any]:
        raise NotImplementedError

    def compute_loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, metrics)``: metrics are scalar tensors (batch means) to log beside the loss."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics (every process calls it; the result must agree across processes)."""
        raise NotImplementedError

    def save_model(self, model: nn.Module, out: Path, state: TrainerState) -> None:
        """Write the unwrapped model as a prefalign model directory (main process only)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        """Train, evaluate and write the model directory; see the module docstring.

        Raises:
            TrainingInterrupted: on Ctrl-C or SIGTERM, after writing a checkpoint.
            PrefalignError: bad data, base model or configuration, before training starts.
        """
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.config
        out = Path(cfg.output_dir)
        if out.exists() and any(out.iterdir()) and not cfg.overwrite:
            raise TrainConfigError(f"{out}: already exists and is not empty (use --overwrite to replace it)")
        resume_dir = self._find_resume_checkpoint() if cfg.resume_from_checkpoint else None

        acc = self.accelerator = Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
        set_seed(cfg.seed)
        self.setup()
        model = self.build_model()
        optimizer = torch.optim.AdamW(
            self.parameter_groups(model),
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
        )
        steps_per_epoch = len(self._epoch_loader(0))
        total_steps = cfg.max_steps or cfg.num_train_epochs * steps_per_epoch
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        scheduler = self._scheduler(optimizer, total_steps)
        model, optimizer = acc.prepare(model, optimizer)
        # Not through prepare(): accelerate would step it once per process per step.
        acc.register_for_checkpointing(scheduler)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler

        state = TrainerState(total_steps=total_steps)
        if resume_dir is not None:
            state = self._load_checkpoint(resume_dir)
        self._log_start(model, total_steps)

        eval_before = None
        if state.step == 0 and cfg.eval_at_start and self.eval_examples:
            eval_before = self._run_eval(model, state)
        elif state.eval_log:
            eval_before = {k: v for k, v in state.eval_log[0].items() if k not in ("type", "step")}

        from tqdm.auto import tqdm

        bar = tqdm(
            total=total_steps,
            initial=state.step,
            desc=f"training {self.name}",
            unit="step",
            disable=not (cfg.progress and acc.is_main_process),
        )
        with _StopRequest() as stop:
            for epoch in range(state.epoch, num_epochs):
                loader = self._epoch_loader(epoch)
                if state.batch_in_epoch:
                    from accelerate.data_loader import skip_first_batches

                    loader = skip_first_batches(loader, state.batch_in_epoch)
                for batch in loader:
                    model.train()
                    loss, metrics = self.compute_loss(model, batch)
                    acc.backward(loss)
                    if cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    self.after_optimizer_step(model)
                    lr = scheduler.get_last_lr()[0]
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    state.step += 1
                    state.batch_in_epoch += 1
                    for path, reason in batch.get("failures", []):
                        state.load_failures[reason] = state.load_failures.get(reason, 0) + 1
                        logger.warning("skipped a record whose image failed to load: %s: %s", path, reason)

                    row = self._reduce_metrics(loss, metrics)
                    row = {"type": "train", "step": state.step, "epoch": epoch, **row, "lr": lr}
                    state.log.append(row)
                    bar.update(1)
                    bar.set_postfix(self._postfix(row, state), refresh=False)

                    if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < total_steps:
                        self._run_eval(model, state)
                    if cfg.save_steps and state.step % cfg.save_steps == 0 and state.step < total_steps:
                        self._save_checkpoint(state)
                    for callback in self.callbacks:
                        callback(self, state)
                    if self._any_process(stop.requested):
                        checkpoint = self._save_checkpoint(state)
                        bar.close()
                        raise TrainingInterrupted(checkpoint)
                    if state.step >= total_steps:
                        break
                if state.step >= total_steps:
                    break
                state.epoch += 1
                state.batch_in_epoch = 0
        bar.close()

        eval_after = self._run_eval(model, state) if self.eval_examples else None
        skipped = self.skipped.to_dict()
        for reason, n in state.load_failures.items():
            skipped[f"at load time: {reason}"] = n
        if acc.is_main_process:
            self._write_outputs(acc.unwrap_model(model), out, state, eval_before, eval_after, skipped)
        acc.wait_for_everyone()
        acc.end_training()
        return TrainResult(out, state, eval_before, eval_after, skipped)

    # ------------------------------------------------------------------ pieces
    def after_optimizer_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (the place for parameter constraints); no-op here."""

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """AdamW parameter groups (default: every trainable parameter, the config's decay)."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": self.config.weight_decay}]

    def _epoch_loader(self, epoch: int):
        from accelerate.data_loader import prepare_data_loader
        from torch.utils.data import DataLoader

        order = list(range(len(self.train_examples)))
        # A seeded permutation per epoch: independent of the global RNG, so resuming is exact.
        random.Random(f"{self.config.seed}:epoch:{epoch}").shuffle(order)
        loader = DataLoader(
            [self.train_examples[i] for i in order],
            batch_size=self.config.per_device_train_batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.config.dataloader_num_workers,
        )
        acc = self.accelerator
        return prepare_data_loader(
            loader,
            acc.device,
            num_processes=acc.num_processes,
            process_index=acc.process_index,
            put_on_device=True,
            rng_types=[],
            even_batches=True,
        )

    def _scheduler(self, optimizer, total_steps: int):
        from transformers import get_scheduler

        name = self.config.lr_scheduler_type
        if name == "constant" and self.config.warmup_steps:
            name = "constant_with_warmup"
        return get_scheduler(
            name, optimizer, num_warmup_steps=self.config.warmup_steps, num_training_steps=total_steps
        )

    def _reduce_metrics(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        names = ["loss", *metrics]
        values = torch.stack([loss.detach().float(), *(m.detach().float() for m in metrics.values())])
        values = self.accelerator.reduce(values, reduction="mean")
        return {n: float(v) for n, v in zip(names, values.cpu())}

    def _any_process(self, flag: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def _postfix(self, row: dict[str, Any], state: TrainerState) -> dict[str, str]:
        post = {"loss": f"{row['loss']:.4f}"}
        if "accuracy" in row:
            post["acc"] = f"{row['accuracy']:.3f}"
        evals = state.eval_log
        if evals:
            key = next((k for k in evals[-1] if k.startswith("eval_") and "accuracy" in k), None)
            if key:
                post["eval_acc"] = f"{evals[-1][key]:.3f}"
        post["lr"] = f"{row['lr']:.2e}"
        return post

    def _run_eval(self, model: nn.Module, state: TrainerState) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            metrics = self.evaluate(model)
        model.train()
        state.log.append({"type": "eval", "step": state.step, **metrics})
        if self.accelerator.is_main_process:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            logger.info("step %d: %s", state.step, shown)
        return metrics

    def _log_start(self, model: nn.Module, total_steps: int) -> None:
        if not self.accelerator.is_main_process:
            return
        from prefalign.train.freezing import count_parameters

        trainable, total = count_parameters(self.accelerator.unwrap_model(model))
        logger.info(
            "%s: %d training and %d held-out examples (%d skipped), %d steps on %d process(es); "
            "%s of %s parameters train",
            self.name,
            len(self.train_examples),
            len(self.eval_examples),
            self.skipped.total,
            total_steps,
            self.accelerator.num_processes,
            f"{trainable:,}",
            f"{total:,}",
        )

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, state: TrainerState) -> Path:
        acc = self.accelerator
        root = self.config.checkpoint_path
        final = root / f"step-{state.step:07d}"
        tmp = root / f".step-{state.step:07d}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(asdict(state)), encoding="utf-8")
            (tmp / CONFIG_FILE).write_text(self.config.to_yaml(), encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            self._prune_checkpoints(root)
            logger.info("checkpoint: %s", final)
        acc.wait_for_everyone()
        return final

    def _prune_checkpoints(self, root: Path) -> None:
        limit = self.config.save_total_limit
        if not limit:
            return
        for old in list_checkpoints(root)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def _find_resume_checkpoint(self) -> Path:
        cfg = self.config
        if cfg.resume_from_checkpoint == "latest":
            found = list_checkpoints(cfg.checkpoint_path)
            if not found:
                raise TrainConfigError(f"--resume_from_checkpoint: no checkpoint in {cfg.checkpoint_path}")
            checkpoint = found[-1]
        else:
            checkpoint = Path(cfg.resume_from_checkpoint)
            if not (checkpoint / STATE_FILE).is_file():
                raise TrainConfigError(f"{checkpoint}: not a checkpoint (no {STATE_FILE})")
        self._check_resume_config(checkpoint)
        return checkpoint

    def _check_resume_config(self, checkpoint: Path) -> None:
        import yaml

        saved = yaml.safe_load((checkpoint / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        # A checkpoint written before the shared vocabulary (issue 13) names its settings the old way.
        saved = {self.config.DEPRECATED.get(k, k): v for k, v in saved.items()}
        now = self.config.to_dict()
        changed = sorted(k for k in now if k not in RESUME_FREE_OPTIONS and saved.get(k) != now[k])
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
            raise TrainConfigError(
                f"{checkpoint}: the checkpoint was written with other settings ({detail}); "
                "resume with the same settings to continue the same run"
            )

    def _load_checkpoint(self, checkpoint: Path) -> TrainerState:
        self.accelerator.load_state(str(checkpoint))
        state = TrainerState(**json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8")))
        logger.info("resumed from %s at step %d", checkpoint, state.step)
        return state

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, model, out: Path, state: TrainerState, eval_before, eval_after, skipped) -> None:
        self.save_model(model, out, state)
        lines = "".join(json.dumps(row) + "\n" for row in state.log)
        (out / LOG_FILE).write_text(lines, encoding="utf-8")
        (out / CONFIG_FILE).write_text(self.config.to_yaml(), encoding="utf-8")
        summary = {
            "trainer": self.name,
            "steps": state.step,
            "train_examples": len(self.train_examples),
            "eval_examples": len(self.eval_examples),
            "eval_before": eval_before,
            "eval_after": eval_after,
            "skipped": skipped,
        }
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote %s", out)


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


__all__ = [
    "TrainResult",
    "Trainer",
    "TrainerState",
    "TrainingInterrupted",
    "list_checkpoints",
]
