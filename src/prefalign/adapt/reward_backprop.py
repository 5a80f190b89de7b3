"""Reward backpropagation through the sampler for Stable Diffusion 1.x: DRaFT-K and ReFL.

Both methods sample an image from fresh noise with the model being trained, decode it with the
VAE, score it with a differentiable reward (pixels in [0, 1] -> score, ``score_pixels``) and
follow the reward's gradient back into the UNet:

- ``draft`` (Clark et al., 2023, "Directly Fine-Tuning Diffusion Models on Differentiable
  Rewards"): DDIM for ``num_inference_steps`` (50, the paper's sampler); the first N − K steps
  run without gradients, the last K with them (DRaFT-K; K = 1 is the paper's recommended
  truncation). ``loss = −scale · mean reward`` (scale 1).
- ``refl`` (Xu et al., 2023, ImageReward; the authors' ``ImageReward/ReFL.py``): a 40-step
  schedule, a step index drawn uniformly from [30, 39] (``random.randint(30, 39)``); the steps
  before it run without gradients, then one UNet call with gradients predicts x0 directly from
  that step (the scheduler's ``pred_original_sample``); ``loss = λ · mean relu(2 − reward)``
  with λ = ``--grad_scale`` 1e-3. The authors' script steps its DDPM scheduler, passes the step
  index (30..39) to the UNet as its timestep and predicts x0 with the previous step's timestep;
  this trainer samples with DDIM (η = 0) in both modes, gives the UNet the schedule's timestep of
  step i and predicts x0 with it (ours), so a run is deterministic given its seed.

An optional pre-training term (``pretraining_loss_weight`` × the ε-prediction MSE on real
image-caption pairs, ReFL's regulariser against reward hacking; the ReFL paper alternates the two
losses, this trainer adds them each step, ours) uses the shared trainer's pre-training stream.

The reward of held-out prompts, each with fixed noise, is logged to ``training_log.jsonl`` before
training (the base) and every ``eval_steps`` steps (``eval_reward_mean``). Everything runs on the
shared loop (:class:`~prefalign.adapt.trainer.DiffusionFineTuner`: accelerate, exact resume,
checkpoints); every random draw (prompt order, initial noise, ReFL's step) comes from a generator
keyed by the run seed and the sample's position in the run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from prefalign.adapt.base_model import Conditioning
from prefalign.adapt.config import TRAIN_TARGETS, DiffusionTrainingConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.trainer import (
    _PRIOR_STREAM,
    TRAIN_LOG_FILE,
    DiffusionFineTuner,
    Example,
    _generator,
    _indices,
    examples_from_dataset,
)
from prefalign.scoring.protocol import PixelScorerLike
from prefalign.training.config import ConfigError

logger = logging.getLogger(__name__)

MODES = ("draft", "refl")
# DRaFT (Clark et al., 2023): DDIM with 50 steps, classifier-free guidance 7.5, K = 1.
DRAFT_STEPS = 50
DRAFT_GUIDANCE = 7.5
# ImageReward's ReFL.py: set_timesteps(40), mid_timestep = random.randint(30, 39), no guidance,
# loss = relu(-reward + 2) * grad_scale with grad_scale 1e-3.
REFL_STEPS = 40
REFL_WINDOW = (30, 39)
REFL_HINGE = 2.0
REFL_GRAD_SCALE = 1e-3
# Generator stream ids of this trainer's draws, apart from the other trainers' (0-2, 10-11, 20-23).
_PROMPT_STREAM, _NOISE_STREAM, _REFL_STREAM, _EVAL_STREAM = 30, 31, 32, 33


@dataclass
class RewardBackpropConfig(DiffusionTrainingConfig):
    """DRaFT-K / ReFL settings. Each help text says where its default comes from."""

    UNSUPPORTED: ClassVar[frozenset[str]] = DiffusionTrainingConfig.UNSUPPORTED - {"eval_steps"}

    data: str = field(
        default="",
        metadata={
            "help": "not used by this trainer: prompts come from --prompts, pre-training images from "
            "--pretraining_data"
        },
    )
    prompts: str = field(
        default="",
        metadata={
            "help": "training prompts: a text file (one per line) or a dataset directory (its prompts)"
        },
    )
    reward: list[str] | None = field(
        default=None,
        metadata={
            "help": "differentiable reward: MODEL[:WEIGHT] (a scorer directory, hub id or known name; weight "
            "1 when left out); repeat or list several for a weighted sum, e.g. --reward hps-v2:1 "
            "aesthetic:0.05 (write NAME:WEIGHT to keep a colon in NAME, e.g. random:7:1)",
            "action": "extend",
        },
    )
    mode: str = field(
        default="draft",
        metadata={
            "help": "draft: backprop through the last --truncation_steps DDIM steps (Clark et al.); refl: one "
            "step with gradients at a random late step, x0 predicted from it (ImageReward's ReFL)",
            "choices": MODES,
        },
    )
    truncation_steps: int = field(
        default=1, metadata={"help": "K, the sampling steps with gradients in draft mode (DRaFT-K: K = 1)"}
    )
    num_inference_steps: int | None = field(
        default=None,
        metadata={
            "help": f"DDIM steps (default: {DRAFT_STEPS} in draft mode, DRaFT's sampler; {REFL_STEPS} in refl "
            "mode, ImageReward's ReFL.py); also the sampler of the held-out evaluation"
        },
    )
    guidance_scale: float | None = field(
        default=None,
        metadata={
            "help": f"classifier-free guidance while sampling (default: {DRAFT_GUIDANCE} in draft mode, as "
            "DRaFT; 1, i.e. none, in refl mode, as ImageReward's ReFL.py)"
        },
    )
    refl_min_step: int = field(
        default=REFL_WINDOW[0],
        metadata={
            "help": "refl: first step index (0-based) the gradient step is drawn from (ReFL.py: 30 of 40)"
        },
    )
    refl_max_step: int = field(
        default=REFL_WINDOW[1],
        metadata={"help": "refl: last step index, inclusive (ReFL.py: random.randint(30, 39))"},
    )
    refl_hinge: float = field(
        default=REFL_HINGE, metadata={"help": "refl: loss = scale · relu(hinge − reward) (ReFL.py: 2)"}
    )
    reward_loss_scale: float | None = field(
        default=None,
        metadata={
            "help": f"factor of the reward loss (default: 1 in draft mode, loss = −reward; {REFL_GRAD_SCALE} in "
            "refl mode, ReFL.py's --grad_scale)"
        },
    )
    pretraining_data: str | None = field(
        default=None,
        metadata={
            "help": "image-caption dataset for the pre-training (denoising MSE) term against reward hacking "
            "(ReFL's regulariser); off without it"
        },
    )
    pretraining_loss_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of the pre-training term (default: 1 with --pretraining_data, ours; 0 without)"
        },
    )
    pretraining_batch_size: int | None = field(
        default=None,
        metadata={"help": "pre-training pairs per optimizer step (default: the global batch)"},
    )
    # validation_prompts (the base config's: prompts, or one text file) are also the held-out
    # prompts whose reward is logged; without them --validation_fraction of --prompts is held out.
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "help": "share of --prompts held out when there is no --validation_prompts (ours; at least 1)"
        },
    )
    validation_images_per_prompt: int = field(
        default=2, metadata={"help": "held-out images per prompt, each with fixed noise (ours)"}
    )
    eval_steps: int = field(
        default=100,
        metadata={"help": "log the held-out reward every N optimizer steps (0: before and after only; ours)"},
    )
    max_steps: int = field(default=1_000, metadata={"help": "optimizer steps (ours)"})
    per_device_train_batch_size: int = field(
        default=2,
        metadata={"help": "prompts sampled per forward pass on each process (ImageReward's ReFL.py: 2)"},
    )
    gradient_accumulation_steps: int = field(
        default=4, metadata={"help": "passes per optimizer step (ImageReward's ReFL.py: 4)"}
    )
    learning_rate: float = field(
        default=1e-4,
        metadata={
            "help": "AdamW learning rate, constant (ours, for LoRA; ReFL.py trains the whole UNet with 1e-5)"
        },
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={
            "help": "recompute UNet and VAE-decoder activations in the backward pass (default on: the graph "
            "spans K UNet calls and the decoder; --no_gradient_checkpointing to turn off)"
        },
    )
    train: str = field(
        default="lora",
        metadata={
            "help": "lora (default; rank --rank on the attention projections) or unet (every UNet weight, as "
            "ImageReward's ReFL.py)",
            "choices": TRAIN_TARGETS,
        },
    )

    # ------------------------------------------------------------------ derived values
    @property
    def steps(self) -> int:
        """Sampling steps N of this mode."""
        if self.num_inference_steps is not None:
            return self.num_inference_steps
        return DRAFT_STEPS if self.mode == "draft" else REFL_STEPS

    @property
    def guidance(self) -> float:
        if self.guidance_scale is not None:
            return self.guidance_scale
        return DRAFT_GUIDANCE if self.mode == "draft" else 1.0

    @property
    def loss_scale(self) -> float:
        if self.reward_loss_scale is not None:
            return self.reward_loss_scale
        return 1.0 if self.mode == "draft" else REFL_GRAD_SCALE

    @property
    def pretraining_weight(self) -> float:
        if self.pretraining_loss_weight is not None:
            return self.pretraining_loss_weight
        return 1.0 if self.pretraining_data else 0.0

    def validate(self) -> None:
        """Raise ``ConfigError`` for settings that cannot work, before anything loads."""
        if self.data:
            raise ConfigError(
                "--data is not used by train-reward-backprop: give the prompts with --prompts and real "
                "images for the pre-training term with --pretraining_data"
            )
        if not self.prompts:
            raise ConfigError("prompts is required (--prompts, here or in --config)")
        # The shared checks require `data`; the prompts stand in for it.
        DiffusionTrainingConfig.validate(dataclasses.replace(self, data=self.prompts))
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.steps < 1:
            raise ConfigError(f"num_inference_steps must be at least 1, got {self.steps}")
        if self.mode == "draft" and not 1 <= self.truncation_steps <= self.steps:
            raise ConfigError(
                f"truncation_steps must be in 1..num_inference_steps ({self.steps}), got {self.truncation_steps}"
            )
        if self.mode == "refl" and not 0 <= self.refl_min_step <= self.refl_max_step < self.steps:
            raise ConfigError(
                f"refl window {self.refl_min_step}..{self.refl_max_step} must lie in 0..{self.steps - 1} "
                "(the step indices of --num_inference_steps) with min <= max"
            )
        if not (math.isfinite(self.guidance) and self.guidance >= 1.0):
            raise ConfigError(f"guidance_scale must be >= 1 (1: no guidance), got {self.guidance}")
        if self.pretraining_weight < 0 or not math.isfinite(self.pretraining_weight):
            raise ConfigError(f"pretraining_loss_weight must be >= 0, got {self.pretraining_weight}")
        if self.pretraining_weight > 0 and not self.pretraining_data:
            raise ConfigError("pretraining_loss_weight needs --pretraining_data (real image-caption pairs)")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.validation_images_per_prompt < 1:
            raise ConfigError(
                f"validation_images_per_prompt must be at least 1, got {self.validation_images_per_prompt}"
            )


def parse_reward_spec(spec: str) -> tuple[str, float]:
    """``"MODEL[:WEIGHT]"`` -> ``(MODEL, WEIGHT)``; the text after the last colon is the weight
    when it is a number (``"hps-v2:0.5"``), else part of the name (``"hps:models/mine"``)."""
    name, sep, tail = spec.rpartition(":")
    if sep and name:
        try:
            weight = float(tail)
        except ValueError:
            return spec, 1.0
        if not math.isfinite(weight):
            raise AdaptError(f"--reward {spec}: the weight must be a finite number")
        return name, weight
    return spec, 1.0


def load_reward(specs: Sequence[str], device: str | torch.device = "cpu") -> PixelScorerLike:
    """A weighted sum of scorers (``WeightedReward``) from ``MODEL[:WEIGHT]`` specs, in fp32.

    Raises:
        AdaptError: a scorer without a differentiable path (``score_pixels``).
    """
    from prefalign.scoring import load_scorer
    from prefalign.scoring.pixels import WeightedReward

    terms = []
    for spec in specs:
        name, weight = parse_reward_spec(spec)
        scorer = load_scorer(name, device=str(device), precision="fp32")
        if not isinstance(scorer, PixelScorerLike):
            raise AdaptError(f"--reward {spec}: this scorer has no differentiable path (score_pixels)")
        terms.append((weight, scorer))
    return WeightedReward(terms)


def split_prompts(prompts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train, held_out)``: a seeded random ``fraction`` of the prompts (at least one) held out."""
    if len(prompts) < 2:
        raise AdaptError(
            f"{len(prompts)} prompt: too few to hold some out for validation; give --validation_prompts"
        )
    n_out = min(len(prompts) - 1, max(1, round(fraction * len(prompts))))
    order = torch.randperm(len(prompts), generator=_generator(seed, _EVAL_STREAM, 0)).tolist()
    held = set(order[:n_out])
    return [p for i, p in enumerate(prompts) if i not in held], [
        p for i, p in enumerate(prompts) if i in held
    ]


class RewardBackpropFineTuner(DiffusionFineTuner):
    """The shared fine-tuning loop with a reward backpropagated through the sampler.

    Args:
        config: the run's settings.
        reward: anything with ``score_pixels(pixels (B,3,H,W) in [0,1], prompts) -> (B,)``,
            differentiable in the pixels (a scorer, a ``WeightedReward``, a test's function).
        prompts: training prompts.
        validation_prompts: held-out prompts whose reward is logged.
        pretraining: real image-caption pairs for the denoising term (None: no such term).
        info: provenance written with the result.
    """

    def __init__(
        self,
        config: RewardBackpropConfig,
        reward: PixelScorerLike,
        prompts: list[str],
        validation_prompts: list[str],
        *,
        pretraining: list[Example] | None = None,
        info: dict[str, Any] | None = None,
    ):
        if not prompts:
            raise AdaptError(f"{config.prompts}: no training prompts")
        if not validation_prompts:
            raise AdaptError("no validation prompts")
        if not isinstance(reward, PixelScorerLike):
            raise AdaptError(f"reward {reward!r} has no score_pixels(pixels, prompts)")
        if config.pretraining_weight > 0 and not pretraining:
            raise AdaptError(f"{config.pretraining_data}: no pre-training pairs")
        super().__init__(
            config,
            [Example("", p) for p in prompts],
            prior=pretraining if config.pretraining_weight > 0 else None,
            beta=config.pretraining_weight,
            train=config.train,
            info=info,
            prior_batch_size=config.pretraining_batch_size,
        )
        self.cfg = config
        self.reward = reward
        self.prompts = prompts
        self.validation_prompts = validation_prompts
        self.eval_rewards: dict[int, torch.Tensor] = {}  # step -> per-image held-out rewards

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from diffusers import DDIMScheduler

        super()._setup()
        cfg, sd = self.cfg, self.sd
        if cfg.gradient_checkpointing:
            sd.vae.enable_gradient_checkpointing()
        self.sampler = DDIMScheduler.from_config(sd.noise_scheduler.config)
        self.sampler.set_timesteps(cfg.steps)
        scale = 2 ** (len(sd.vae.config.block_out_channels) - 1)
        self.latent_shape = (sd.unet.config.in_channels, cfg.resolution // scale, cfg.resolution // scale)
        self._empty_text: Conditioning | None = None
        if not cfg.resume_from_checkpoint:
            self._log_eval(0, self.evaluate())

    # ------------------------------------------------------------------ sampling
    def _text(self, prompts: Sequence[str]) -> tuple[Conditioning, Conditioning | None]:
        """Prompt conditioning and, with guidance, the empty prompt's (the unconditional branch);
        for SDXL it carries the pooled embeddings and the time ids of an uncropped image."""
        from prefalign.adapt.base_model import encode_prompts

        device = self.accelerator.device
        text = encode_prompts(self.sd, list(prompts), device, resolution=self.cfg.resolution)
        if self.cfg.guidance <= 1.0:
            return text, None
        if self._empty_text is None:
            self._empty_text = encode_prompts(self.sd, [""], device, resolution=self.cfg.resolution)
        return text, self._empty_text.repeat(len(prompts))

    def _eps(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text: Conditioning,
        empty: Conditioning | None,
        *,
        wrapped: bool = False,
    ) -> torch.Tensor:
        """The UNet's noise prediction, with classifier-free guidance when ``empty`` is given.

        Only the last call with gradients goes through the accelerate-wrapped UNet (``wrapped``),
        so DDP sees one forward per backward, its documented use; the earlier calls' gradients
        reach the same parameters through the graph (autograd sums a parameter's gradient over
        its uses before DDP's hook sees it). Two CPU processes give the one-process adapter
        (``tests/adapt/test_train_distributed.py``; on gloo, routing every call through DDP gave
        the same result too).
        """
        unet = self.unet if wrapped else self.accelerator.unwrap_model(self.unet)
        with self.accelerator.autocast():  # the unwrapped UNet is not autocast by accelerate
            if empty is None:
                return self._predict(latents, t, text, unet=unet)
            both = self._predict(torch.cat([latents, latents]), t, _concat(empty, text), unet=unet)
        uncond, cond = both.chunk(2)
        return uncond + self.cfg.guidance * (cond - uncond)

    def sample(
        self,
        noise: torch.Tensor,
        prompts: Sequence[str],
        *,
        grad_steps: int = 0,
        refl_step: int | None = None,
    ) -> torch.Tensor:
        """Final latents of a DDIM run from ``noise`` ``(B, C, h, w)``.

        ``grad_steps`` = K: the last K steps record gradients, the first N − K run under
        ``torch.no_grad`` (0: none does). ``refl_step`` = i: steps 0..i−1 run without gradients,
        then one UNet call with gradients at step i returns the predicted x0 (ReFL).
        """
        text, empty = self._text(prompts)
        timesteps = self.sampler.timesteps
        n_free = refl_step if refl_step is not None else len(timesteps) - grad_steps
        latents = noise
        with torch.no_grad():
            for t in timesteps[:n_free]:
                latents = self.sampler.step(self._eps(latents, t, text, empty), t, latents).prev_sample
        if refl_step is not None:
            t = timesteps[refl_step]
            eps = self._eps(latents, t, text, empty, wrapped=True)
            return self.sampler.step(eps, t, latents).pred_original_sample
        last = len(timesteps) - 1
        for k, t in enumerate(timesteps[n_free:], start=n_free):
            eps = self._eps(latents, t, text, empty, wrapped=k == last and torch.is_grad_enabled())
            latents = self.sampler.step(eps, t, latents).prev_sample
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] ``(B, 3, H, W)`` of scaled latents (gradients flow through the decoder)."""
        vae = self.sd.vae
        return (vae.decode(latents / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ the loss
    def _micro_loss(self, step: int, micro: int, record: dict[str, float]) -> torch.Tensor:
        cfg, acc = self.cfg, self.accelerator
        size = self.micro_batch
        start = (
            (step * cfg.gradient_accumulation_steps + micro) * acc.num_processes + acc.process_index
        ) * size
        positions = range(start, start + size)
        prompts = [
            self.prompts[i] for i in _indices(len(self.prompts), cfg.seed, _PROMPT_STREAM, start, size)
        ]
        noise = torch.stack(
            [
                torch.randn(self.latent_shape, generator=_generator(cfg.seed, _NOISE_STREAM, g))
                for g in positions
            ]
        ).to(acc.device)
        if cfg.mode == "refl":
            low, high = cfg.refl_min_step, cfg.refl_max_step
            # One step index per optimizer step (ReFL.py draws one per micro-batch), so that a
            # step's result does not depend on how its batch is split over processes and passes.
            i = int(torch.randint(low, high + 1, (1,), generator=_generator(cfg.seed, _REFL_STREAM, step)))
            latents = self.sample(noise, prompts, refl_step=i)
        else:
            latents = self.sample(noise, prompts, grad_steps=cfg.truncation_steps)
        rewards = self.reward.score_pixels(self.decode(latents), prompts).float()
        if cfg.mode == "refl":
            reward_loss = cfg.loss_scale * F.relu(cfg.refl_hinge - rewards).mean()
        else:
            reward_loss = -cfg.loss_scale * rewards.mean()
        loss = reward_loss
        values = {"reward_mean": float(rewards.detach().mean()), "reward_loss": float(reward_loss.detach())}
        if self.prior and self.beta:
            prior_mse, _ = self._pass_errors(self.prior, step, micro, _PRIOR_STREAM)
            loss = loss + self.beta * prior_mse.mean()
            values["pretraining_mse"] = float(prior_mse.detach().mean())
        values["loss"] = float(loss.detach())
        for k, v in values.items():
            record[k] = record.get(k, 0.0) + v / cfg.gradient_accumulation_steps
        return loss

    # ------------------------------------------------------------------ held-out reward
    def validation_noise(self) -> tuple[torch.Tensor, list[str]]:
        """The fixed noise of every held-out image and its prompt (the same at every evaluation)."""
        cfg = self.cfg
        items = [
            (i, p)
            for i, p in enumerate(self.validation_prompts)
            for _ in range(cfg.validation_images_per_prompt)
        ]
        noise = [
            torch.randn(self.latent_shape, generator=_generator(cfg.seed, _EVAL_STREAM, 1 + i, j))
            for i, _ in enumerate(self.validation_prompts)
            for j in range(cfg.validation_images_per_prompt)
        ]
        return torch.stack(noise), [p for _, p in items]

    def evaluate(self) -> torch.Tensor:
        """Rewards ``(n,)`` of the held-out images, sampled without gradients from their fixed noise."""
        noise, prompts = self.validation_noise()
        out = []
        with torch.no_grad():
            for k in range(0, len(prompts), self.micro_batch):
                chunk = noise[k : k + self.micro_batch].to(self.accelerator.device)
                latents = self.sample(chunk, prompts[k : k + self.micro_batch])
                out.append(self.reward.score_pixels(self.decode(latents), prompts[k : k + self.micro_batch]))
        return torch.cat(out).float().cpu()

    def _log_eval(self, step: int, rewards: torch.Tensor) -> None:
        entry = {
            "step": step,
            "eval_reward_mean": float(rewards.mean()),
            "eval_reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "eval_images": int(rewards.numel()),
        }
        self.eval_rewards[step] = rewards
        # In the run's log (kept in checkpoints, rewritten on resume) and the trackers.
        self.log.append(entry)
        self.log_to_trackers(entry, step, prefix="eval/")
        if self.accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            with (self.out / TRAIN_LOG_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        logger.info("step %d: held-out reward %.5f", step, entry["eval_reward_mean"])

    def _after_step(self, done: int, record: dict[str, float]) -> None:
        cfg = self.cfg
        if done == cfg.max_steps or (cfg.eval_steps and done % cfg.eval_steps == 0):
            self._log_eval(done, self.evaluate())

    def _save_result(self) -> None:
        history = [row for row in self.log if "eval_reward_mean" in row]  # a resumed run's too
        first, last = (history[0], history[-1]) if history else ({}, {})
        self.info.update(
            eval_reward_before=first.get("eval_reward_mean") if first.get("step") == 0 else None,
            eval_reward_after=last.get("eval_reward_mean"),
        )
        super()._save_result()


def train_reward_backprop(config: RewardBackpropConfig, reward: PixelScorerLike | None = None) -> Path:
    """Train with DRaFT-K or ReFL; returns the output directory.

    Args:
        config: the run's settings (``config.reward`` names the scorers unless ``reward`` is given).
        reward: a differentiable reward object to use instead of loading ``config.reward``.

    Raises:
        ConfigError: settings that cannot work. AdaptError: no prompts, a scorer without a
        differentiable path, an empty pre-training set.
    """
    from prefalign.adapt.generate import read_prompts
    from prefalign.adapt.validation import read_validation_prompts

    config.validate()
    if reward is None:
        if not config.reward:
            raise ConfigError("reward is required (--reward MODEL[:WEIGHT], here or in --config)")
        from accelerate import PartialState

        # The device accelerate gives this process (the trainer's Accelerator shares this state).
        reward = load_reward(config.reward, "cpu" if config.cpu else PartialState(cpu=False).device)
    prompts = read_prompts(config.prompts)
    if config.validation_prompts:
        train_prompts, held_out = prompts, read_validation_prompts(config.validation_prompts)
    else:
        train_prompts, held_out = split_prompts(prompts, config.validation_fraction, config.seed)
    pretraining = None
    if config.pretraining_weight > 0 and config.pretraining_data:
        from prefalign.data.dataset import load_dataset

        pretraining = examples_from_dataset(load_dataset(config.pretraining_data))
    notes = []
    if not pretraining:
        notes.append("no pre-training term (--pretraining_data): nothing holds the model near the base")
    info = {
        "method": f"reward-backprop-{config.mode}",
        "identifier": None,
        "reward": list(config.reward or []) or [repr(reward)],
        "mode": config.mode,
        "num_inference_steps": config.steps,
        "truncation_steps": config.truncation_steps if config.mode == "draft" else None,
        "guidance_scale": config.guidance,
        "train_prompts": len(train_prompts),
        "validation_prompts": len(held_out),
        "pretraining_pairs": len(pretraining or []),
        "recipe_notes": notes,
    }
    logger.info("%d training prompts, %d held out", len(train_prompts), len(held_out))
    trainer = RewardBackpropFineTuner(
        config, reward, train_prompts, held_out, pretraining=pretraining, info=info
    )
    return trainer.train()


def _concat(first: Conditioning, second: Conditioning) -> Conditioning:
    """Two conditionings as one batch, ``first`` then ``second`` (classifier-free guidance)."""

    def cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        return None if a is None or b is None else torch.cat([a, b])

    return Conditioning(
        torch.cat([first.encoder_hidden_states, second.encoder_hidden_states]),
        cat(first.text_embeds, second.text_embeds),
        cat(first.time_ids, second.time_ids),
    )
