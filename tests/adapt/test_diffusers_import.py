"""Diffusion commands print no torchvision warning for image processors they never use, and hide nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# After the command, the same process emits one Python warning and one transformers warning: both must show.
_SCRIPT = """
import sys, warnings
from prefalign.cli.main import main
code = main(sys.argv[1:])
warnings.warn("canary-python-warning", UserWarning)
from transformers.utils import logging as tlogging
tlogging.get_logger("transformers").warning("canary-transformers-warning")
sys.exit(code)
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_generate_prints_no_torchvision_warning_and_keeps_others(tmp_path, tiny_sd):
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision is installed: transformers has nothing to warn about")
    (tmp_path / "prompts.txt").write_text("a red square\n")
    args = ["generate", "--base", str(tiny_sd), "--prompts", "prompts.txt", "--out", "gen", "--steps", "2"]
    result = _run([*args, "--device", "cpu", "--no-progress"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "torchvision" not in result.stderr
    assert "canary-python-warning" in result.stderr and "canary-transformers-warning" in result.stderr


def test_binding_is_what_transformers_falls_back_to():
    """The names resolve to the same PIL classes transformers' own fallback returns."""
    import transformers

    from prefalign.adapt.diffusers_import import UNUSED_IMAGE_PROCESSORS, bind_pil_image_processors

    bind_pil_image_processors()
    for name in UNUSED_IMAGE_PROCESSORS:
        if transformers.utils.is_torchvision_available():
            continue
        assert getattr(sys.modules["transformers"], name) is getattr(transformers, f"{name}Pil")
