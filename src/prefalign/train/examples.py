"""From dataset records to training examples, with every skipped record counted and explained.

The preference classifier learns from n-way choices: a record's ``chosen`` index, the best of a
ranking (ties for the best are skipped: they say nothing about which one wins), or a pair
(a ranking of two). The reward model learns from per-image labels in ``ratings``. Records that
cannot be used are skipped with a reason; the trainers report the counts before training and
stop with a clear error when nothing usable is left.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.data.dataset import Dataset, Record, load_dataset
from prefalign.errors import PrefalignError

logger = logging.getLogger(__name__)

# Records with these splits are evaluated on during training; "test" records are never used.
VALIDATION_SPLITS = ("validation", "val", "valid", "dev")
TEST_SPLITS = ("test",)


class TrainingDataError(PrefalignError, ValueError):
    """A training set that cannot train anything (empty, or every record unusable)."""


@dataclass
class SkipReport:
    """Why records (or images) were left out, with a few ids of each kind."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, what: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(what)

    def merge(self, other: SkipReport) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            for what in other.examples.get(reason, []):
                if len(self.examples.setdefault(reason, [])) < 3:
                    self.examples[reason].append(what)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line per reason: ``12 skipped: chosen index out of range (e.g. r3, r9)``."""
        return "\n".join(
            f"{n} skipped: {reason} (e.g. {', '.join(self.examples.get(reason, []))})"
            for reason, n in self.counts.most_common()
        )

    def to_dict(self) -> dict[str, int]:
        return dict(self.counts)


@dataclass
class ChoiceExample:
    """One n-way choice: a prompt, its images (resolved paths) and the preferred index."""

    prompt: str
    images: list[str]
    chosen: int
    id: str = ""


@dataclass
class RatedImage:
    """One image with its label in [0, 1] (1 = good) for the prompt it was generated from."""

    prompt: str
    image: str
    label: float
    id: str = ""


def record_choice(record: Record) -> tuple[int | None, str | None]:
    """The preferred index of a record and None, or None and why the record says no choice."""
    n = len(record.images)
    if record.chosen is not None:
        if not 0 <= record.chosen < n:
            return None, "chosen index out of range"
        return int(record.chosen), None
    if record.ranks is not None:
        if len(record.ranks) != n:
            return None, "ranks and images differ in length"
        best = min(record.ranks)
        if list(record.ranks).count(best) > 1:
            return None, "tie for the best image"
        return int(list(record.ranks).index(best)), None
    return None, "no choice or ranking"


def check_image(path: str) -> str | None:
    """Why an image cannot be used (cheap: the file and its header only), or None."""
    if "://" in path:
        return "image is a URL (download it into the dataset first)"
    p = Path(path)
    if not p.is_file():
        return "image file not found"
    if p.stat().st_size == 0:
        return "image file is empty"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as img:
            img.size  # noqa: B018 - reading the header is the check
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        return f"image cannot be read ({type(exc).__name__})"
    return None


def choice_examples(dataset: Dataset, *, check_images: bool = True) -> tuple[list[ChoiceExample], SkipReport]:
    """Every usable n-way choice of ``dataset`` (n >= 2), and the report of what was skipped."""
    skips = SkipReport()
    out: list[ChoiceExample] = []
    for i, rec in enumerate(dataset):
        rid = rec.id or str(i)
        if not rec.prompt or not rec.prompt.strip():
            skips.add("empty prompt", rid)
            continue
        if len(rec.images) < 2:
            skips.add("fewer than two images (a choice needs at least two)", rid)
            continue
        chosen, reason = record_choice(rec)
        if reason:
            skips.add(reason, rid)
            continue
        paths = [dataset.image_path(img) for img in rec.images]
        problem = next((p for p in (check_image(x) for x in paths) if p), None) if check_images else None
        if problem:
            skips.add(problem, rid)
            continue
        out.append(ChoiceExample(rec.prompt, paths, chosen, rid))
    return out, skips


def rated_images(dataset: Dataset, *, check_images: bool = True) -> tuple[list[RatedImage], SkipReport]:
    """Every labelled image of ``dataset`` (labels from ``ratings``, in [0, 1])."""
    skips = SkipReport()
    out: list[RatedImage] = []
    for i, rec in enumerate(dataset):
        rid = rec.id or str(i)
        if not rec.prompt or not rec.prompt.strip():
            skips.add("empty prompt", rid)
            continue
        if not rec.images:
            skips.add("no images", rid)
            continue
        if rec.ratings is None:
            skips.add("no ratings (the reward model learns from per-image labels)", rid)
            continue
        if len(rec.ratings) != len(rec.images):
            skips.add("ratings and images differ in length", rid)
            continue
        for k, (img, label) in enumerate(zip(rec.images, rec.ratings)):
            what = f"{rid}[{k}]"
            if label is None or math.isnan(label):
                skips.add("image without a label", what)
                continue
            if not 0.0 <= label <= 1.0:
                skips.add("label outside [0, 1] (binarise graded ratings first)", what)
                continue
            path = dataset.image_path(img)
            problem = check_image(path) if check_images else None
            if problem:
                skips.add(problem, what)
                continue
            out.append(RatedImage(rec.prompt, path, float(label), what))
    return out, skips


def split_records(
    data: str | Path, eval_data: str | Path | None, eval_fraction: float, seed: int
) -> tuple[Dataset, Dataset]:
    """The training and held-out datasets.

    Held out: ``eval_data`` if given, else the records whose split is a validation split, else a
    seeded random ``eval_fraction`` of the records. Records of the test split are never used.
    """
    dataset = load_dataset(data)
    if len(dataset) == 0:
        raise TrainingDataError(f"{data}: the dataset has no records")
    records = [r for r in dataset if (r.split or "").lower() not in TEST_SPLITS]
    if eval_data is not None:
        held = load_dataset(eval_data)
        return Dataset(dataset.root, records), held
    validation = [r for r in records if (r.split or "").lower() in VALIDATION_SPLITS]
    if validation:
        train = [r for r in records if (r.split or "").lower() not in VALIDATION_SPLITS]
        return Dataset(dataset.root, train), Dataset(dataset.root, validation)
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = int(round(eval_fraction * len(records)))
    if eval_fraction > 0 and len(records) >= 2:
        n_eval = max(1, n_eval)
    held_idx = set(order[:n_eval])
    train = [r for i, r in enumerate(records) if i not in held_idx]
    held = [r for i, r in enumerate(records) if i in held_idx]
    return Dataset(dataset.root, train), Dataset(dataset.root, held)


def require_examples(examples: list, skips: SkipReport, data: str | Path, what: str) -> None:
    """Log the skip summary; raise when nothing usable is left."""
    if skips.total:
        logger.warning("%s: %d %s skipped:\n%s", data, skips.total, what, skips.summary())
    if not examples:
        detail = f":\n{skips.summary()}" if skips.total else ""
        raise TrainingDataError(f"{data}: no usable training {what}{detail}")
