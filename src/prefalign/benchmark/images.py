"""The images a benchmark scores: generated here (resumable) or found in folders made elsewhere.

Layout of a run directory: ``images/<model>/<index:05d>-s<seed>.png``, the prompt's index in
the full set and the seed in the name (as ``prefalign generate`` names its files). Each image is
written atomically as soon as it is sampled, so an interrupted run keeps every finished image
and the next run generates only the missing ones.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.benchmark.prompts import PromptSet
from prefalign.errors import PrefalignError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# 00042-s3.png (ours and `prefalign generate`'s), 42_3.jpg, and 00042.jpg (HPS v2's benchmark
# folders: one image per prompt, read as seed 0).
_NAME = re.compile(r"^(?P<index>\d+)(?:[-_]s?(?P<seed>\d+))?$")


class BenchmarkError(PrefalignError, ValueError):
    """A benchmark that cannot run as asked (names the input, the reason and the fix)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model of the benchmark: a name for the tables, a Stable Diffusion base, an optional LoRA."""

    name: str
    base: str | None = None
    lora: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "lora": self.lora}


def parse_model(text: str) -> ModelSpec:
    """``[NAME=]BASE[+LORA]`` -> a ModelSpec (NAME defaults to the base's folder name [+ LoRA's]).

    ``+`` splits off a LoRA directory only when the whole text is not itself an existing path.

    Raises:
        BenchmarkError: an empty name or base, or a name that cannot be a folder name.
    """
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    base, lora = rest, None
    if "+" in rest and not Path(rest).exists():
        base, _, lora = rest.rpartition("+")
    if not base:
        raise BenchmarkError(f"--models {text!r}: no base model (use NAME=BASE or NAME=BASE+LORA)")
    if not name:
        name = Path(base.rstrip("/")).name + (f"+{Path(lora.rstrip('/')).name}" if lora else "")
    check_model_name(name, text)
    return ModelSpec(name, base, lora or None)


def check_model_name(name: str, given: str | None = None) -> None:
    """A model name is a folder name under ``images/``: no slashes, not empty, not a dot name."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise BenchmarkError(
            f"--models {given or name!r}: {name!r} cannot name a folder; give a name with NAME=BASE"
        )


def image_name(index: int, seed: int) -> str:
    """The file name of prompt ``index``'s image for ``seed``."""
    return f"{index:05d}-s{seed}.png"


@dataclass
class GenerationCounts:
    """What ``generate_images`` did per model: images reused from an earlier run and generated now."""

    reused: dict[str, int] = field(default_factory=dict)
    generated: dict[str, int] = field(default_factory=dict)


def generate_images(
    models: Sequence[ModelSpec],
    prompt_set: PromptSet,
    seeds: Sequence[int],
    out: str | Path,
    *,
    settings=None,
    device: str = "cpu",
) -> GenerationCounts:
    """Generate every missing ``images/<model>/<index>-s<seed>.png`` of ``out``; keep the others.

    Each image has its own generator seeded with its seed (as ``prefalign generate`` does), so
    an image depends on its model, prompt, seed and settings only, whichever run or process made
    it. Under ``accelerate launch`` / ``torchrun`` the missing (prompt, seed) jobs of each model
    are split across the processes, each on its own GPU.

    Args:
        models: the models (each with a ``base``).
        prompt_set: the prompts.
        seeds: the seeds.
        out: the run directory.
        settings: ``prefalign.adapt.generate.GenerationSettings`` (default: SD's 50 PNDM steps,
            guidance 7.5).
        device: where to run.

    Returns:
        Counts of reused and generated images per model (summed over processes).
    """
    import torch

    from prefalign.adapt.adapter import load_adapter
    from prefalign.adapt.base_model import load_pipeline
    from prefalign.adapt.generate import GenerationSettings
    from prefalign.adapt.identifier import negative_prompt_for
    from prefalign.evaluate.distributed import gather_lists, process_group
    from prefalign.files import write_atomic

    settings = settings or GenerationSettings()
    out = Path(out)
    rank, world = process_group()
    counts = GenerationCounts()
    for model in models:
        if model.base is None:
            raise BenchmarkError(f"model {model.name!r} has no base to generate with")
        folder = out / "images" / model.name
        jobs = [(p, s) for p in prompt_set.prompts for s in seeds]
        missing = [(p, s) for p, s in jobs if not (folder / image_name(p.index, s)).exists()]
        counts.reused[model.name] = len(jobs) - len(missing)
        counts.generated[model.name] = len(missing)
        # Every process lists the missing images before any process writes one, so all of them
        # split the same list.
        gather_lists([])
        if not missing:
            logger.info("%s: all %d images exist, reusing them", model.name, len(jobs))
            continue
        logger.info(
            "%s: generating %d images (%d reused)", model.name, len(missing), counts.reused[model.name]
        )
        per = -(-len(missing) // world)
        mine = missing[rank * per : (rank + 1) * per]
        if world > 1 and str(device).startswith("cuda"):
            device = f"cuda:{torch.cuda.current_device()}"
        if mine:
            pipe = load_pipeline(model.base, scheduler=settings.scheduler, device=device)
            info = load_adapter(pipe, model.lora) if model.lora else {}
            negative = settings.negative_prompt
            if negative is None and info.get("identifier"):
                negative = negative_prompt_for(info["identifier"])
            negative = negative or None
            by_prompt: dict[int, list] = {}
            for p, s in mine:
                by_prompt.setdefault(p.index, []).append((p, s))
            batch = max(1, settings.batch_size)
            for items in by_prompt.values():
                for start in range(0, len(items), batch):
                    chunk = items[start : start + batch]
                    prompt = chunk[0][0].text
                    result = pipe(
                        prompt=[prompt] * len(chunk),
                        negative_prompt=None if negative is None else [negative] * len(chunk),
                        num_inference_steps=settings.steps,
                        guidance_scale=settings.guidance,
                        height=settings.height,
                        width=settings.width or settings.height,
                        generator=[torch.Generator(device="cpu").manual_seed(s) for _, s in chunk],
                    )
                    for (p, s), image in zip(chunk, result.images):
                        # Atomic: an interrupted run never leaves a half image that resume would keep.
                        write_atomic(folder / image_name(p.index, s), lambda fh, im=image: im.save(fh, "PNG"))
            del pipe
        gather_lists([])  # every process finishes this model before the next one starts
    return counts


@dataclass
class ImageTable:
    """Where each model's image of each (prompt index, seed) is, and what was left out.

    Attributes:
        paths: model -> {(prompt index, seed): image path}.
        notes: one line per thing skipped or guessed (files not matching the naming, missing
            images), for the leaderboard's notes.
    """

    paths: dict[str, dict[tuple[int, int], str]]
    notes: list[str] = field(default_factory=list)


def generated_table(
    models: Sequence[ModelSpec], prompt_set: PromptSet, seeds: Sequence[int], out: Path
) -> ImageTable:
    """The images ``generate_images`` wrote into ``out``."""
    paths = {
        m.name: {
            (p.index, s): str(Path(out) / "images" / m.name / image_name(p.index, s))
            for p in prompt_set.prompts
            for s in seeds
        }
        for m in models
    }
    return ImageTable(paths)


def find_images(
    root: str | Path,
    prompt_set: PromptSet,
    seeds: Sequence[int] | None,
    models: Sequence[str] | None = None,
) -> ImageTable:
    """Images generated elsewhere: one folder per model under ``root``.

    A model folder is either a dataset (``records.parquet``, as ``prefalign generate`` writes;
    images pair by ``meta["prompt_index"]`` or else by prompt text, and ``meta["seed"]``), or a
    folder of files named ``<index>-s<seed>.png``, ``<index>_<seed>.png`` or ``<index>.png``
    (HPS v2's benchmark folders; seed 0).

    Args:
        root: the folder holding one folder per model.
        prompt_set: the prompts (after ``--limit``/``--categories``): other indices are left out.
        seeds: keep these seeds (None: every seed found).
        models: the folder names to use (default: every folder under ``root``, sorted).

    Raises:
        BenchmarkError: no such folder, no model folder, or a model folder without a usable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkError(f"--images {root}: no such folder (one folder of images per model expected)")
    names = (
        list(models)
        if models
        else sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    if not names:
        raise BenchmarkError(
            f"--images {root}: no model folders inside (one folder of images per model expected)"
        )
    wanted = {p.index for p in prompt_set.prompts}
    by_text = {p.text: p.index for p in prompt_set.prompts}
    keep_seeds = None if seeds is None else set(seeds)
    table = ImageTable({})
    for name in names:
        folder = root / name
        if not folder.is_dir():
            raise BenchmarkError(f"--images {root}: no folder {name!r} for model {name!r}")
        if (folder / "records.parquet").exists():
            found, skipped = _from_dataset(folder, by_text)
        else:
            found, skipped = _from_files(folder)
        found = {
            k: v for k, v in found.items() if k[0] in wanted and (keep_seeds is None or k[1] in keep_seeds)
        }
        if not found:
            raise BenchmarkError(
                f"--images {folder}: no image of the selected prompts and seeds (files are named "
                "<prompt index>-s<seed>.png, or the folder is a dataset from `prefalign generate`)"
            )
        if skipped:
            table.notes.append(
                f"{name}: {skipped} files skipped (name not <index>-s<seed>, or prompt not in the set)"
            )
        table.paths[name] = found
    return table


def _from_files(folder: Path) -> tuple[dict[tuple[int, int], str], int]:
    found: dict[tuple[int, int], str] = {}
    skipped = 0
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        m = _NAME.match(path.stem)
        if m is None:
            skipped += 1
            continue
        key = (int(m["index"]), int(m["seed"] or 0))
        if key in found:
            raise BenchmarkError(
                f"{folder}: two images of prompt {key[0]}, seed {key[1]} ({Path(found[key]).name}, {path.name}); keep one"
            )
        found[key] = str(path)
    return found, skipped


def _from_dataset(folder: Path, by_text: dict[str, int]) -> tuple[dict[tuple[int, int], str], int]:
    from prefalign.data.dataset import load_dataset

    ds = load_dataset(folder)
    found: dict[tuple[int, int], str] = {}
    skipped = 0
    for rec in ds:
        # By text: a dataset's own prompt_index counts the prompts of its own file, not of this set.
        index = by_text.get(rec.prompt)
        seeds = rec.meta.get("seeds") or (
            [rec.meta["seed"]] * len(rec.images) if "seed" in rec.meta else None
        )
        if index is None or seeds is None or len(seeds) != len(rec.images):
            skipped += len(rec.images)
            continue
        for seed, image in zip(seeds, rec.images):
            key = (int(index), int(seed))
            if key in found:
                raise BenchmarkError(
                    f"{folder}: prompt {rec.prompt[:50]!r} with seed {seed} twice; keep one image per prompt and seed"
                )
            found[key] = ds.image_path(image)
    return found, skipped
