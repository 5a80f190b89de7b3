"""The ε-prediction fine-tuning loop shared by the HPS LoRA and the reward-weighted trainers.

Both minimise ``reward_weighted_loss``: the HPS LoRA run is the case of unit weights and no
pre-training term. The loop runs under accelerate (one CPU, one GPU, or ``accelerate launch``
over many); the batch size is the total per optimizer step, split over processes and
gradient-accumulation passes. Accelerate, clipping, metrics averaged across processes,
trackers, ``save_state`` checkpoints and Ctrl-C come from the shared core
(``prefalign.training.loop``).

Resume is exact: the data order, noise, timesteps and VAE posterior samples are drawn from
generators seeded by the run seed and each sample's position in the run, so they do not depend
on what ran before, nor on how a step's batch is split over processes and accumulation passes.
A LoRA run's checkpoint holds only the adapter's weights (through accelerate's save/load
hooks), the optimizer state and the grad scaler, never the frozen UNet (gigabytes per
checkpoint). Under mixed precision the frozen VAE, text encoder and (for LoRA) base UNet are
cast to the compute dtype, the trained weights stay fp32 (the diffusers LoRA recipe).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefalign.adapt.adapter import LORA_TARGET_MODULES, save_lora_adapter
from prefalign.adapt.base_model import (
    Conditioning,
    ImageGeometry,
    SDComponents,
    encode_prompts,
    images_to_latents,
    load_components,
    predict_noise,
)
from prefalign.adapt.config import TRAIN_TARGETS, DiffusionTrainingConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.losses import per_sample_mse, reward_weighted_loss
from prefalign.adapt.validation import maybe_write_validation_grid
from prefalign.data.dataset import Dataset
from prefalign.files import share_written
from prefalign.training.loop import LOG_FILE, LoopCore, StopRequest, TrainingInterrupted, write_log

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TRAIN_LOG_FILE = LOG_FILE  # the same name as train/ (issue 13)
# Stream ids that keep the random draws of the two data streams independent.
_MODEL_STREAM, _PRIOR_STREAM = 0, 1


@dataclass
class Example:
    """One training pair: an image file, its caption and its weight (reward; 1 for plain MSE)."""

    image: str
    caption: str
    weight: float = 1.0


def examples_from_dataset(data: Dataset) -> list[Example]:
    """Every image of every record as a pair with the record's prompt, weight 1."""
    return [Example(data.image_path(img), rec.prompt) for rec in data for img in rec.images]


def resize_shorter_side(img, size: int):
    """Shorter side to ``size`` with bilinear resampling, the aspect ratio kept (torchvision's
    ``Resize(size, BILINEAR)`` on a PIL image, which the authors' LoRA script uses)."""
    from PIL import Image

    width, height = img.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_w, new_h) == (width, height):
        return img
    return img.resize((new_w, new_h), Image.Resampling.BILINEAR)


def crop_box(width: int, height: int, size: int, generator: torch.Generator | None) -> tuple[int, int]:
    """``(left, top)`` of a ``size`` square: drawn uniformly from ``generator`` (torchvision's
    ``RandomCrop``), or the centre (``CenterCrop``'s rounding) when it is None."""
    if generator is None:
        return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return left, top


def load_pixels(
    paths: Sequence[str], resolution: int, generators: Sequence[torch.Generator] | None = None
) -> torch.Tensor:
    """Training images in [-1, 1], NCHW: shorter side resized (bilinear) to ``resolution``, then a
    square cropped at random, one ``generators`` entry per image (the authors' script), or at
    the centre when ``generators`` is None (``--center-crop``)."""
    return load_pixels_and_geometry(paths, resolution, generators)[0]


def load_pixels_and_geometry(
    paths: Sequence[str], resolution: int, generators: Sequence[torch.Generator] | None = None
) -> tuple[torch.Tensor, list[ImageGeometry]]:
    """:func:`load_pixels` and, per image, its size as loaded and its crop's top-left corner
    (SDXL's micro-conditioning, as diffusers' SDXL scripts record them: before the resize, and
    in the resized image)."""
    import numpy as np

    from prefalign.data.images import load_image

    arrays, geometry = [], []
    for k, path in enumerate(paths):
        original = load_image(path)
        img = resize_shorter_side(original, resolution)
        width, height = img.size
        left, top = crop_box(width, height, resolution, None if generators is None else generators[k])
        img = img.crop((left, top, left + resolution, top + resolution))
        arrays.append(np.asarray(img, dtype=np.float32))
        geometry.append(ImageGeometry((original.height, original.width), (top, left)))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0, geometry


def _generator(seed: int, *ids: int) -> torch.Generator:
    """A CPU generator seeded from the run seed and the ids of one draw."""
    value = seed
    for i in ids:
        value = (value * 1_000_003 + i + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def _indices(n: int, seed: int, stream: int, start: int, count: int) -> list[int]:
    """Positions ``start .. start+count-1`` of an endless stream of seeded epoch permutations."""
    out = []
    for g in range(start, start + count):
        epoch, pos = divmod(g, n)
        out.append(int(torch.randperm(n, generator=_generator(seed, stream, epoch))[pos]))
    return out


class DiffusionFineTuner(LoopCore):
    """Fine-tune a Stable Diffusion UNet (a LoRA adapter or all weights) on weighted pairs.

    Args:
        config: the run's settings.
        examples: model-generated (or selected) pairs with their weights r.
        prior: pre-training pairs for the β term (None: no such term).
        beta: weight of the pre-training term.
        train: ``lora`` (an adapter on the attention projections) or ``unet`` (every weight).
        info: provenance written with the result (method, identifier...).
        prior_batch_size: pre-training pairs per optimizer step over all processes and passes
            (default: the global batch, ``config.global_batch_size(processes)``).
    """

    name = "diffusion"
    error_cls = AdaptError
    config: DiffusionTrainingConfig

    def __init__(
        self,
        config: DiffusionTrainingConfig,
        examples: list[Example],
        *,
        prior: list[Example] | None = None,
        beta: float = 0.0,
        train: str = "lora",
        info: dict[str, Any] | None = None,
        prior_batch_size: int | None = None,
    ):
        if not examples:
            raise AdaptError(f"{config.data}: no training pairs")
        if train not in TRAIN_TARGETS:
            raise AdaptError(f"train must be one of {', '.join(TRAIN_TARGETS)}, got {train!r}")
        if config.merge and train != "lora":
            raise AdaptError("--merge fuses a LoRA adapter; a full-UNet run already saves a whole pipeline")
        config.validate()
        self.config = config
        self.examples = examples
        self.prior = prior or []
        self.beta = beta
        self.train_target = train
        self.info = dict(info or {})
        self.prior_batch_size = prior_batch_size
        self.out = Path(config.output_dir)
        self.log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.config
        acc = self.make_accelerator(self.out)
        passes = cfg.gradient_accumulation_steps * acc.num_processes
        self.micro_batch = cfg.per_device_train_batch_size
        prior_global = self.prior_batch_size or cfg.global_batch_size(acc.num_processes)
        self.prior_micro_batch = max(1, prior_global // passes) if self.prior else 0

        self.sd: SDComponents = load_components(cfg.base)
        unet = self.sd.unet
        torch.manual_seed(cfg.seed)  # the LoRA A matrices' initialisation
        if self.train_target == "lora":
            from peft import LoraConfig

            unet.add_adapter(
                LoraConfig(
                    r=cfg.rank,
                    lora_alpha=cfg.lora_alpha if cfg.lora_alpha is not None else cfg.rank,
                    init_lora_weights="gaussian",
                    target_modules=list(LORA_TARGET_MODULES),
                )
            )
            # The frozen base in the compute dtype, the adapter in fp32 (the diffusers LoRA recipe).
            for param in unet.parameters():
                if not param.requires_grad:
                    param.data = param.data.to(self.weight_dtype)
        else:
            unet.requires_grad_(True)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        self.trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        device = acc.device
        for frozen in (self.sd.vae, *self.sd.text_encoders()):
            frozen.to(device)
            if self.weight_dtype != torch.float32:  # the diffusers LoRA recipe
                frozen.to(dtype=self.weight_dtype)
        self.unet, self.optimizer = acc.prepare(unet, optimizer)
        # Constant by default (HPS; diffusers' scripts); saved and restored with the checkpoint.
        self.lr_scheduler_ = self.lr_scheduler(self.optimizer, cfg.max_steps)
        if self.train_target == "lora":
            self.checkpoint_trainable_only(unet)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_root(self) -> Path:
        return self.out / CHECKPOINTS_DIR

    def _save_checkpoint(self, step: int) -> Path:
        """``accelerator.save_state`` (adapter-only for LoRA) with the step and the log so far."""
        return self.save_checkpoint(self.checkpoint_root, step, {"step": step, "log": self.log})

    def _resume(self) -> int:
        """Load the checkpoint ``resume_from_checkpoint`` names; the step it was written at."""
        state = self.load_checkpoint(self.find_checkpoint(self.checkpoint_root))
        self.log = list(state.get("log", []))
        return int(state["step"])

    # ------------------------------------------------------------------ one pass
    def _pass_errors(
        self, pairs: list[Example], step: int, micro: int, stream: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample ε-prediction errors of one micro-batch of ``pairs``, and the pairs' weights."""
        cfg, acc, sd = self.config, self.accelerator, self.sd
        size = self.micro_batch if stream == _MODEL_STREAM else self.prior_micro_batch
        start = (
            (step * cfg.gradient_accumulation_steps + micro) * acc.num_processes + acc.process_index
        ) * size
        batch = [pairs[i] for i in _indices(len(pairs), cfg.seed, stream, start, size)]
        # One generator per sample, keyed by its position in the run's sample stream: a sample's
        # noise does not depend on how the batch is split over processes and passes.
        rngs = [_generator(cfg.seed, 2 + stream, g) for g in range(start, start + size)]
        device = acc.device
        crops = (
            None
            if cfg.center_crop
            else [_generator(cfg.seed, 10 + stream, g) for g in range(start, start + size)]
        )
        pixels, geometry = load_pixels_and_geometry([e.image for e in batch], cfg.resolution, crops)
        pixels = pixels.to(device)
        latents = images_to_latents(sd, pixels, rngs)
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in rngs]).to(device)
        steps_total = sd.noise_scheduler.config.num_train_timesteps
        timesteps = torch.cat([torch.randint(0, steps_total, (1,), generator=g) for g in rngs]).to(device)
        noisy = sd.noise_scheduler.add_noise(latents, noise, timesteps)
        text = encode_prompts(
            sd, [e.caption for e in batch], device, geometry=geometry, resolution=cfg.resolution
        )
        kind = sd.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = sd.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise AdaptError(f"{cfg.base}: unsupported prediction type {kind!r}")
        prediction = self._predict(noisy, timesteps, text)
        weights = torch.tensor([e.weight for e in batch], dtype=torch.float32, device=device)
        return per_sample_mse(prediction, target), weights

    def _predict(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        cond: Conditioning | torch.Tensor,
        unet: Any = None,
    ) -> torch.Tensor:
        """The one place the trainers call a UNet (``self.unet`` unless ``unet`` is given): the
        family's conditioning (SDXL's pooled text embeddings and time ids) travels in ``cond``."""
        return predict_noise(self.unet if unet is None else unet, noisy, timesteps, cond)

    def _micro_loss(self, step: int, micro: int, record: dict[str, float]) -> torch.Tensor:
        """The loss of one forward pass of ``step``; adds what explains it to ``record``.

        Subclasses with another objective (Diffusion-DPO) override this one method.
        """
        model_mse, rewards = self._pass_errors(self.examples, step, micro, _MODEL_STREAM)
        prior_mse = None
        if self.prior and self.beta:
            prior_mse, _ = self._pass_errors(self.prior, step, micro, _PRIOR_STREAM)
        loss = reward_weighted_loss(model_mse, rewards, prior_mse, self.beta)
        _accumulate_log(record, loss, model_mse, rewards, prior_mse, self.config.gradient_accumulation_steps)
        return loss

    def _after_step(self, done: int, record: dict[str, float]) -> None:
        """Called after optimizer step ``done`` (1-based), before it is logged; a subclass evaluates here."""

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run to ``config.max_steps`` and save the result; returns the output directory.

        Raises:
            TrainingInterrupted: on Ctrl-C or SIGTERM, after writing a checkpoint.
            AdaptError: unusable settings or checkpoint, or a loss that is not finite.
        """
        cfg = self.config
        if not cfg.resume_from_checkpoint and any(self.checkpoint_root.glob("step-*")):
            raise AdaptError(
                f"{self.out}: has checkpoints from an earlier run; pass --resume_from_checkpoint or use a new "
                "--output_dir"
            )
        self._setup()
        acc = self.accelerator
        start = self._resume() if cfg.resume_from_checkpoint else 0
        self.out.mkdir(parents=True, exist_ok=True)
        if acc.is_main_process:
            write_log(self.out / TRAIN_LOG_FILE, self.log)  # a resumed run's log up to its checkpoint
        self.start_trackers()
        from tqdm.auto import tqdm

        # steps/s and the time left; tqdm's rate counts only this session's steps after a resume
        bar = tqdm(
            total=cfg.max_steps,
            initial=start,
            desc="training",
            unit="step",
            dynamic_ncols=True,
            disable=cfg.disable_tqdm or not acc.is_main_process,
        )
        try:
            with StopRequest() as stop:
                t0 = time.perf_counter()
                for step in range(start, cfg.max_steps):
                    loss = self._train_step(step, t0)
                    done = step + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    if cfg.save_steps and done % cfg.save_steps == 0 and done < cfg.max_steps:
                        self._save_checkpoint(done)
                    maybe_write_validation_grid(self, done)  # sample grids (prefalign.adapt.validation)
                    if self.any_process(stop.requested):
                        raise TrainingInterrupted(self._save_checkpoint(done))
            acc.wait_for_everyone()
            if acc.is_main_process:
                write_log(self.out / TRAIN_LOG_FILE, self.log)
                self._save_result()
            acc.wait_for_everyone()
        finally:
            bar.close()
            self.end_trackers()
        return self.out

    def _train_step(self, step: int, t0: float) -> float:
        """Optimizer step ``step`` (0-based): its accumulation passes, the update and its log row;
        returns the step's loss (averaged over processes)."""
        cfg, acc = self.config, self.accelerator
        record: dict[str, float] = {}
        for micro in range(cfg.gradient_accumulation_steps):
            with acc.accumulate(self.unet):
                loss = self._micro_loss(step, micro, record)
                acc.backward(loss)
                if acc.sync_gradients:
                    self.optimizer_step(self.optimizer, list(self.trainable.values()))
        record["learning_rate"] = float(self.lr_scheduler_.get_last_lr()[0])  # the rate this step used
        self.lr_scheduler_.step()
        done = step + 1
        # Every step (a non-finite loss on one process must stop them all); logged every logging_steps.
        row: dict[str, Any] = self.reduce_metrics(record)
        if not math.isfinite(row["loss"]):
            raise AdaptError(f"loss became {row['loss']} at step {done}; lower the learning rate")
        self._after_step(done, record)
        if done % cfg.logging_steps and done != cfg.max_steps:
            return float(row["loss"])
        row.update(step=done, seconds=round(time.perf_counter() - t0, 3))
        self.log.append(row)
        self.log_to_trackers(row, done, prefix="train/")
        if acc.is_main_process:
            with (self.out / TRAIN_LOG_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            logger.info("step %d/%d loss %.5f", done, cfg.max_steps, row["loss"])
        return float(row["loss"])

    def _save_result(self) -> None:
        cfg = self.config
        unet = self.accelerator.unwrap_model(self.unet)
        info = {**self.info, "base": str(cfg.base), "steps": cfg.max_steps, "config": cfg.to_dict()}
        if self.train_target == "lora":
            save_lora_adapter(unet, self.out, info, family=self.sd.family)
            if cfg.merge:
                from prefalign.adapt.merge import merge_adapter

                merge_adapter(cfg.base, self.out, self.out / "merged")
        else:
            from prefalign.adapt.base_model import load_pipeline

            pipe = load_pipeline(cfg.base, scheduler=None)  # the base's own sampler config
            pipe.unet = unet.eval().to("cpu")
            pipe.save_pretrained(self.out)
            share_written(self.out)  # safetensors writes 0600
            (self.out / "prefalign_finetune.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


def _accumulate_log(record, loss, model_mse, rewards, prior_mse, passes: int) -> None:
    """Running means over a step's passes of what explains the loss (trl-style)."""
    values = {
        "loss": float(loss.detach()),
        "model_mse": float(model_mse.detach().mean()),
        "reward_mean": float(rewards.mean()),
    }
    if prior_mse is not None:
        values["prior_mse"] = float(prior_mse.detach().mean())
    for k, v in values.items():
        record[k] = record.get(k, 0.0) + v / passes
    record["reward_min"] = min(record.get("reward_min", math.inf), float(rewards.min()))
    record["reward_max"] = max(record.get("reward_max", -math.inf), float(rewards.max()))
