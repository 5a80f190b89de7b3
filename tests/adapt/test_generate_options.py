"""`generate --dtype / --lora-scale`, the progress bar, and single-file bases."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prefalign.adapt.base_model import load_pipeline
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.generate import GenerationSettings, generate
from prefalign.data import load_dataset
from tests.adapt.test_export_lora import _random_adapter


def _pixels(out):
    ds = load_dataset(out)
    return np.stack([np.asarray(Image.open(ds.image_path(r.images[0])), dtype=np.float64) for r in ds])


def test_lora_scale_zero_is_the_base_and_one_the_adapter(tmp_path, tiny_sd):
    adapter = _random_adapter(tiny_sd, tmp_path / "adapter")
    run = {"prompts": ["a red circle"], "seeds": [0]}
    fast = {"steps": 2}
    generate(tiny_sd, out=tmp_path / "base", settings=GenerationSettings(**fast), **run)
    generate(tiny_sd, out=tmp_path / "one", lora=adapter, settings=GenerationSettings(**fast), **run)
    generate(
        tiny_sd,
        out=tmp_path / "zero",
        lora=adapter,
        settings=GenerationSettings(lora_scale=0.0, **fast),
        **run,
    )
    generate(
        tiny_sd,
        out=tmp_path / "half",
        lora=adapter,
        settings=GenerationSettings(lora_scale=0.5, **fast),
        **run,
    )
    base, one, zero, half = (_pixels(tmp_path / n) for n in ("base", "one", "zero", "half"))
    assert np.abs(one - base).max() > 5  # the adapter shows
    assert np.abs(zero - base).max() <= 1  # scale 0: the base (up to PNG rounding)
    assert np.abs(half - base).max() > 1 and np.abs(half - one).max() > 1
    assert load_dataset(tmp_path / "half")[0].meta["lora_scale"] == 0.5
    with pytest.raises(AdaptError, match="--lora-scale needs --lora"):
        generate(tiny_sd, out=tmp_path / "x", settings=GenerationSettings(lora_scale=0.5), **run)


def test_dtype_progress_bar_and_fp16_on_cpu(tmp_path, tiny_sd, capsys):
    from prefalign.cli.main import main

    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    argv = ["generate", "--base", str(tiny_sd), "--prompts", str(tmp_path / "p.txt"), "--steps", "2"]
    assert main([*argv, "--out", str(tmp_path / "bf16"), "--dtype", "bf16", "--seeds", "0-1"]) == 0
    err = capsys.readouterr().err
    assert "generate: 100%" in err and "4/4" in err  # the progress bar, one tick per image
    assert load_dataset(tmp_path / "bf16")[0].meta["dtype"] == "bf16"
    assert main([*argv, "--out", str(tmp_path / "fp16"), "--dtype", "fp16"]) == 2
    assert "fp16 needs a GPU" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "generate:" not in capsys.readouterr().err


def test_single_file_base_is_dispatched_with_a_clear_error(tmp_path, tiny_sd):
    with pytest.raises(AdaptError, match="no such checkpoint file"):
        load_pipeline(tmp_path / "missing.safetensors")
    import torch
    from safetensors.torch import save_file

    save_file({"not_a_unet": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(AdaptError) as info:
        load_pipeline(tmp_path / "model.safetensors")
    message = str(info.value)
    assert "\n" not in message and "model.safetensors: cannot load" in message and "single-file" in message
