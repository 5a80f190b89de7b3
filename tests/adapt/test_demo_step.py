"""The demo's adaptation step runs the whole loop on tiny models and reports the comparison."""

from __future__ import annotations

from prefalign.data import load_dataset
from prefalign.demo import DemoContext, step_adapt, step_scorer


def test_demo_adapt_step(tmp_path):
    ctx = DemoContext(tmp_path)
    step_scorer(ctx)
    step_adapt(ctx)
    section = ctx.sections[-1]
    assert "mean HPS adapted" in section and "Weird image. " in section
    base, adapted = load_dataset(ctx.artifacts["gen_base"]), load_dataset(ctx.artifacts["gen_adapted"])
    assert [(r.prompt, r.meta["seed"]) for r in base] == [(r.prompt, r.meta["seed"]) for r in adapted]
    assert {r.meta["negative_prompt"] for r in adapted} == {"Weird image."}
    assert (ctx.artifacts["lora"] / "pytorch_lora_weights.safetensors").is_file()
