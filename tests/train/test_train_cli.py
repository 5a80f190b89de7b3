"""``prefalign train scorer|reward`` and ``prefalign data prompts compositional`` from the command line."""

from __future__ import annotations

import dataclasses
import json

import pytest

from prefalign.cli.main import main
from prefalign.scoring import load_scorer
from prefalign.train import PreferenceConfig, RewardConfig

from .conftest import SHAPE_FAMILY_WORDS

TINY = [
    "--vision-blocks",
    "1",
    "--text-blocks",
    "1",
    "--learning-rate",
    "1e-3",
    "--no-progress",
    "--eval-fraction",
    "0.25",
]


@pytest.mark.parametrize("kind, config_cls", [("scorer", PreferenceConfig), ("reward", RewardConfig)])
def test_every_config_field_is_an_option(kind, config_cls, capsys):
    with pytest.raises(SystemExit):
        main(["train", kind, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(config_cls):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "--config" in text


def test_train_scorer_from_a_yaml_recipe_with_overrides(tiny_clip32, small_choice_data, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"data: {small_choice_data}\nbase: {tiny_clip32}\nper_device_train_batch_size: 4\nmax_steps: 5\nseed: 3\n"
    )
    out = tmp_path / "model"
    assert (
        main(
            ["train", "scorer", "--config", str(recipe), *TINY, "--max-steps", "2", "--output_dir", str(out)]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "held-out accuracy" in captured.err
    used = PreferenceConfig.from_yaml(out / "training_config.yaml")
    assert (used.max_steps, used.per_device_train_batch_size, used.seed, used.vision_blocks) == (
        2,
        4,
        3,
        1,
    )  # flag beats file
    assert load_scorer(out, device="cpu").kind == "hps"


def test_train_reward_from_the_command_line(trained_preference, small_rating_data, tmp_path, capsys):
    _, preference = trained_preference
    family = tmp_path / "family.yaml"
    family.write_text(json.dumps(SHAPE_FAMILY_WORDS))  # JSON is YAML
    out = tmp_path / "reward"
    args = ["train", "reward", "--data", str(small_rating_data), "--base", str(preference.model_dir)]
    args += [
        "--output_dir",
        str(out),
        "--family",
        str(family),
        "--max-steps",
        "3",
        "--hidden-size",
        "32",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "held-out pairwise accuracy" in capsys.readouterr().err
    scorer = load_scorer(out, device="cpu")
    assert scorer.kind == "reward" and scorer.head.dims[1] == 32


def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_clip32, capsys):
    from prefalign.data import save_dataset

    empty = save_dataset([], tmp_path / "empty")
    assert (
        main(
            [
                "train",
                "scorer",
                "--data",
                str(empty),
                "--base",
                str(tiny_clip32),
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "has no records" in capsys.readouterr().err
    assert main(["train", "scorer", "--base", str(tiny_clip32)]) == 2
    assert "data is required" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: x\noutput_dir: y\nbatchsize: 3\n")
    assert main(["train", "reward", "--config", str(recipe)]) == 2
    assert "batchsize" in capsys.readouterr().err


def test_ctrl_c_from_the_command_line_exits_130_with_the_checkpoint(
    tiny_clip32, small_choice_data, tmp_path, capsys, monkeypatch
):
    import signal

    from prefalign.train.loop import Trainer

    original = Trainer.reduce_metrics  # the shared core's, called once per optimizer step

    def press_ctrl_c(self, values):
        signal.raise_signal(signal.SIGINT)
        return original(self, values)

    monkeypatch.setattr(Trainer, "reduce_metrics", press_ctrl_c)
    out = tmp_path / "m"
    args = [
        "train",
        "scorer",
        "--data",
        str(small_choice_data),
        "--base",
        str(tiny_clip32),
        "--output_dir",
        str(out),
        *TINY,
    ]
    assert main([*args, "--max-steps", "4"]) == 130
    assert "--resume_from_checkpoint" in capsys.readouterr().err
    assert (tmp_path / "m.checkpoints" / "step-0000001").is_dir()
    monkeypatch.setattr(Trainer, "reduce_metrics", original)
    assert main([*args, "--max-steps", "4", "--resume_from_checkpoint"]) == 0
    assert (
        len([line for line in (out / "training_log.jsonl").read_text().splitlines() if '"train"' in line])
        == 4
    )


def test_prompts_compositional(tmp_path, capsys):
    from prefalign.train.prompts import CompositionalFamily, compositional_prompts

    total = len(list(compositional_prompts(CompositionalFamily())))
    assert main(["data", "prompts", "compositional", "--out", str(tmp_path / "p.txt")]) == 0
    lines = (tmp_path / "p.txt").read_text().splitlines()
    assert len(lines) == total and "two green dogs in the forest" in lines

    assert (
        main(
            ["data", "prompts", "compositional", "--categories", "count", "--out", str(tmp_path / "p.jsonl")]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rows and all(r["category"] == "count" and r["colour"] is None for r in rows)

    assert (
        main(
            [
                "data",
                "prompts",
                "compositional",
                "--sample",
                "10",
                "--seed",
                "1",
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 11
    assert main(["data", "prompts", "compositional", "--out", str(tmp_path / "p.pdf")]) == 2
    capsys.readouterr()
