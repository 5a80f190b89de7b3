"""Small fixed inputs for the evaluation tests, importable by spawned worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from prefalign.data import Record, save_dataset

FEATURE_SIZE = 16  # the square input of the tiny feature extractor


class TinyFeatures(nn.Module):
    """A seeded tiny network standing in for Inception: uint8 (n, 3, s, s) -> (n, 6) features."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, kernel_size=3, stride=2)
        self.head = nn.Linear(4 * 4, 6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        x = nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)
        return self.head(x) * 3.0


def tiny_features() -> nn.Module:
    """The factory ``--feature-extractor tests.evaluate.helpers:tiny_features`` names."""
    return TinyFeatures().eval()


def noise_images(
    directory: Path, n: int, *, seed: int, size: int = 24, low: int = 0, high: int = 256
) -> list[Path]:
    """``n`` random PNGs whose pixel range sets the distribution (so two sets can differ)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = directory / f"img{i:03d}.png"
        Image.fromarray(rng.integers(low, high, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def generated_set(directory: Path, prompts: list[str], seeds: list[int], *, seed: int, order=None) -> Path:
    """A generated set: one record per (prompt, seed) with ``meta["seed"]``, one image each."""
    paths = noise_images(directory / "images", len(prompts), seed=seed)
    records = [
        Record(prompt=p, images=[f"images/{path.name}"], meta={"seed": s})
        for p, s, path in zip(prompts, seeds, paths)
    ]
    if order is not None:
        records = [records[i] for i in order]
    save_dataset(records, directory)
    return directory


def votes_dataset(directory: Path, votes: list[tuple[str, str, tuple[str, str], int | None]]) -> Path:
    """A votes dataset: (user, item, (image a, image b), chosen or None for a tie) per record."""
    records = []
    for k, (user, item, images, chosen) in enumerate(votes):
        records.append(
            Record(
                id=f"v{k}",
                prompt=f"prompt of {item}",
                images=list(images),
                chosen=chosen,
                ranks=[0, 0] if chosen is None else None,
                user=user,
                meta={"item": item},
            )
        )
    save_dataset(records, directory)
    return directory
