"""`prefalign benchmark run|compare|prompts` on tiny models, with a real scorer loaded by path."""

from __future__ import annotations

import json

from prefalign.cli.main import main
from tests.benchmark.conftest import write_prompts


def test_run_then_rerun_reuses_images_and_compare_reads_both(tmp_path, dark_and_bright, tiny_hps, capsys):
    dark, bright = dark_and_bright
    prompts = write_prompts(tmp_path / "p.tsv", 4)
    out = tmp_path / "run"
    argv = ["benchmark", "run", "--models", f"dark={dark}", f"bright={bright}", "--prompts", str(prompts)]
    argv += [
        "--seeds",
        "0-1",
        "--scorers",
        str(tiny_hps),
        "random",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "dark: 8 images generated, 0 reused" in err
    board = json.loads((out / "leaderboard.json").read_text())
    assert [s["name"] for s in board["scorers"]] == ["hps", "random"]
    assert board["scorers"][0]["kind"] == "hps"
    assert board["results"]["dark"][tiny_hps.name]["n_images"] == 8
    assert (out / "leaderboard.html").exists() and (out / "plots").is_dir()

    # The same command again generates nothing; a subset reuses the images of the larger run.
    assert main(argv) == 0
    assert "dark: 0 images generated, 8 reused" in capsys.readouterr().err
    small = tmp_path / "small"
    again = ["benchmark", "run", "--images", str(out / "images"), "--prompts", str(prompts), "--limit", "2"]
    assert main([*again, "--scorers", str(tiny_hps), "--device", "cpu", "--out", str(small)]) == 0
    capsys.readouterr()
    small_board = json.loads((small / "leaderboard.json").read_text())
    assert small_board["prompt_set"]["selected"] == 2 and small_board["seeds"] == [0, 1]
    assert small_board["results"]["dark"][tiny_hps.name]["n_images"] == 4

    assert main(["benchmark", "compare", str(out), str(small), "--out", str(tmp_path / "diff.json")]) == 0
    text = capsys.readouterr().out
    assert "| dark |" in text and "prompt sets differ" in text
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert diff["scorers_only_old"] == ["random"]
    row = next(r for r in diff["rows"] if r["model"] == "dark")
    old_mean = board["results"]["dark"][tiny_hps.name]["mean"]
    assert row["difference"] == small_board["results"]["dark"][tiny_hps.name]["mean"] - old_mean


def test_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert main(["benchmark", "compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a prefalign leaderboard" in err
    assert (
        main(["benchmark", "run", "--prompts", "parti", "--scorers", "random", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "give --models" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                "run",
                "--prompts",
                "nope.txt",
                "--models",
                "a=b",
                "--scorers",
                "random",
                "--out",
                "o",
            ]
        )
        == 2
    )
    assert "nope.txt: no such prompt file" in capsys.readouterr().err


def test_prompts_lists_the_shipped_sets(capsys):
    assert main(["benchmark", "prompts"]) == 0
    out = capsys.readouterr().out
    assert "parti:" in out and "Apache-2.0" in out and "lee-compositional" in out
    assert main(["benchmark", "prompts", "parti"]) == 0
    assert "Animals: 314" in capsys.readouterr().out
