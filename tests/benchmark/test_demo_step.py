"""The demo's benchmark step: a base and a LoRA-adapted tiny model on a leaderboard."""

from __future__ import annotations

import json

import torch

from prefalign.demo import DemoContext, step_benchmark, step_scorer


def _random_lora(base, out):
    """A rank-4 LoRA with random B (so it changes the images), saved as `adapt train-lora` saves."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from prefalign.adapt.adapter import save_lora_adapter

    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return save_lora_adapter(unet, out, {"method": "test", "identifier": "Weird image. "})


def test_demo_benchmark_step(tmp_path):
    from prefalign.testing.diffusion import save_tiny_sd

    ctx = DemoContext(tmp_path)
    step_scorer(ctx)
    ctx.artifacts["sd"] = save_tiny_sd(tmp_path / "models" / "tiny-sd")
    ctx.artifacts["lora"] = _random_lora(ctx.artifacts["sd"], tmp_path / "lora")
    step_benchmark(ctx)
    section = ctx.sections[-1]
    assert "benchmark run" in section and "| 1 |" in section and "| 2 |" in section
    board = json.loads((tmp_path / "benchmark" / "leaderboard.json").read_text())
    assert sorted(board["ranking"]) == ["adapted", "base"]
    assert board["results"]["base"]["tiny-hps"]["n_images"] == 12
    assert board["results"]["base"]["tiny-hps"]["mean"] != board["results"]["adapted"]["tiny-hps"]["mean"]
    assert set(board["categories"]["tiny-hps"]["base"]) == {"shapes", "animals"}
    assert len(list((tmp_path / "benchmark" / "images" / "adapted").glob("*.png"))) == 12
