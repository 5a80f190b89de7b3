"""A YAML recipe with ``learning_rate: 1e-5`` trains every train/ trainer (issue 13).

PyYAML reads ``1e-5`` as the string '1e-5' (YAML 1.1 wants a dot); the shared parser types it.
"""

from __future__ import annotations

import json

import pytest
import yaml

from prefalign.cli.main import main

from .conftest import SHAPE_FAMILY_WORDS


def _lrs(out):
    rows = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    return [r["lr"] for r in rows if "lr" in r]


def test_train_scorer_from_a_recipe_with_1e_5(tiny_clip32, small_choice_data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"data: {small_choice_data}\nbase: {tiny_clip32}\nlearning_rate: 1e-5\nmax_steps: 2\n"
        "per_device_train_batch_size: 4\nvision_blocks: 1\ntext_blocks: 1\neval_fraction: 0.25\n"
        "eval_steps: 0\neval_at_start: false\nsave_steps: 0\nprogress: false\nlr_scheduler_type: constant\n"
    )
    out = tmp_path / "model"
    assert main(["train", "scorer", "--config", str(recipe), "--output_dir", str(out)]) == 0
    used = yaml.safe_load((out / "training_config.yaml").read_text())
    assert used["learning_rate"] == 1e-5 and used["max_steps"] == 2
    assert _lrs(out) == [pytest.approx(1e-5)] * 2


def test_train_reward_from_a_recipe_with_1e_5(tiny_clip32, small_rating_data, tmp_path):
    family = tmp_path / "family.yaml"
    family.write_text(json.dumps(SHAPE_FAMILY_WORDS))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"data: {small_rating_data}\nbase: {tiny_clip32}\nfamily: {family}\nlearning_rate: 1e-5\n"
        "max_steps: 2\nhidden_size: 16\neval_fraction: 0.25\neval_steps: 0\neval_at_start: false\n"
        "save_steps: 0\nprogress: false\nlr_scheduler_type: constant\n"
    )
    out = tmp_path / "reward"
    assert main(["train", "reward", "--config", str(recipe), "--output_dir", str(out)]) == 0
    used = yaml.safe_load((out / "training_config.yaml").read_text())
    assert used["learning_rate"] == 1e-5
    assert _lrs(out) == [pytest.approx(1e-5)] * 2
