"""The demo's adaptation steps run the whole loop on tiny models and the eval compare report."""

from __future__ import annotations

from prefalign.data import load_dataset
from prefalign.demo import DemoContext, step_adapt, step_compare, step_scorer


def test_demo_adapt_step(tmp_path):
    ctx = DemoContext(tmp_path)
    step_scorer(ctx)
    step_adapt(ctx)
    step_compare(ctx)
    adapt_section, compare_section = ctx.sections[-2:]
    assert "Weird image. " in adapt_section
    assert "B win rate" in compare_section and (tmp_path / "eval-compare").is_dir()
    base, adapted = load_dataset(ctx.artifacts["gen_base"]), load_dataset(ctx.artifacts["gen_adapted"])
    assert [(r.prompt, r.meta["seed"]) for r in base] == [(r.prompt, r.meta["seed"]) for r in adapted]
    assert {r.meta["negative_prompt"] for r in adapted} == {"Weird image."}
    assert (ctx.artifacts["lora"] / "pytorch_lora_weights.safetensors").is_file()
