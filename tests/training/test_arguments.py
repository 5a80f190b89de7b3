"""One vocabulary and one parser for every trainer (issue 13): names, typed recipes, errors, old names."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re

import pytest

from prefalign.training import ConfigError, TrainingConfig

COMMANDS = (
    ("train", "scorer"),
    ("train", "reward"),
    ("adapt", "train-lora"),
    ("adapt", "train-rwr"),
    ("adapt", "train-dpo"),
    ("adapt", "train-reward-backprop"),
)
SHARED = [f.name for f in dataclasses.fields(TrainingConfig)]


@functools.cache
def _parser() -> argparse.ArgumentParser:
    from prefalign.cli.main import build_parser

    return build_parser()


def _help(capsys, command) -> str:
    from prefalign.cli.main import main

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def _options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text))


def test_help_of_every_trainer_shows_the_same_names_for_the_same_settings(capsys):
    helps = {command: _options(_help(capsys, command)) for command in COMMANDS}
    expected = {f"--{name}" for name in SHARED}
    for command, options in helps.items():
        assert expected <= options, (command, sorted(expected - options))
    shared_shown = [
        sorted(o for o in options if o.removeprefix("--") in SHARED) for options in helps.values()
    ]
    assert all(s == shared_shown[0] for s in shared_shown)
    # the old spellings parse but are not advertised
    for old in (
        "--steps",
        "--batch-size",
        "--checkpoint-every",
        "--keep-checkpoints",
        "--num-epochs",
        "--out",
    ):
        assert all(old not in options for options in helps.values()), old


def _config(command, argv):
    from prefalign.training.arguments import config_from_args

    args = _parser().parse_args([*command, *argv])
    return config_from_args(_config_cls(command), args)


def _config_cls(command):
    from prefalign.adapt.config import LoraTrainingConfig, RewardWeightedConfig
    from prefalign.adapt.dpo import DPOConfig
    from prefalign.adapt.reward_backprop import RewardBackpropConfig
    from prefalign.train import PreferenceConfig, RewardConfig

    return {
        ("train", "scorer"): PreferenceConfig,
        ("train", "reward"): RewardConfig,
        ("adapt", "train-lora"): LoraTrainingConfig,
        ("adapt", "train-rwr"): RewardWeightedConfig,
        ("adapt", "train-dpo"): DPOConfig,
        ("adapt", "train-reward-backprop"): RewardBackpropConfig,
    }[command]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[1])
def test_yaml_recipe_values_are_typed_and_the_command_line_wins(command, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    # YAML 1.1 (PyYAML) reads 1e-5 as the string '1e-5': the parser must type it as the field.
    recipe.write_text("data: d\nbase: b\noutput_dir: o\nlearning_rate: 1e-5\nmax_steps: 7\nseed: 3\n")
    config = _config(command, ["--config", str(recipe), "--max_steps", "2"])
    assert type(config.learning_rate) is float and config.learning_rate == 1e-5
    assert (config.max_steps, config.seed, config.output_dir) == (2, 3, "o")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[1])
def test_unknown_recipe_keys_are_one_error_naming_them(command, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: d\nlearnig_rate: 0.1\nmax_step: 3\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml: unknown option\(s\) learnig_rate, max_step for "):
        _config(command, ["--config", str(recipe)])


def test_unknown_key_from_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    from prefalign.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: d\nbogus: 1\n")
    assert main(["adapt", "train-lora", "--config", str(recipe), "--base", "b", "--output_dir", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "r.yaml" in err and "bogus" in err


def test_wrong_types_and_choices_in_a_recipe_are_errors(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("max_steps: many\n")
    with pytest.raises(ConfigError, match="max_steps must be a whole number"):
        _config(("train", "scorer"), ["--config", str(recipe)])
    recipe.write_text("mixed_precision: fp8\n")
    with pytest.raises(ConfigError, match="mixed_precision must be one of no, fp16, bf16"):
        _config(("adapt", "train-lora"), ["--config", str(recipe)])


OLD_TRAIN = [
    (["--out", "o"], "output_dir", "o"),
    (["--batch-size", "6"], "per_device_train_batch_size", 6),
    (["--num-epochs", "3"], "num_train_epochs", 3),
    (["--lr-scheduler", "linear"], "lr_scheduler_type", "linear"),
    (["--resume"], "resume_from_checkpoint", "latest"),
    (["--num-workers", "2"], "dataloader_num_workers", 2),
]
OLD_ADAPT = [
    (["--out", "o"], "output_dir", "o"),
    (["--steps", "9"], "max_steps", 9),
    (["--checkpoint-every", "4"], "save_steps", 4),
    (["--keep-checkpoints", "5"], "save_total_limit", 5),
    (["--resume"], "resume_from_checkpoint", "latest"),
    (["--log-every", "3"], "logging_steps", 3),
]


@pytest.mark.parametrize("command", [("train", "scorer"), ("train", "reward")], ids=lambda c: c[1])
@pytest.mark.parametrize("old, new, value", OLD_TRAIN, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_old_train_names_warn_and_still_work(command, old, new, value):
    with pytest.warns(FutureWarning, match=f"'{old[0][2:].replace('-', '_')}' is deprecated.*use '{new}'"):
        config = _config(command, old)
    assert getattr(config, new) == value


@pytest.mark.parametrize("command", [("adapt", "train-lora"), ("adapt", "train-rwr")], ids=lambda c: c[1])
@pytest.mark.parametrize("old, new, value", OLD_ADAPT, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_old_adapt_names_warn_and_still_work(command, old, new, value):
    with pytest.warns(FutureWarning, match=f"'{old[0][2:].replace('-', '_')}' is deprecated.*use '{new}'"):
        config = _config(command, old)
    assert getattr(config, new) == value


def test_old_batch_size_keeps_its_meaning_per_trainer(monkeypatch, tmp_path):
    # train: --batch-size was per process already
    with pytest.warns(FutureWarning):
        assert _config(("train", "scorer"), ["--batch-size", "8"]).per_device_train_batch_size == 8
    # adapt: --batch-size was pairs per optimizer step over all processes and accumulation passes
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.warns(FutureWarning, match="batch_size was global: 40 = 2 process"):
        config = _config(
            ("adapt", "train-lora"), ["--batch-size", "40", "--gradient_accumulation_steps", "2"]
        )
    assert config.per_device_train_batch_size == 10
    assert config.global_batch_size(2) == 40
    recipe = tmp_path / "r.yaml"
    recipe.write_text("batch_size: 12\ngradient_accumulation_steps: 3\n")  # old key in a recipe
    with pytest.warns(FutureWarning):
        assert _config(("adapt", "train-rwr"), ["--config", str(recipe)]).per_device_train_batch_size == 2
    with pytest.raises(ConfigError, match="not divisible by 2 process"):
        _config(("adapt", "train-lora"), ["--batch-size", "3"])


def test_old_and_new_name_together_is_an_error():
    with pytest.raises(ConfigError, match="both steps \\(deprecated\\) and max_steps"):
        _config(("adapt", "train-lora"), ["--steps", "3", "--max_steps", "4"])


def test_settings_a_trainer_does_not_implement_are_refused_not_ignored():
    config = _config(("train", "reward"), ["--data", "d", "--output_dir", "o", "--gradient_checkpointing"])
    with pytest.raises(ConfigError, match=r"gradient_checkpointing=True: .*does not implement it yet"):
        config.validate()
    # the shared loop (prefalign.training.loop) implements these for every trainer now
    for kind in (("train", "scorer"), ("adapt", "train-rwr")):
        base = ["--base", "b"] if kind[0] == "adapt" else []
        _config(
            kind,
            ["--data", "d", "--output_dir", "o", *base, "--gradient_accumulation_steps", "2"]
            + ["--report_to", "tensorboard", "--logging_steps", "3"],
        ).validate()
    config = _config(
        ("adapt", "train-lora"),
        ["--data", "d", "--base", "b", "--output_dir", "o", "--num_train_epochs", "5"],
    )
    with pytest.raises(ConfigError, match="num_train_epochs=5"):
        config.validate()
    config = _config(
        ("adapt", "train-rwr"),
        ["--data", "d", "--base", "b", "--output_dir", "o", "--dataloader_num_workers", "2"],
    )
    with pytest.raises(ConfigError, match="dataloader_num_workers=2"):
        config.validate()


def test_the_hand_written_generators_are_gone():
    from prefalign.cli import adapt, train

    for name in ("add_config_args", "add_config_arguments", "read_recipe", "_base_type", "_unwrap_optional"):
        assert not hasattr(adapt, name) and not hasattr(train, name)


def test_building_the_cli_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys; from prefalign.cli.main import build_parser; build_parser(); print('transformers' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


def test_a_trainer_option_given_twice_is_refused(capsys):
    from prefalign.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["adapt", "train-lora", "--max_steps", "1", "--max_steps", "2"])
    assert exit_info.value.code == 2
    assert "given twice" in capsys.readouterr().err
