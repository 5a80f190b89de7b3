"""Sample grids during diffusion training, as diffusers' ``train_text_to_image_lora.py`` logs them.

Every ``validation_steps`` optimizer steps (and after the last one) the trainer calls
:func:`maybe_write_validation_grid` once; it samples ``num_validation_images`` images for each of the
``validation_prompts`` with the UNet as it is at that step (the LoRA adapter active, or the partly
fine-tuned UNet) and writes ``OUTPUT_DIR/validation/step-NNNNNNN.png``: one row per prompt, one
column per seed.

Comparable across steps and runs: image ``j`` of every prompt uses a CPU generator seeded
``seed + j`` (the run's ``--seed``), so the same cell of two grids differs only by the training
between them. Training is not disturbed: the trainers draw every random number of the loop from
their own seeded generators (``prefalign.adapt.trainer``), and the global CPU/CUDA RNG states are
restored after sampling (``torch.random.fork_rng``), so a run with grids trains the same weights
as one without, and resumes exactly.

Names after diffusers' script: ``validation_prompt`` -> ``validation_prompts`` (several, or a file),
``num_validation_images`` (same), ``validation_epochs`` -> ``validation_steps`` (these trainers count
steps). Sampling: the base's PNDM sampler (Stable Diffusion's default), classifier-free guidance
7.5, ``validation_inference_steps`` steps (diffusers' script: 30), the training ``resolution``, and
the adapter's identifier as negative prompt when the run records one (as ``prefalign generate`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from prefalign.training.config import ConfigError

logger = logging.getLogger(__name__)

VALIDATION_DIR = "validation"


def read_validation_prompts(value: str | Sequence[str] | None) -> list[str]:
    """The prompts of ``--validation_prompts``: the values themselves, or one file's lines.

    A single value naming an existing file is read as one prompt per line (blank lines and lines
    starting with # skipped, as ``prefalign generate --prompts``).

    Raises:
        ConfigError: a file without prompts, or an empty prompt.
    """
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    if len(values) == 1 and Path(values[0]).is_file():
        path = Path(values[0])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the validation prompts ({exc})") from None
        prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not prompts:
            raise ConfigError(f"{path}: no validation prompts in it (one prompt per line expected)")
        return prompts
    if any(not str(v).strip() for v in values):
        raise ConfigError("validation_prompts: a prompt is empty")
    return [str(v) for v in values]


def check_validation_settings(config: Any) -> None:
    """Raise ``ConfigError`` for validation settings that cannot work (before anything loads)."""
    if config.validation_steps < 0:
        raise ConfigError(f"validation_steps must be >= 0, got {config.validation_steps}")
    if config.num_validation_images < 1:
        raise ConfigError(f"num_validation_images must be at least 1, got {config.num_validation_images}")
    if config.validation_inference_steps < 1:
        raise ConfigError(
            f"validation_inference_steps must be at least 1, got {config.validation_inference_steps}"
        )
    prompts = read_validation_prompts(config.validation_prompts)
    if config.validation_steps and not prompts:
        raise ConfigError(
            "validation_steps needs --validation_prompts (prompts, or a text file with one per line)"
        )
    if prompts and not config.validation_steps:
        raise ConfigError(
            "--validation_prompts given without --validation_steps N: say how often to sample the grid"
        )


def grid_path(output_dir: str | Path, step: int) -> Path:
    """``OUTPUT_DIR/validation/step-NNNNNNN.png`` (the checkpoints' step numbering)."""
    return Path(output_dir) / VALIDATION_DIR / f"step-{step:07d}.png"


def is_due(config: Any, step: int) -> bool:
    """Whether a grid is written after optimizer step ``step`` (1-based)."""
    every = config.validation_steps
    return bool(every) and (step % every == 0 or step == config.max_steps)


def maybe_write_validation_grid(trainer: Any, step: int) -> Path | None:
    """The trainer's one call per optimizer step: write the step's grid if one is due.

    Args:
        trainer: a ``DiffusionFineTuner`` after setup (its ``config``, ``accelerator``, ``unet``,
            ``sd`` components, ``out`` and ``info`` are read; nothing of it is changed).
        step: optimizer steps done (1-based).

    Returns:
        The grid written (main process), else None.
    """
    config, acc = trainer.config, trainer.accelerator
    if not is_due(config, step):
        return None
    path = None
    if acc.is_main_process:
        unet = acc.unwrap_model(trainer.unet)
        identifier = trainer.info.get("identifier")
        from prefalign.adapt.identifier import negative_prompt_for

        images = sample_validation_images(
            trainer.sd,
            unet,
            read_validation_prompts(config.validation_prompts),
            seeds=[config.seed + j for j in range(config.num_validation_images)],
            steps=config.validation_inference_steps,
            resolution=config.resolution,
            negative_prompt=negative_prompt_for(identifier) if identifier else None,
            autocast=acc.autocast,
        )
        grid = make_grid(images)
        path = grid_path(trainer.out, step)
        save_png_atomic(grid, path)
        log_to_trackers(getattr(acc, "trackers", []), grid, step)
        logger.info("validation grid for step %d: %s", step, path)
    acc.wait_for_everyone()
    return path


def sample_validation_images(
    sd: Any,
    unet: torch.nn.Module,
    prompts: Sequence[str],
    *,
    seeds: Sequence[int],
    steps: int,
    resolution: int,
    negative_prompt: str | None = None,
    autocast: Any = None,
) -> list[list[Any]]:
    """PIL images ``[prompt][seed]`` from the current UNet, leaving RNG states and train mode as found.

    Args:
        sd: the base's frozen components, on the trainer's device (``prefalign.adapt.base_model.SDComponents``).
        unet: the UNet being trained (unwrapped), with its adapter active.
        prompts: one grid row each.
        seeds: one grid column each; image j of every prompt uses a CPU generator seeded ``seeds[j]``.
        steps: denoising steps.
        resolution: image height and width in pixels.
        negative_prompt: the negative prompt (None: none).
        autocast: a context manager factory (the accelerator's ``autocast``) for mixed precision.
    """
    import contextlib

    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=unet,
        scheduler=PNDMScheduler.from_config(sd.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    was_training = unet.training
    cuda_devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    rows: list[list[Any]] = []
    try:
        unet.eval()
        precision = autocast() if autocast is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=cuda_devices), torch.no_grad(), precision:
            for prompt in prompts:
                generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
                result = pipe(
                    prompt=[prompt] * len(seeds),
                    negative_prompt=None if negative_prompt is None else [negative_prompt] * len(seeds),
                    num_inference_steps=steps,
                    height=resolution,
                    width=resolution,
                    generator=generators,
                )
                rows.append(list(result.images))
    finally:
        unet.train(was_training)
    return rows


def make_grid(rows: Sequence[Sequence[Any]]) -> Any:
    """One PIL image: ``rows[i][j]`` at row i, column j (all images of the first image's size)."""
    from PIL import Image

    width, height = rows[0][0].size
    grid = Image.new("RGB", (width * max(len(r) for r in rows), height * len(rows)))
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            grid.paste(image.convert("RGB"), (j * width, i * height))
    return grid


def save_png_atomic(image: Any, path: Path) -> None:
    """Write a PIL image as PNG atomically (``prefalign.files.write_atomic``)."""
    from prefalign.files import write_atomic

    write_atomic(path, lambda fh: image.save(fh, format="PNG"))


def log_to_trackers(trackers: Sequence[Any], grid: Any, step: int) -> int:
    """Log the grid to every accelerate tracker that takes images (TensorBoard, W&B); returns how many.

    The trackers are those ``--report_to`` started (none: nothing is logged but the PNG files).
    """
    import numpy as np

    logged = 0
    for tracker in trackers:
        if not hasattr(tracker, "log_images"):
            continue
        # TensorBoard takes a batch array and its layout (as diffusers' script passes it); W&B takes images.
        if getattr(tracker, "name", None) == "tensorboard":
            tracker.log_images({"validation": np.asarray(grid)[None]}, step=step, dataformats="NHWC")
        else:
            tracker.log_images({"validation": [grid]}, step=step)
        logged += 1
    return logged
