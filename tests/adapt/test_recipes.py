"""A YAML recipe with ``learning_rate: 1e-5`` trains every adapt/ trainer (issue 13).

Before, ``adapt train-lora --config recipe.yaml`` passed PyYAML's string '1e-5' to AdamW and
died with a traceback.
"""

from __future__ import annotations

import json

from prefalign.cli.main import main

TINY = "max_steps: 1\nper_device_train_batch_size: 2\nresolution: 32\nrank: 4\ncpu: true\nsave_steps: 0\n"


def _recipe(tmp_path, data, base, extra=""):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data: {data}\nbase: {base}\nlearning_rate: 1e-5\nlogging_steps: 1\n{TINY}{extra}")
    return recipe


def test_train_lora_from_a_recipe_with_1e_5(tmp_path, shapes_data, tiny_sd):
    out = tmp_path / "lora"
    recipe = _recipe(tmp_path, shapes_data, tiny_sd)
    assert main(["adapt", "train-lora", "--config", str(recipe), "--output_dir", str(out)]) == 0
    config = json.loads((out / "prefalign_adapter.json").read_text())["config"]
    assert config["learning_rate"] == 1e-5 and isinstance(config["learning_rate"], float)
    assert len((out / "training_log.jsonl").read_text().splitlines()) == 1


def test_train_rwr_from_a_recipe_with_1e_5(tmp_path, shapes_data, tiny_sd, tiny_hps):
    out = tmp_path / "rwr"
    recipe = _recipe(tmp_path, shapes_data, tiny_sd, f"reward: {tiny_hps}\ntrain: lora\n")
    assert main(["adapt", "train-rwr", "--config", str(recipe), "--output_dir", str(out)]) == 0
    config = json.loads((out / "prefalign_adapter.json").read_text())["config"]
    assert config["learning_rate"] == 1e-5 and isinstance(config["learning_rate"], float)
    assert (out / "training_log.jsonl").is_file()
