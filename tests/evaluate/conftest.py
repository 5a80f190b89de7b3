"""Fixtures of the evaluation tests: a tiny HPS model and a small synthetic choice dataset."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_hps_model(tiny_clip_dir, tmp_path_factory) -> Path:
    from prefalign.scoring import convert_checkpoint

    return convert_checkpoint(
        "hf-clip", tiny_clip_dir, tmp_path_factory.mktemp("eval-model") / "hps", kind="hps"
    )


@pytest.fixture(scope="session")
def choice_data(tmp_path_factory) -> Path:
    """12 choices among 2 to 4 images of 32 px."""
    from prefalign.testing import make_choice_dataset

    return make_choice_dataset(
        tmp_path_factory.mktemp("eval-data") / "choices", 12, n_images=(2, 3, 4), size=32
    )


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Tiny models run faster on one thread, and far faster when the cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
