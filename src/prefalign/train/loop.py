"""The preference/reward trainers' loop, on the shared core (``prefalign.training.loop``).

A trainer subclass says what the data, the model, the loss, the evaluation and the saved model
are; :class:`Trainer` runs them the same way on one CPU, one GPU or many processes under
``accelerate launch``, with what every trainer shares from
:class:`~prefalign.training.loop.LoopCore` (accumulation, clipping, metrics averaged across
processes, trackers, ``save_state`` checkpoints, exact resume, Ctrl-C):

* Data order is a seeded permutation per epoch, independent of any global RNG, so a resumed
  run sees the same batches as an uninterrupted one; accelerate shards each batch list across
  processes. An optimizer step takes ``gradient_accumulation_steps`` batches per process (the
  last step of an epoch may take fewer; its loss is then the mean over the batches it has).
* A checkpoint (``CHECKPOINTS/step-NNNNNNN``) holds the model, optimizer, scheduler, grad scaler
  and RNG states (``accelerator.save_state``) plus ``trainer_state.json`` (step, epoch, position
  in the epoch, the log so far).
* Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step: it writes a
  checkpoint and raises ``TrainingInterrupted``. A second Ctrl-C stops at once.
* Mixed precision runs the forward under autocast; the frozen towers stay fp32 here (unlike the
  diffusion trainers) because they are part of the saved model, which must keep the base's
  weights bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefalign.train.config import TrainConfig, TrainConfigError
from prefalign.train.examples import SkipReport
from prefalign.training.loop import (
    CONFIG_FILE,
    LOG_FILE,
    LOGGING_DIR,
    LoopCore,
    StopRequest,
    TrainingInterrupted,
    list_checkpoints,
    write_log,
)

logger = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainerState:
    """Where training is, saved with every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches (per process) of this epoch already trained on
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


class Trainer(LoopCore):
    """Base of the trainers: subclasses fill in the hooks below; ``train()`` runs the loop.

    Args:
        config: the trainer's config dataclass.
        callbacks: functions called as ``callback(trainer, state)`` after every optimizer step
            (after logging and checkpointing); tests use them to interrupt a run.
    """

    name = "trainer"
    error_cls = TrainConfigError

    def __init__(
        self, config: TrainConfig, *, callbacks: list[Callable[[Trainer, TrainerState], None]] | None = None
    ):
        config.validate()
        self.config: TrainConfig = config
        self.callbacks = list(callbacks or [])
        self.accelerator: Any = None
        self.model: Any = None  # set by train(), for inspection
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.train_examples: list = []
        self.eval_examples: list = []
        self.skipped = SkipReport()
        self.total_steps = self.num_epochs = 0

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
        state = self._prepare()
        try:
            eval_before = self._eval_before(state)
            self._run_epochs(state)
            eval_after = self._run_eval(self.model, state) if self.eval_examples else None
            return self._finish(state, eval_before, eval_after)
        finally:
            self.end_trackers()

    def _prepare(self) -> TrainerState:
        """Accelerator, data, model, optimizer, scheduler, trackers; the state to start from."""
        from accelerate.utils import set_seed

        cfg = self.config
        out = Path(cfg.output_dir)
        if out.exists() and any(out.iterdir()) and not cfg.overwrite:
            raise TrainConfigError(f"{out}: already exists and is not empty (use --overwrite to replace it)")
        resume_dir = self.find_checkpoint(cfg.checkpoint_path) if cfg.resume_from_checkpoint else None

        # Trackers log beside the checkpoints while training (the model directory is written at the
        # end, atomically); _finish moves their files into OUTPUT_DIR/logs.
        acc = self.make_accelerator(out, logging_dir=cfg.checkpoint_path / LOGGING_DIR)
        set_seed(cfg.seed)
        self.setup()
        model = self.build_model()
        optimizer = torch.optim.AdamW(
            self.parameter_groups(model),
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
        )
        steps_per_epoch = math.ceil(len(self._epoch_loader(0)) / cfg.gradient_accumulation_steps)
        self.total_steps = cfg.max_steps or cfg.num_train_epochs * steps_per_epoch
        self.num_epochs = math.ceil(self.total_steps / steps_per_epoch)
        scheduler = self.lr_scheduler(optimizer, self.total_steps)
        model, optimizer = acc.prepare(model, optimizer)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.trainable = [p for p in model.parameters() if p.requires_grad]

        state = TrainerState(total_steps=self.total_steps)
        if resume_dir is not None:
            state = TrainerState(**self.load_checkpoint(resume_dir))
        self.start_trackers()
        self._log_start(model, self.total_steps)
        return state

    def _eval_before(self, state: TrainerState) -> dict[str, float] | None:
        """The untrained model's held-out metrics (from the log when resuming)."""
        if state.step == 0 and self.config.eval_at_start and self.eval_examples:
            return self._run_eval(self.model, state)
        if state.eval_log:
            return {k: v for k, v in state.eval_log[0].items() if k not in ("type", "step")}
        return None

    def _run_epochs(self, state: TrainerState) -> None:
        """Optimizer steps until ``total_steps``, epoch by epoch, from where ``state`` is."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        bar = tqdm(
            total=self.total_steps,
            initial=state.step,
            desc=f"training {self.name}",
            unit="step",
            disable=not (cfg.progress and acc.is_main_process),
        )
        try:
            with StopRequest() as stop:
                for epoch in range(state.epoch, self.num_epochs):
                    loader = self._epoch_loader(epoch)
                    batches = len(loader)
                    if state.batch_in_epoch:
                        from accelerate.data_loader import skip_first_batches

                        loader = skip_first_batches(loader, state.batch_in_epoch)
                    it = iter(loader)
                    while state.batch_in_epoch < batches and state.step < self.total_steps:
                        passes = min(cfg.gradient_accumulation_steps, batches - state.batch_in_epoch)
                        row = self._train_step(it, passes, epoch, state)
                        bar.update(1)
                        bar.set_postfix(self._postfix(row, state), refresh=False)
                        self._after_step(state, stop)
                    if state.step >= self.total_steps:
                        break
                    state.epoch += 1
                    state.batch_in_epoch = 0
        finally:
            bar.close()

    def _train_step(self, batches: Iterator, passes: int, epoch: int, state: TrainerState) -> dict[str, Any]:
        """One optimizer step over ``passes`` batches (gradients accumulated); the logged row."""
        cfg, acc, model = self.config, self.accelerator, self.model
        model.train()
        totals: dict[str, float] = {}
        for k in range(passes):
            batch = next(batches)
            sync = k == passes - 1
            # DDP all-reduces the gradients only on the last pass of the step.
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                loss, metrics = self.compute_loss(model, batch)
                # accelerate divides by gradient_accumulation_steps; a short last step has fewer passes.
                acc.backward(loss * (cfg.gradient_accumulation_steps / passes))
            for name, value in {"loss": loss, **metrics}.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach().float()) / passes
            for path, reason in batch.get("failures", []):
                state.load_failures[reason] = state.load_failures.get(reason, 0) + 1
                logger.warning("skipped a record whose image failed to load: %s: %s", path, reason)
            state.batch_in_epoch += 1
        self.optimizer_step(self.optimizer, self.trainable)
        self.after_optimizer_step(model)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        state.step += 1
        row = {"type": "train", "step": state.step, "epoch": epoch, **self.reduce_metrics(totals), "lr": lr}
        if state.step % cfg.logging_steps == 0 or state.step == self.total_steps:
            state.log.append(row)
            self.log_to_trackers(row, state.step, prefix="train/")
        return row

    def _after_step(self, state: TrainerState, stop: StopRequest) -> None:
        """Evaluation, checkpoint, callbacks and the stop request after an optimizer step."""
        cfg = self.config
        if cfg.eval_steps and state.step % cfg.eval_steps == 0 and state.step < self.total_steps:
            self._run_eval(self.model, state)
        if cfg.save_steps and state.step % cfg.save_steps == 0 and state.step < self.total_steps:
            self._save_checkpoint(state)
        for callback in self.callbacks:
            callback(self, state)
        if self.any_process(stop.requested):
            raise TrainingInterrupted(self._save_checkpoint(state))

    def _finish(self, state: TrainerState, eval_before, eval_after) -> TrainResult:
        """Write the model directory (main process) and return the result."""
        acc = self.accelerator
        out = Path(self.config.output_dir)
        skipped = self.skipped.to_dict()
        for reason, n in state.load_failures.items():
            skipped[f"at load time: {reason}"] = n
        self.end_trackers()
        if acc.is_main_process:
            self._write_outputs(acc.unwrap_model(self.model), out, state, eval_before, eval_after, skipped)
            logs = self.config.checkpoint_path / LOGGING_DIR
            if logs.is_dir():
                shutil.rmtree(out / LOGGING_DIR, ignore_errors=True)
                shutil.move(str(logs), str(out / LOGGING_DIR))
        acc.wait_for_everyone()
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
        self.log_to_trackers(metrics, state.step)
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
        return self.save_checkpoint(self.config.checkpoint_path, state.step, asdict(state))

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, model, out: Path, state: TrainerState, eval_before, eval_after, skipped) -> None:
        self.save_model(model, out, state)
        write_log(out / LOG_FILE, state.log)
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


__all__ = [
    "TrainResult",
    "Trainer",
    "TrainerState",
    "TrainingInterrupted",
    "list_checkpoints",
]
