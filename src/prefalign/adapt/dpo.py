"""Diffusion-DPO (Wallace et al., 2023) for Stable Diffusion 1.x: the DPO objective on the
denoising loss, trained directly on human preference pairs.

Per pair (prompt c, preferred image x_w, rejected image x_l), one noise ε and one timestep t are
drawn and used for both images; with per-image errors averaged over the latent's C·H·W values
(the authors' ``.mean(dim=[1,2,3])``)::

    d_θ   = ‖ε − ε_θ(x_w,t,c)‖² − ‖ε − ε_θ(x_l,t,c)‖²
    d_ref = ‖ε − ε_ref(x_w,t,c)‖² − ‖ε − ε_ref(x_l,t,c)‖²
    z     = −β/2 · (d_θ − d_ref)          (the implicit reward margin r_w − r_l)
    loss  = −log σ(z)                     (mean over pairs)

Sources: the authors' ``train.py`` (SalesforceAIResearch/DiffusionDPO: ``scale_term = -0.5 *
args.beta_dpo``, ``inside_term = scale_term * (model_diff - ref_diff)``); diffusers'
``examples/research_projects/diffusion_dpo/train_diffusion_dpo.py`` writes the same loss as
``-logsigmoid(beta_dpo * (ref_diff - model_diff))`` without the ½, so its default 2500 is the
authors' 5000. The implicit accuracy counts z > 0 (and half of z == 0, as diffusers' script).

The reference model is the base: for a LoRA run the same UNet with its adapter disabled (no
second copy in memory, as diffusers' script); for a full-UNet run a frozen copy of the base UNet.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prefalign.adapt.base_model import (
    Conditioning,
    check_base,
    detect_family,
    encode_prompts,
    images_to_latents,
)
from prefalign.adapt.config import TRAIN_TARGETS, DiffusionTrainingConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.losses import per_sample_mse
from prefalign.adapt.trainer import (
    DiffusionFineTuner,
    Example,
    _generator,
    _indices,
    load_pixels_and_geometry,
)
from prefalign.data.dataset import Dataset, load_dataset

logger = logging.getLogger(__name__)

# β with the authors' −β/2 scaling: their launchers (launchers/sd15.sh and sdxl.sh in
# SalesforceAIResearch/DiffusionDPO) pass --beta_dpo 5000 for SD 1.5 and for SDXL, and diffusers'
# train_diffusion_dpo_sdxl.py keeps the −½ scaling with the same 5000. SD 2.x has no published
# run: ours, SD 1.5's value.
PAPER_BETA = {"sd1": 5000.0, "sd2": 5000.0, "sdxl": 5000.0}


def default_beta(base: str | Path) -> float:
    """The paper's β for the family of ``base`` (see ``PAPER_BETA``)."""
    return PAPER_BETA[detect_family(check_base(base))]


_PAIR_STREAM = 20  # generator ids of the DPO draws, apart from the other trainers' streams


@dataclass
class PreferencePair:
    """One training pair: the prompt, the preferred (``win``) and the rejected (``lose``) image files."""

    prompt: str
    win: str
    lose: str


@dataclass
class PairReport:
    """How a dataset's records became pairs: counts of what was used and what was skipped."""

    records: int = 0
    pairs: int = 0
    ties_skipped: int = 0
    unlabelled_records: int = 0

    def notes(self) -> list[str]:
        out = []
        if self.ties_skipped:
            out.append(f"skipped {self.ties_skipped} tied image pairs (no preference)")
        if self.unlabelled_records:
            out.append(f"skipped {self.unlabelled_records} records with no choice, ranks or ratings")
        return out


def preference_pairs(data: Dataset, report: PairReport | None = None) -> list[PreferencePair]:
    """Every (preferred, rejected) image pair a dataset's records state.

    - ``chosen`` (a choice among n): the chosen image against each of the n − 1 others.
    - ``ranks`` (lower is better): every pair with different ranks; equal ranks are ties, skipped.
    - ``ratings`` only (higher is better): every pair with different ratings; equal ones skipped.
    - none of these: the record is skipped. Skips are counted in ``report``.
    """
    report = report if report is not None else PairReport()
    pairs: list[PreferencePair] = []
    for rec in data:
        report.records += 1
        paths = [data.image_path(img) for img in rec.images]
        if rec.chosen is not None:
            if not 0 <= rec.chosen < len(paths):
                raise AdaptError(
                    f"{data.root}: record {rec.id or rec.prompt!r} chooses image {rec.chosen} of "
                    f"{len(paths)}; run `prefalign data validate` and fix the record"
                )
            pairs += [
                PreferencePair(rec.prompt, paths[rec.chosen], p)
                for j, p in enumerate(paths)
                if j != rec.chosen
            ]
            continue
        if rec.ranks is not None:
            order = [-float(r) for r in rec.ranks]  # lower rank is better: negate to "higher wins"
        elif rec.ratings is not None:
            order = [float(r) for r in rec.ratings]
        else:
            report.unlabelled_records += 1
            continue
        if len(order) != len(paths):
            raise AdaptError(
                f"{data.root}: record {rec.id or rec.prompt!r} has {len(order)} ranks/ratings for "
                f"{len(paths)} images; run `prefalign data validate` and fix the record"
            )
        for i in range(len(paths)):
            for j in range(i + 1, len(paths)):
                if order[i] == order[j]:
                    report.ties_skipped += 1
                elif order[i] > order[j]:
                    pairs.append(PreferencePair(rec.prompt, paths[i], paths[j]))
                else:
                    pairs.append(PreferencePair(rec.prompt, paths[j], paths[i]))
    report.pairs = len(pairs)
    return pairs


def dpo_loss(
    model_mse_w: torch.Tensor,
    model_mse_l: torch.Tensor,
    ref_mse_w: torch.Tensor,
    ref_mse_l: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-DPO's loss and the per-pair implicit reward margins.

    Args:
        model_mse_w, model_mse_l: the trained model's per-sample errors on the preferred and the
            rejected images, shape ``(n,)`` (mean over the latent's values, as the authors).
        ref_mse_w, ref_mse_l: the reference model's errors on the same noisy inputs, ``(n,)``.
        beta: β with the authors' −β/2 scaling (their default 5000).

    Returns:
        ``(loss, margin)``: the scalar −mean log σ(z) and z = −β/2·(d_θ − d_ref), shape ``(n,)``.
    """
    model_diff = model_mse_w - model_mse_l
    ref_diff = ref_mse_w - ref_mse_l
    margin = -0.5 * beta * (model_diff - ref_diff)
    return -F.logsigmoid(margin).mean(), margin


@dataclass
class DPOConfig(DiffusionTrainingConfig):
    """Diffusion-DPO. Defaults: β from the authors' launchers; the LoRA recipe (rank 8, lr 1e-5,
    batch 32, constant schedule) from diffusers' research example's SD command, which trains a
    LoRA as this command does by default (the authors fine-tune the whole UNet)."""

    data: str = field(
        default="",
        metadata={
            "help": "preference dataset (required): records with a choice among n images (the chosen one "
            "against each other), ranks or ratings (every pair that differs); ties are skipped and counted"
        },
    )
    max_steps: int = field(
        default=10_000, metadata={"help": "optimizer steps (diffusers' DPO example: 10000)"}
    )
    per_device_train_batch_size: int = field(
        default=16,
        metadata={
            "help": "pairs per forward pass on each process (diffusers' DPO example: 16, with "
            "gradient_accumulation_steps 2; the authors: 2048 pairs per step for a full-UNet run)"
        },
    )
    gradient_accumulation_steps: int = field(
        default=2, metadata={"help": "forward/backward passes per optimizer step (diffusers' DPO example: 2)"}
    )
    learning_rate: float = field(
        default=1e-5,
        metadata={
            "help": "AdamW learning rate, constant (diffusers' DPO example for LoRA: 1e-5; the authors' "
            "full-UNet runs: 1e-8 x batch 2048)"
        },
    )
    rank: int = field(default=8, metadata={"help": "LoRA rank (diffusers' DPO example: 8)"})
    center_crop: bool = field(
        default=True,
        metadata={
            "help": "crop the centre square after resizing (default, as diffusers' DPO script unless "
            "--random_crop); --no_center_crop: a random crop, the same for both images of a pair"
        },
    )
    beta: float | None = field(
        default=None,
        metadata={
            "help": "DPO β with the authors' −β/2 scaling (default by the base's family: 5000 for SD 1.x and "
            "SDXL, the authors' launchers/sd15.sh and sdxl.sh; SD 2.x: 5000, ours; diffusers' SD script writes "
            "the SD value as 2500 without the ½). Larger β keeps the model closer to the reference"
        },
    )
    train: str = field(
        default="lora",
        metadata={
            "help": "lora (default: reference = the base with the adapter disabled, no second copy) or unet "
            "(every UNet weight, as the authors; holds a frozen copy of the base UNet as reference)",
            "choices": TRAIN_TARGETS,
        },
    )


class DPOFineTuner(DiffusionFineTuner):
    """The shared fine-tuning loop (accelerate, exact resume, checkpoints) with the DPO loss."""

    def __init__(self, config: DPOConfig, pairs: list[PreferencePair], *, info: dict[str, Any] | None = None):
        if not pairs:
            raise AdaptError(f"{config.data}: no preference pairs (records need a choice, ranks or ratings)")
        # The parent keeps a list of Examples for its checks; the DPO passes read self.pairs.
        super().__init__(config, [Example(p.win, p.prompt) for p in pairs], train=config.train, info=info)
        self.pairs = pairs
        self.dpo_beta = float(config.beta if config.beta is not None else default_beta(config.base))
        self.ref_unet: torch.nn.Module | None = None

    def _setup(self) -> None:
        if self.train_target == "unet":
            from prefalign.adapt.base_model import load_components

            # A full-UNet run needs the base's weights beside the trained ones.
            ref = load_components(self.config.base).unet
            self.ref_unet = ref.requires_grad_(False).eval()
        super()._setup()
        if self.ref_unet is not None:
            # Frozen: in the compute dtype under mixed precision, as the other frozen towers.
            self.ref_unet.to(self.accelerator.device, dtype=self.weight_dtype)

    def _reference(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, text: Conditioning | torch.Tensor
    ) -> torch.Tensor:
        """The reference model's prediction, without gradients."""
        # autocast: the reference copy is not wrapped by accelerate.prepare as the trained UNet is.
        with torch.no_grad(), self.accelerator.autocast():
            if self.ref_unet is not None:
                return self._predict(noisy, timesteps, text, unet=self.ref_unet)
            unet = self.accelerator.unwrap_model(self.unet)
            unet.disable_adapters()
            try:
                return self._predict(noisy, timesteps, text)
            finally:
                unet.enable_adapters()

    def _micro_loss(self, step: int, micro: int, record: dict[str, float]) -> torch.Tensor:
        cfg, acc, sd = self.config, self.accelerator, self.sd
        size = self.micro_batch
        start = (
            (step * cfg.gradient_accumulation_steps + micro) * acc.num_processes + acc.process_index
        ) * size
        batch = [self.pairs[i] for i in _indices(len(self.pairs), cfg.seed, _PAIR_STREAM, start, size)]
        positions = range(start, start + size)
        device = acc.device

        # One crop per pair, the same for both images (the authors stack them on the channel axis).
        def crops():
            return None if cfg.center_crop else [_generator(cfg.seed, _PAIR_STREAM + 1, g) for g in positions]

        pixels_w, geometry_w = load_pixels_and_geometry([p.win for p in batch], cfg.resolution, crops())
        pixels_l, geometry_l = load_pixels_and_geometry([p.lose for p in batch], cfg.resolution, crops())
        pixels = torch.cat([pixels_w, pixels_l]).to(device)
        # Each image its own VAE posterior sample; each pair one noise and one timestep for both.
        vae_rngs = [_generator(cfg.seed, _PAIR_STREAM + 2, g, side) for side in (0, 1) for g in positions]
        latents = images_to_latents(sd, pixels, vae_rngs)
        rngs = [_generator(cfg.seed, _PAIR_STREAM + 3, g) for g in positions]
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in rngs]).to(device)
        steps_total = sd.noise_scheduler.config.num_train_timesteps
        t = torch.cat([torch.randint(0, steps_total, (1,), generator=g) for g in rngs]).to(device)
        noise, timesteps = noise.repeat(2, 1, 1, 1), t.repeat(2)
        noisy = sd.noise_scheduler.add_noise(latents, noise, timesteps)
        # SDXL's time ids from each image's own size and crop (diffusers' DPO SDXL script: the pair's).
        prompts = [p.prompt for p in batch] * 2
        text = encode_prompts(
            sd, prompts, device, geometry=geometry_w + geometry_l, resolution=cfg.resolution
        )
        kind = sd.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = sd.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise AdaptError(f"{cfg.base}: unsupported prediction type {kind!r}")
        model_mse = per_sample_mse(self._predict(noisy, timesteps, text), target)
        ref_mse = per_sample_mse(self._reference(noisy, timesteps, text), target)
        model_w, model_l = model_mse.chunk(2)
        ref_w, ref_l = ref_mse.chunk(2)
        loss, margin = dpo_loss(model_w, model_l, ref_w, ref_l, self.dpo_beta)
        _log_dpo(record, loss, margin, model_mse, ref_mse, cfg.gradient_accumulation_steps)
        return loss


def _log_dpo(record, loss, margin, model_mse, ref_mse, passes: int) -> None:
    """Running means over a step's passes: loss, implicit accuracy, reward margin, both errors."""
    margin = margin.detach()
    values = {
        "loss": float(loss.detach()),
        "implicit_accuracy": float((margin > 0).float().mean() + 0.5 * (margin == 0).float().mean()),
        "reward_margin": float(margin.mean()),
        "model_mse": float(model_mse.detach().mean()),
        "ref_mse": float(ref_mse.detach().mean()),
    }
    for k, v in values.items():
        record[k] = record.get(k, 0.0) + v / passes


def train_dpo(config: DPOConfig) -> Path:
    """Train Diffusion-DPO on a preference dataset; returns the output directory.

    Raises:
        AdaptError: no pairs, a record whose choice or ranks do not fit its images, bad settings.
        ConfigError: a required setting missing or a value that cannot work.
    """
    config.validate()  # a missing --data or --output_dir is named before anything loads
    if config.beta is not None and not (math.isfinite(config.beta) and config.beta > 0):
        raise AdaptError(f"--beta must be a positive number, got {config.beta}")
    data = load_dataset(config.data)
    report = PairReport()
    pairs = preference_pairs(data, report)
    for note in report.notes():
        logger.warning("%s: %s", config.data, note)
    logger.info("%s: %d preference pairs from %d records", config.data, report.pairs, report.records)
    trainer = DPOFineTuner(
        config,
        pairs,
        info={
            "method": "diffusion-dpo",
            "identifier": None,
            "data": str(config.data),
            "beta": config.beta if config.beta is not None else default_beta(config.base),
            "train": config.train,
            "pairs": report.pairs,
            "ties_skipped": report.ties_skipped,
            "unlabelled_records": report.unlabelled_records,
            "recipe_notes": report.notes(),
        },
    )
    return trainer.train()
