"""The demo's Table 2 step: random, the tiny scorer as CLIP score and as HPS, with a report."""

from __future__ import annotations

from prefalign.demo import DemoContext, step_evaluate


def test_demo_gains_the_table_2_comparison(choice_data, tiny_hps_model, tmp_path, capsys):
    ctx = DemoContext(tmp_path, artifacts={"data": choice_data, "scorer": tiny_hps_model})
    step_evaluate(ctx)
    section = ctx.sections[-1]
    assert (
        "| random |" in section
        and f"| clip:{tiny_hps_model.name} |" in section
        and "Random baseline" in section
    )
    assert ctx.artifacts["eval_report"].exists()
    assert (tmp_path / "eval-preference" / "plots" / "accuracy.png").exists()
