"""The ε-prediction fine-tuning loop shared by the HPS LoRA and the reward-weighted trainers.

Both minimise ``reward_weighted_loss``: the HPS LoRA run is the case of unit weights and no
pre-training term. The loop runs under accelerate (one CPU, one GPU, or ``accelerate launch``
over many); the batch size is the total per optimizer step, split over processes and
gradient-accumulation passes.

Resume is exact: the data order, noise, timesteps and VAE posterior samples are drawn from
generators seeded by the run seed and each sample's position in the run, so they do not depend
on what ran before, nor on how a step's batch is split over processes and accumulation passes; a checkpoint holds only the trainable weights and the optimizer state (not the frozen
UNet, which would be gigabytes per checkpoint for a LoRA run).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefalign.adapt.adapter import LORA_TARGET_MODULES, save_lora_adapter
from prefalign.adapt.base_model import SDComponents, encode_prompts, images_to_latents, load_components
from prefalign.adapt.config import TRAIN_TARGETS, DiffusionTrainingConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.losses import per_sample_mse, reward_weighted_loss
from prefalign.adapt.validation import maybe_write_validation_grid
from prefalign.data.dataset import Dataset

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
TRAIN_LOG_FILE = "training_log.jsonl"  # the same name as train/ (issue 13)
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
    import numpy as np

    from prefalign.data.images import load_image

    arrays = []
    for k, path in enumerate(paths):
        img = resize_shorter_side(load_image(path), resolution)
        left, top = crop_box(*img.size, resolution, None if generators is None else generators[k])
        img = img.crop((left, top, left + resolution, top + resolution))
        arrays.append(np.asarray(img, dtype=np.float32))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


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


class DiffusionFineTuner:
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

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from accelerate import Accelerator

        cfg = self.config
        self.accelerator = Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision=cfg.mixed_precision,
            cpu=cfg.cpu,
        )
        acc = self.accelerator
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
        else:
            unet.requires_grad_(True)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        self.trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        # Constant learning rate, as in HPS: no scheduler object to save or resume.
        optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        device = acc.device
        self.sd.vae.to(device)
        self.sd.text_encoder.to(device)
        self.unet, self.optimizer = acc.prepare(unet, optimizer)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_dirs(self) -> list[Path]:
        root = self.out / CHECKPOINTS_DIR
        return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []

    def save_checkpoint(self, step: int) -> Path:
        """Trainable weights, optimizer state and the step; older checkpoints beyond the limit go."""
        from safetensors.torch import save_file

        path = self.out / CHECKPOINTS_DIR / f"step-{step:07d}"
        if self.accelerator.is_main_process:
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_file(
                {n: p.detach().cpu().contiguous() for n, p in self.trainable.items()},
                tmp / "trainable.safetensors",
            )
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            (tmp / "state.json").write_text(
                json.dumps({"step": step, "config": self.config.to_dict()}, indent=2)
            )
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
            limit = self.config.save_total_limit
            for old in self._checkpoint_dirs()[:-limit] if limit else []:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return path

    def _resume(self) -> int:
        from safetensors.torch import load_file

        wanted = self.config.resume_from_checkpoint
        if wanted and wanted != "latest":
            path = Path(wanted)
            if not (path / "state.json").is_file():
                raise AdaptError(f"{path}: not a checkpoint of this trainer (no state.json)")
        else:
            dirs = self._checkpoint_dirs()
            if not dirs:
                raise AdaptError(
                    f"{self.out}: --resume_from_checkpoint given but no checkpoint in {CHECKPOINTS_DIR}/"
                )
            path = dirs[-1]
        weights = load_file(path / "trainable.safetensors")
        if set(weights) != set(self.trainable):
            raise AdaptError(
                f"{path}: checkpoint does not match this run's trainable weights (other rank or target?)"
            )
        with torch.no_grad():
            for name, param in self.trainable.items():
                param.copy_(weights[name].to(param))
        self.optimizer.load_state_dict(
            torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        )
        step = int(json.loads((path / "state.json").read_text())["step"])
        logger.info("resumed from %s (step %d)", path, step)
        return step

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
        pixels = load_pixels([e.image for e in batch], cfg.resolution, crops).to(device)
        latents = images_to_latents(sd, pixels, rngs)
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in rngs]).to(device)
        steps_total = sd.noise_scheduler.config.num_train_timesteps
        timesteps = torch.cat([torch.randint(0, steps_total, (1,), generator=g) for g in rngs]).to(device)
        noisy = sd.noise_scheduler.add_noise(latents, noise, timesteps)
        text = encode_prompts(sd, [e.caption for e in batch], device)
        kind = sd.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = sd.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise AdaptError(f"{cfg.base}: unsupported prediction type {kind!r}")
        prediction = self.unet(noisy, timesteps, text).sample
        weights = torch.tensor([e.weight for e in batch], dtype=torch.float32, device=device)
        return per_sample_mse(prediction, target), weights

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

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run to ``config.max_steps`` and save the result; returns the output directory."""
        self._setup()
        cfg, acc = self.config, self.accelerator
        self.out.mkdir(parents=True, exist_ok=True)
        start = self._resume() if cfg.resume_from_checkpoint else 0
        if not cfg.resume_from_checkpoint and self._checkpoint_dirs():
            raise AdaptError(
                f"{self.out}: has checkpoints from an earlier run; pass --resume_from_checkpoint or use a new "
                "--output_dir"
            )
        log_file = self.out / TRAIN_LOG_FILE
        t0 = time.perf_counter()
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
        for step in range(start, cfg.max_steps):
            record: dict[str, float] = {}
            for micro in range(cfg.gradient_accumulation_steps):
                with acc.accumulate(self.unet):
                    loss = self._micro_loss(step, micro, record)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(list(self.trainable.values()), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(record["loss"]):
                raise AdaptError(f"loss became {record['loss']} at step {step + 1}; lower the learning rate")
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
            if acc.is_main_process and (done % cfg.logging_steps == 0 or done == cfg.max_steps):
                record.update(step=done, seconds=round(time.perf_counter() - t0, 3))
                with log_file.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                logger.info("step %d/%d loss %.5f", done, cfg.max_steps, record["loss"])
            if cfg.save_steps and done % cfg.save_steps == 0 and done < cfg.max_steps:
                self.save_checkpoint(done)
            maybe_write_validation_grid(self, done)  # sample grids (prefalign.adapt.validation)
        bar.close()
        acc.wait_for_everyone()
        if acc.is_main_process:
            self._save_result()
        acc.wait_for_everyone()
        return self.out

    def _save_result(self) -> None:
        cfg = self.config
        unet = self.accelerator.unwrap_model(self.unet)
        info = {**self.info, "base": str(cfg.base), "steps": cfg.max_steps, "config": cfg.to_dict()}
        if self.train_target == "lora":
            save_lora_adapter(unet, self.out, info)
            if cfg.merge:
                from prefalign.adapt.merge import merge_adapter

                merge_adapter(cfg.base, self.out, self.out / "merged")
        else:
            from prefalign.adapt.base_model import load_pipeline

            pipe = load_pipeline(cfg.base)
            pipe.unet = unet.eval().to("cpu")
            pipe.save_pretrained(self.out)
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
