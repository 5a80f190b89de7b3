"""Synthetic images and choice datasets whose preferred image is decidable from the prompt."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from prefalign.data.dataset import Record, save_dataset

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 60, 220),
    "yellow": (240, 220, 40),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(
    shape: str, colour: str, background: str = "white", size: int = 64, jitter: int = 0
) -> Image.Image:
    """A ``size`` x ``size`` RGB image of one coloured shape on a plain background."""
    img = Image.new("RGB", (size, size), BACKGROUNDS[background])
    draw = ImageDraw.Draw(img)
    m = size // 5 + jitter
    box = (m, m, size - m, size - m)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return img


def make_choice_dataset(
    directory: str | Path,
    n_records: int,
    *,
    n_images: int | tuple[int, ...] = 2,
    size: int = 64,
    seed: int = 0,
    source: str = "synthetic",
) -> Path:
    """Write a choice dataset: each prompt names a colour and shape; only the chosen image shows it.

    ``n_images`` may be a tuple to mix record sizes (e.g. ``(2, 3, 4)``).
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sizes = n_images if isinstance(n_images, tuple) else (n_images,)
    combos = [(s, c) for s in SHAPES for c in COLOURS]
    records = []
    for r in range(n_records):
        n = rng.choice(sizes)
        picks = rng.sample(combos, n)
        chosen = rng.randrange(n)
        shape, colour = picks[chosen]
        background = rng.choice(list(BACKGROUNDS))
        paths = []
        for i, (s, c) in enumerate(picks):
            rel = f"images/{r:05d}_{i}.png"
            draw_shape(s, c, background, size, jitter=rng.randint(-2, 2)).save(directory / rel)
            paths.append(rel)
        records.append(
            Record(
                id=f"{source}-{r}",
                prompt=f"a {colour} {shape} on a {background} background",
                images=paths,
                chosen=chosen,
                user=f"user{rng.randrange(5)}",
                source=source,
            )
        )
    save_dataset(records, directory)
    return directory


def make_rating_dataset(
    directory: str | Path,
    n_records: int,
    *,
    n_images: int | tuple[int, ...] = (2, 3, 4),
    size: int = 64,
    seed: int = 0,
    mistakes: tuple[str, ...] = ("shape", "colour", "background"),
    source: str = "synthetic-ratings",
) -> Path:
    """Write a dataset of binary labels (Lee et al.): an image is good when it shows its prompt.

    Each prompt names a colour, a shape and a background ("a red circle on a white
    background"). A good image (rating 1.0) shows exactly that; a bad one (rating 0.0) changes
    one of ``mistakes`` (shape, colour, background), as a generator that missed part of the
    prompt would. Every record has at least one good and one bad image.
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sizes = n_images if isinstance(n_images, tuple) else (n_images,)
    records = []
    for r in range(n_records):
        shape, colour, background = (
            rng.choice(SHAPES),
            rng.choice(list(COLOURS)),
            rng.choice(list(BACKGROUNDS)),
        )
        n = max(2, rng.choice(sizes))
        labels = [1.0, 0.0] + [float(rng.random() < 0.5) for _ in range(n - 2)]
        rng.shuffle(labels)
        paths = []
        for i, label in enumerate(labels):
            s, c, b = shape, colour, background
            if label == 0.0:  # change one attribute of the prompt
                which = rng.choice(mistakes)
                if which == "shape":
                    s = rng.choice([x for x in SHAPES if x != shape])
                elif which == "colour":
                    c = rng.choice([x for x in COLOURS if x != colour])
                elif which == "background":
                    b = next(x for x in BACKGROUNDS if x != background)
                else:
                    raise ValueError(f"unknown mistake {which!r}; expected shape, colour or background")
            rel = f"images/{r:05d}_{i}.png"
            draw_shape(s, c, b, size, jitter=rng.randint(-2, 2)).save(directory / rel)
            paths.append(rel)
        records.append(
            Record(
                id=f"{source}-{r}",
                prompt=f"a {colour} {shape} on a {background} background",
                images=paths,
                ratings=labels,
                source=source,
            )
        )
    save_dataset(records, directory)
    return directory
