"""An A/B study directory from two sets of images: pair them, copy them under names that hide the side.

Each side (``--a``, ``--b``) is a prefalign dataset directory (``records.parquet``, e.g. what
``prefalign generate`` writes) or a plain folder of images. Images pair up:

* by **prompt and seed** when every record of both sides holds ``meta["seed"]`` (or
  ``meta["seeds"]``, one per image) — the generation commands write it;
* else by **file name** (the image's path relative to its side), for any two folders.

The pairs are written as a pair-kind study dataset: one record per pair, ``images = [a, b]``
(A first, the convention of every pair study and of ``annotate export``), the files copied (or
hard-linked) to ``images/<record id>-<random token>.<ext>`` so that no file name, URL or record
order tells a side. Which side is which is kept only on the server: in ``records.parquet``
(``meta["a"]``, ``meta["b"]``: the source paths) and ``study.json`` (``sides``). Left/right on
screen is drawn independently for each annotator and task by the app (``annotate.assign``) and
stored with each vote (``shown_order``), so position bias can be measured and cancels out.

A plain folder has no prompts: a ``NAME.txt`` beside ``NAME.png`` (in A, else B) holds one
(the caption-file convention of kohya's trainers); without it the pair is shown with no prompt,
and the count of such pairs is reported.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefalign.annotate.errors import StudyError
from prefalign.annotate.paths import IMAGE_SUFFIXES

MATCH_SEED = "prompt and seed"
MATCH_NAME = "file name"


@dataclass(frozen=True)
class SideImage:
    """One image of one side: its prompt, its seed (None for a plain folder) and its file."""

    prompt: str
    seed: object
    path: Path
    name: str  # the path relative to the side's directory


@dataclass(frozen=True)
class PairPlan:
    """The pairs found, how they were matched, and the count of pairs that have no prompt."""

    pairs: list[tuple[SideImage, SideImage]]
    matched_by: str
    without_prompt: int


def _dataset_side(root: Path, label: str) -> tuple[list[SideImage], bool]:
    """The images of a dataset directory, and whether every one of them has a seed."""
    from prefalign.data.dataset import DatasetError, load_dataset

    try:
        dataset = load_dataset(root)
    except DatasetError as exc:
        raise StudyError(f"--{label.lower()}: {exc}") from None
    images: list[SideImage] = []
    all_seeded = True
    for rec in dataset:
        seeds = rec.meta.get("seeds")
        if seeds is not None and len(seeds) != len(rec.images):
            raise StudyError(
                f"--{label.lower()} {root}: record {rec.id!r} lists {len(seeds)} seeds for {len(rec.images)} images"
            )
        for i, image in enumerate(rec.images):
            if "://" in image:
                raise StudyError(
                    f"--{label.lower()} {root}: record {rec.id!r}: {image!r} is a URL, not a file"
                )
            seed = seeds[i] if seeds is not None else rec.meta.get("seed")
            if seeds is None and len(rec.images) > 1 and seed is not None:
                seed = f"{seed}#{i}"  # several images of one seed pair by position
            all_seeded = all_seeded and seed is not None
            images.append(SideImage(rec.prompt, seed, Path(dataset.image_path(image)), image))
    return images, all_seeded


def _folder_side(root: Path) -> list[SideImage]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for path in files:
        caption = path.with_suffix(".txt")
        prompt = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
        images.append(SideImage(prompt, None, path, path.relative_to(root).as_posix()))
    return images


def read_side(root: str | Path, label: str) -> tuple[list[SideImage], bool]:
    """The images of one side (a dataset directory or a folder), and whether all have seeds.

    Raises:
        StudyError: the directory is missing, holds no image, or is a malformed dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise StudyError(f"--{label.lower()} {root}: not a directory")
    if (root / "records.parquet").is_file():
        images, seeded = _dataset_side(root, label)
    else:
        images, seeded = _folder_side(root), False
    if not images:
        raise StudyError(
            f"--{label.lower()} {root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and no records.parquet"
        )
    return images, seeded


def _index(images: list[SideImage], by_seed: bool, label: str, root: Path) -> dict[tuple, SideImage]:
    out: dict[tuple, SideImage] = {}
    for image in images:
        key = (image.prompt, str(image.seed)) if by_seed else (image.name,)
        if key in out:
            what = (
                f"prompt {image.prompt[:50]!r} with seed {image.seed}" if by_seed else f"file {image.name!r}"
            )
            raise StudyError(f"--{label.lower()} {root}: {what} twice; each key must name one image")
        out[key] = image
    return out


def plan_pairs(a: str | Path, b: str | Path) -> PairPlan:
    """Pair the images of A and B (by prompt and seed when both record seeds, else by file name).

    Raises:
        StudyError: when a key of one side has no partner in the other (the message counts
            them per side and names one of each), or a key repeats within a side.
    """
    images_a, seeded_a = read_side(a, "A")
    images_b, seeded_b = read_side(b, "B")
    by_seed = seeded_a and seeded_b
    index_a = _index(images_a, by_seed, "A", Path(a))
    index_b = _index(images_b, by_seed, "B", Path(b))
    only_a = [k for k in index_a if k not in index_b]
    only_b = [k for k in index_b if k not in index_a]
    matched_by = MATCH_SEED if by_seed else MATCH_NAME
    if only_a or only_b:

        def show(key: tuple) -> str:
            return f"(prompt {key[0][:50]!r}, seed {key[1]})" if by_seed else repr(key[0])

        parts = [f"{len(only_a)} only in A" + (f", e.g. {show(only_a[0])}" if only_a else "")]
        parts.append(f"{len(only_b)} only in B" + (f", e.g. {show(only_b[0])}" if only_b else ""))
        raise StudyError(
            f"images of --a {a} and --b {b} do not pair up by {matched_by}: "
            + "; ".join(parts)
            + "; give two sets of the same prompts and seeds (or the same file names)"
        )
    pairs = []
    for key, image_a in index_a.items():
        image_b = index_b[key]
        if not image_a.prompt and image_b.prompt:
            image_a = SideImage(image_b.prompt, image_a.seed, image_a.path, image_a.name)
        pairs.append((image_a, image_b))
    without_prompt = sum(1 for image_a, _ in pairs if not image_a.prompt)
    return PairPlan(pairs, matched_by, without_prompt)


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_pair_study(
    plan: PairPlan, study_dir: str | Path, *, a: str | Path, b: str | Path, seed: int
) -> int:
    """Write the pairs into ``study_dir`` as a pair-kind dataset; returns the number of pairs.

    Args:
        plan: From :func:`plan_pairs`.
        study_dir: A new (or empty) directory.
        a, b: The two sides, recorded in each record's ``meta`` (server side only).
        seed: Seeds the order of the records and the random tokens of the file names.

    Raises:
        StudyError: ``study_dir`` exists and is not empty.
    """
    from prefalign.data.dataset import Record, save_dataset

    study_dir = Path(study_dir)
    if study_dir.exists() and any(study_dir.iterdir()):
        raise StudyError(f"{study_dir}: exists and is not empty; --a/--b need a new study directory")
    rng = random.Random(seed)
    order = list(range(len(plan.pairs)))
    rng.shuffle(order)  # record order must not follow A's file order either
    (study_dir / "images").mkdir(parents=True, exist_ok=True)
    records = []
    width = max(5, len(str(len(order))))
    for number, index in enumerate(order, start=1):
        image_a, image_b = plan.pairs[index]
        record_id = f"pair-{number:0{width}d}"
        names = []
        for image in (image_a, image_b):
            if not image.path.is_file():
                raise StudyError(f"{image.path}: image file not found")
            name = f"images/{record_id}-{rng.getrandbits(48):012x}{image.path.suffix.lower()}"
            _place(image.path, study_dir / name)
            names.append(name)
        meta: dict[str, object] = {"a": str(image_a.path), "b": str(image_b.path), "pair_key": image_a.name}
        if plan.matched_by == MATCH_SEED:
            meta["seed"] = image_a.seed
        records.append(
            Record(id=record_id, prompt=image_a.prompt, images=names, source="annotate:pairs", meta=meta)
        )
    save_dataset(records, study_dir)
    return len(records)
