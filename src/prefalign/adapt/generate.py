"""Generation from a base (optionally with a LoRA adapter) into a dataset, and best-of-n.

Every image is one record whose ``meta`` says how it was made (``seed``, ``model``, ``lora``,
sampler settings), so ``eval compare`` can pair a base and an adapted run by prompt and seed.
Each image has its own seeded generator, so an image depends on its prompt and seed only, not on
what else shared its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from prefalign.adapt.adapter import load_adapter
from prefalign.adapt.base_model import detect_family, load_pipeline
from prefalign.adapt.config import DEFAULT_GUIDANCE, DEFAULT_SCHEDULER, DEFAULT_STEPS
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.identifier import negative_prompt_for
from prefalign.adapt.rewards import RewardFn
from prefalign.data.dataset import DatasetWriter, Record
from prefalign.scoring.distributed import process_group

logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    """How images are sampled.

    Attributes:
        steps: denoising steps.
        guidance: classifier-free guidance scale.
        scheduler: sampler: pndm (SD 1.x's default), ddim, dpm or euler (SDXL's default).
        height: image height in pixels (default: the UNet's sample size x VAE factor).
        width: image width in pixels (default: as height).
        negative_prompt: None to use the adapter's identifier (if it was trained with one), ""
            for none, or any text.
        batch_size: images per UNet pass.
        dtype: weights' precision: fp32 (diffusers' default), bf16, or fp16 (GPU only).
        lora_scale: how strongly the adapter applies (1.0: as trained, 0.0: the base; the
            ``scale`` diffusers passes in ``cross_attention_kwargs``).
    """

    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    scheduler: str = DEFAULT_SCHEDULER
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    batch_size: int = 4
    dtype: str = "fp32"
    lora_scale: float = 1.0


@dataclass
class GenerationReport:
    """What one generation run wrote."""

    out: Path
    images: int = 0
    candidates: int = 0
    negative_prompt: str | None = None
    scores: list[float] = field(default_factory=list)


def read_prompts(source: str | Path) -> list[str]:
    """Prompts from a text file (one per line; blank lines and lines starting with # skipped)
    or from a dataset directory (its distinct prompts in order).

    Raises:
        AdaptError: the file does not exist or holds no prompt.
    """
    path = Path(source)
    if path.is_dir():
        from prefalign.data.dataset import load_dataset

        prompts = list(dict.fromkeys(r.prompt for r in load_dataset(path)))
    elif path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        raise AdaptError(f"{source}: no such prompt file")
    if not prompts:
        raise AdaptError(f"{source}: no prompts (one per line expected)")
    return prompts


def candidate_seeds(seed: int, best_of: int) -> list[int]:
    """Seeds of the ``best_of`` candidates drawn for group seed ``seed`` (just ``[seed]`` for 1)."""
    return [seed * best_of + k for k in range(best_of)] if best_of > 1 else [seed]


def generate(
    base: str | Path,
    prompts: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    lora: str | Path | None = None,
    lora_weight_name: str | None = None,
    settings: GenerationSettings | None = None,
    best_of: int = 1,
    keep: int | None = None,
    reward: RewardFn | None = None,
    model_name: str | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> GenerationReport:
    """Generate one image per (prompt, seed) — or the best ``keep`` of ``best_of`` — into a dataset.

    Args:
        base: Stable Diffusion diffusers directory (or hub id): SD 1.x/2.x through
            ``StableDiffusionPipeline``, SDXL through ``StableDiffusionXLPipeline`` (detected from
            the pipeline; any other family is refused by name).
        prompts: the prompts.
        seeds: one image per prompt and seed; with ``best_of`` K, each seed s is a group whose
            K candidates use seeds s·K … s·K+K−1.
        out: output dataset directory (``records.parquet`` + ``images/``).
        lora: a LoRA adapter directory or weights file (``.safetensors``, as diffusers'
            ``load_lora_weights`` takes); its identifier becomes the negative prompt unless
            ``settings.negative_prompt`` says otherwise.
        lora_weight_name: the weight file of a ``lora`` directory that holds several.
        settings: sampler settings.
        best_of: candidates per group (rejection sampling, as in Lee et al.; the 16-keep-4 of the
            examples is this toolkit's, not a number from the paper).
        keep: candidates kept per group, highest reward first (default: 1 with best_of > 1).
        reward: scores candidates when ``best_of`` > 1 (a ``RewardFn``; see ``as_reward_fn``).
        model_name: what ``meta["model"]`` says (default: the base, plus ``+lora`` name).
        device: where to run. Under ``accelerate launch`` or ``torchrun`` the (prompt, seed) jobs
            are split across processes, each on its own GPU, and the records gathered in order.
        progress: show a progress bar of the (prompt, seed) jobs on stderr (first process only).

    Returns:
        The report; each record's meta holds ``seed``, ``model``, ``base``, ``lora``,
        ``negative_prompt``, the settings, and with best-of ``score``, ``rank``, ``group_seed``.
    """
    settings = settings or GenerationSettings()
    prompts = list(prompts)
    if not prompts:
        raise AdaptError("no prompts to generate from")
    if any(not p.strip() for p in prompts):
        raise AdaptError("a prompt is empty")
    if not seeds:
        raise AdaptError("no seeds given")
    if best_of < 1:
        raise AdaptError(f"--best-of must be at least 1, got {best_of}")
    keep = 1 if keep is None else keep
    if best_of > 1 and reward is None:
        raise AdaptError("--best-of needs a scorer to rank the candidates (--scorer MODEL)")
    if not 1 <= keep <= best_of:
        raise AdaptError(f"--keep must be between 1 and --best-of ({best_of}), got {keep}")

    if process_group()[1] > 1 and str(device).startswith("cuda"):
        device = f"cuda:{torch.cuda.current_device()}"  # the launcher gave each process its GPU
    if settings.lora_scale != 1.0 and lora is None:
        raise AdaptError("--lora-scale needs --lora")
    pipe = load_pipeline(base, scheduler=settings.scheduler, device=device, dtype=settings.dtype)
    info: dict[str, Any] = {}
    if lora is not None:
        info = load_adapter(pipe, lora, lora_weight_name)
    negative = settings.negative_prompt
    if negative is None:
        identifier = info.get("identifier")
        negative = negative_prompt_for(identifier) if identifier else None
    elif negative == "":
        negative = None
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    height = settings.height or pipe.unet.config.sample_size * factor
    width = settings.width or height
    name = model_name or (str(base) if lora is None else f"{base}+{Path(lora).name}")
    common_meta = {
        "model": name,
        "base": str(base),
        "family": detect_family(base),
        "lora": None if lora is None else str(lora),
        "negative_prompt": negative,
        **{
            k: v
            for k, v in asdict(settings).items()
            if k not in ("negative_prompt", "batch_size", "lora_scale")
        },
        "lora_scale": None if lora is None else settings.lora_scale,
        "height": height,
        "width": width,
    }

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    # Under accelerate launch / torchrun each process draws a contiguous share of the
    # (prompt, seed) jobs; the first writes the records of all, in the 1-process order.
    jobs = [(pi, prompt, int(s)) for pi, prompt in enumerate(prompts) for s in seeds]
    rank, world = process_group()
    per = -(-len(jobs) // world)
    records: list[Record] = []
    candidates = 0
    from tqdm.auto import tqdm

    mine = jobs[rank * per : (rank + 1) * per]
    bar = tqdm(mine, desc="generate", unit="image", disable=not progress or rank != 0, dynamic_ncols=True)
    if best_of > 1:
        bar.unit = f"×{best_of}"
    for pi, prompt, group_seed in bar:
        cand_seeds = candidate_seeds(group_seed, best_of)
        images = _sample(pipe, prompt, negative, cand_seeds, settings, height, width)
        candidates += len(images)
        order = list(range(len(images)))
        scores: list[float] = []
        if best_of > 1:
            scores = reward(images, [prompt] * len(images)).float().tolist()
            order = sorted(order, key=lambda i: (-scores[i], cand_seeds[i]))[:keep]
        for place, i in enumerate(order):
            rel = f"images/{pi:05d}-s{cand_seeds[i]}.png"
            images[i].save(out / rel)
            meta = {**common_meta, "seed": cand_seeds[i], "prompt_index": pi}
            if best_of > 1:
                meta.update(score=scores[i], rank=place, group_seed=group_seed, best_of=best_of, keep=keep)
            records.append(Record(prompt=prompt, images=[rel], source="generated", meta=meta))

    records = _gather(records)
    report = GenerationReport(
        out=out,
        images=len(records),
        candidates=sum(_gather([candidates])),
        negative_prompt=negative,
        scores=[r.meta["score"] for r in records if "score" in r.meta],
    )
    if rank == 0:
        with DatasetWriter(out) as writer:
            for record in records:
                writer.write(record)
    _barrier()
    return report


def _gather(items: list) -> list:
    """Every process's list concatenated in rank order (the list itself when running alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def _barrier() -> None:
    """Wait until the records are written, so no process returns before the dataset exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _sample(pipe, prompt, negative, seeds, settings, height, width) -> list:
    """PIL images for one prompt and each seed, ``settings.batch_size`` at a time."""
    images = []
    for start in range(0, len(seeds), max(1, settings.batch_size)):
        chunk = seeds[start : start + max(1, settings.batch_size)]
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in chunk]
        result = pipe(
            prompt=[prompt] * len(chunk),
            negative_prompt=None if negative is None else [negative] * len(chunk),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            height=height,
            width=width,
            generator=generators,
            cross_attention_kwargs={"scale": settings.lora_scale} if settings.lora_scale != 1.0 else None,
        )
        images.extend(result.images)
    return images
