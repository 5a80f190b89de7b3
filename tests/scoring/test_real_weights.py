"""Checks on the real released checkpoints, for users who have them.

Set PREFALIGN_REAL_WEIGHTS=DIR, a directory holding any of the release files below and
`clip-vit-l-14/` / `clip-vit-h-14/` (tokenizer or full HF CLIP directories of the bases).
Without it these tests skip (see tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefalign.scoring import convert_checkpoint, load_scorer
from prefalign.testing import draw_shape

pytestmark = pytest.mark.real_weights

RELEASES = {
    "hpc.pt": ("hps-v1", "clip-vit-l-14"),
    "HPS_v2_compressed.pt": ("hps-v2", "clip-vit-h-14"),
    "HPS_v2.1_compressed.pt": ("hps-v2.1", "clip-vit-h-14"),
}


def weights_dir() -> Path:
    return Path(os.environ.get("PREFALIGN_REAL_WEIGHTS", "/nonexistent"))


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_release_converts_and_prefers_the_matching_prompt(release, tmp_path):
    src = weights_dir() / release
    family, base = RELEASES[release]
    if not src.exists() or not (weights_dir() / base).exists():
        pytest.skip(f"{src} or {weights_dir() / base} not present")
    scorer = load_scorer(
        convert_checkpoint(family, src, tmp_path / family, tokenizer=weights_dir() / base), device="cpu"
    )
    image = draw_shape("circle", "red", "white", size=256)
    right = float(scorer.score([image], "a red circle on a white background")[0])
    wrong = float(scorer.score([image], "a photo of a dog on the beach")[0])
    assert 0 < right <= 100 and right > wrong
