"""Two tiny Stable Diffusion "models" that differ in brightness, and a scorer that rewards it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.scoring import ScoreResult


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny UNet kernels run fastest on one thread on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_sd_with_brightness(directory: Path, shift: float) -> Path:
    """The tiny SD pipeline (seed 0) with the VAE decoder's output bias shifted by ``shift``: the
    same images, brighter (shift > 0) or darker (< 0)."""
    from diffusers import StableDiffusionPipeline

    from prefalign.testing.diffusion import tiny_sd_components

    components = tiny_sd_components(0)
    with torch.no_grad():
        components["vae"].decoder.conv_out.bias += shift
    pipe = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def dark_and_bright(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bench-sd")
    return save_sd_with_brightness(root / "dark", -0.4), save_sd_with_brightness(root / "bright", 0.4)


class BrightnessScorer:
    """A tiny scorer that rewards bright images: the mean pixel value in [0, 1] (ScorerLike)."""

    name = "brightness"
    kind = "brightness"
    uses_text = False

    def __init__(self):
        self.calls = 0

    def score_records(self, records: Iterable[tuple[str, Sequence[str]]], **_) -> ScoreResult:
        out = []
        for _, images in records:
            self.calls += len(images)
            out.append(
                np.array(
                    [np.asarray(Image.open(p).convert("L"), dtype=np.float64).mean() / 255 for p in images]
                )
            )
        return ScoreResult(out)


@pytest.fixture()
def brightness() -> BrightnessScorer:
    return BrightnessScorer()


@pytest.fixture(scope="session")
def tiny_hps(tmp_path_factory) -> Path:
    """A tiny random CLIP in the prefalign model format, kind hps (loaded by name, as users do)."""
    from prefalign.scoring import convert_checkpoint
    from prefalign.testing import save_tiny_clip

    root = tmp_path_factory.mktemp("bench-hps")
    hf = save_tiny_clip(root / "hf", image_size=32, patch_size=8)
    return convert_checkpoint("hf-clip", hf, root / "hps", kind="hps")


def write_prompts(path: Path, n: int = 6) -> Path:
    """A .tsv prompt file with two categories, words from the tiny tokenizer's vocabulary."""
    colours = ["red", "green", "blue", "yellow", "white", "black"]
    shapes = ["circle", "square"]
    lines = ["prompt\tcategory"]
    for i in range(n):
        shape = shapes[i % 2]
        lines.append(f"a {colours[i % len(colours)]} {shape}\t{shape}s")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
