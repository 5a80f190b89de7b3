"""The demo's adaptation steps run the whole loop on tiny models and the eval compare reports."""

from __future__ import annotations

import math

from prefalign.data import load_dataset
from prefalign.demo import DemoContext, step_adapt, step_compare, step_dataset, step_dpo, step_scorer


def test_demo_adapt_and_dpo_steps(tmp_path):
    ctx = DemoContext(tmp_path)
    step_dataset(ctx)
    step_scorer(ctx)
    step_adapt(ctx)
    step_compare(ctx)
    step_dpo(ctx)
    adapt_section, compare_section, dpo_section = ctx.sections[-3:]
    assert "Weird image. " in adapt_section
    assert "B win rate" in compare_section and (tmp_path / "eval-compare").is_dir()
    base, adapted = load_dataset(ctx.artifacts["gen_base"]), load_dataset(ctx.artifacts["gen_adapted"])
    assert [(r.prompt, r.meta["seed"]) for r in base] == [(r.prompt, r.meta["seed"]) for r in adapted]
    assert {r.meta["negative_prompt"] for r in adapted} == {"Weird image."}
    assert (ctx.artifacts["lora"] / "pytorch_lora_weights.safetensors").is_file()
    # Diffusion-DPO: every pair of the choices, a run that starts at its reference, base vs DPO
    print(dpo_section)
    assert "Diffusion-DPO" in dpo_section and "DPO win rate" in dpo_section, dpo_section
    assert f"loss {math.log(2):.4f} at step 1" in dpo_section, dpo_section
    assert "implicit accuracy 0.50 at step 1" in dpo_section, dpo_section
    pairs = sum(len(r.images) - 1 for r in load_dataset(ctx.artifacts["data"]))  # chosen vs each other
    assert f"The {pairs} preference pairs" in dpo_section, dpo_section
    dpo = load_dataset(ctx.artifacts["gen_dpo"])
    assert [(r.prompt, r.meta["seed"]) for r in base] == [(r.prompt, r.meta["seed"]) for r in dpo]
    assert all(r.meta["lora"] for r in dpo) and (tmp_path / "eval-compare-dpo").is_dir()
    assert (ctx.artifacts["dpo"] / "pytorch_lora_weights.safetensors").is_file()
