"""The adapt and generate commands end to end on tiny models, and their user errors."""

from __future__ import annotations

import pytest

from prefalign.cli.generate import parse_seeds
from prefalign.cli.main import CommandError, main
from prefalign.data import load_dataset


def test_select_train_generate(tmp_path, shapes_data, tiny_sd, tiny_hps, capsys):
    selected = tmp_path / "selected"
    assert main(["adapt", "select", "--data", str(shapes_data), "--model", str(tiny_hps), "--out", str(selected),
                 "--alpha", "1.0", "--device", "cpu", "--no-progress", "--identifier", "Odd. ",
                 "--min-group-size", "2"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    table = captured.out
    assert "preferred" in table and "non-preferred" in table
    assert "no regularisation set (--regularization): not the paper's recipe" in captured.err
    kinds = {r.meta["kind"] for r in load_dataset(selected)}
    assert kinds == {"preferred", "non-preferred"}

    lora = tmp_path / "lora"
    assert main(["adapt", "train-lora", "--data", str(selected), "--base", str(tiny_sd), "--output_dir", str(lora),
                 "--max_steps", "1", "--per_device_train_batch_size", "2", "--resolution", "32", "--rank", "4", "--cpu"]) == 0  # fmt: skip
    assert (lora / "pytorch_lora_weights.safetensors").is_file()
    assert "note: no regularisation set: not the paper's recipe" in capsys.readouterr().err

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    gen = tmp_path / "gen"
    assert main(["generate", "--base", str(tiny_sd), "--lora", str(lora), "--prompts", str(prompts),
                 "--seeds", "0-1", "--steps", "2", "--out", str(gen), "--device", "cpu"]) == 0  # fmt: skip
    records = load_dataset(gen)
    assert len(records) == 4
    # the identifier chosen at selection travelled through the adapter to the negative prompt
    assert {r.meta["negative_prompt"] for r in records} == {"Odd."}
    assert "negative prompt 'Odd.'" in capsys.readouterr().err


def test_generate_best_of(tmp_path, tiny_sd, tiny_hps):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    assert main(["generate", "--base", str(tiny_sd), "--prompts", str(prompts), "--best-of", "3", "--keep", "2",
                 "--scorer", str(tiny_hps), "--steps", "2", "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0  # fmt: skip
    records = load_dataset(tmp_path / "g")
    assert len(records) == 2 and records[0].meta["score"] >= records[1].meta["score"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty-prompts", "no prompts"),
        ("missing-base", "no such Stable Diffusion directory"),
        ("best-of-without-scorer", "needs --scorer"),
    ],
)
def test_generate_user_errors(tmp_path, tiny_sd, capsys, setup, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("" if setup == "empty-prompts" else "a red circle\n")
    base = tmp_path / "nope" if setup == "missing-base" else tiny_sd
    args = ["generate", "--base", str(base), "--prompts", str(prompts), "--out", str(tmp_path / "g")]
    if setup == "best-of-without-scorer":
        args += ["--best-of", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_lora_help_shows_the_paper_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["adapt", "train-lora", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "(default: 32)",
        "(default: 1e-05)",
        "(default: 0.01)",
        "(default: 40)",
        "(default: 10000)",
    ):
        assert expected in text


def test_train_rwr_rejects_unknown_target(capsys):
    with pytest.raises(SystemExit):
        main(["adapt", "train-rwr", "--data", "d", "--base", "b", "--output_dir", "o", "--train", "vae"])
    assert "invalid choice" in capsys.readouterr().err


def test_parse_seeds():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds("5") == [5]
    with pytest.raises(CommandError):
        parse_seeds("a-b")


def test_recipe_file_fills_options_and_the_command_line_wins(tmp_path, shapes_data, tiny_sd, monkeypatch):
    import prefalign.adapt.lora as lora_module

    seen = {}
    monkeypatch.setattr(
        lora_module, "train_lora", lambda config: seen.setdefault("config", config) and tmp_path
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data: {shapes_data}\nbase: {tiny_sd}\nlearning-rate: 0.001\nmax_steps: 7\nrank: 8\n")
    assert (
        main(
            [
                "adapt",
                "train-lora",
                "--config",
                str(recipe),
                "--output_dir",
                str(tmp_path / "o"),
                "--max_steps",
                "3",
            ]
        )
        == 0
    )
    config = seen["config"]
    assert (config.max_steps, config.learning_rate, config.rank, config.per_device_train_batch_size) == (
        3,
        0.001,
        8,
        40,
    )


def test_recipe_errors(tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text('{"data": "d", "bogus": 1}')
    assert main(["adapt", "train-lora", "--config", str(recipe), "--base", "b", "--output_dir", "o"]) == 2
    assert "unknown option(s) bogus" in capsys.readouterr().err
    assert main(["adapt", "train-lora", "--data", "d", "--output_dir", "o"]) == 2
    assert "base is required" in capsys.readouterr().err
