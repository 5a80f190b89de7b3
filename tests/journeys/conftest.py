"""Tiny models for the day-one journeys, built in code (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread on a shared two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def tiny_clip32(tmp_path_factory) -> Path:
    from prefalign.testing import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip32") / "clip", image_size=32, patch_size=8)
