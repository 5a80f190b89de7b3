"""Fixtures for scorer tests: tiny model directories in the prefalign format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_hps_dir(tiny_clip_dir, tmp_path_factory) -> Path:
    from prefalign.scoring import convert_checkpoint

    return convert_checkpoint("hf-clip", tiny_clip_dir, tmp_path_factory.mktemp("m") / "hps", kind="hps")


@pytest.fixture
def images() -> list[Image.Image]:
    rng = np.random.RandomState(0)
    return [Image.fromarray(rng.randint(0, 255, (40, 30 + 5 * i, 3), np.uint8)) for i in range(5)]
