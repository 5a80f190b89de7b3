"""`prefalign eval ...`: end to end on tiny data, and every bad input as one clear line (exit 2)."""

from __future__ import annotations

import json

import pytest

from prefalign.cli.main import main
from prefalign.data import Record, save_dataset

from .helpers import generated_set, noise_images, votes_dataset


def test_help_lists_the_four_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("preference", "agreement", "images", "compare"))


def test_preference_prints_a_table_and_writes_the_report(choice_data, tiny_hps_model, tmp_path, capsys):
    out = tmp_path / "rep"
    args = [
        "eval",
        "preference",
        "--data",
        str(choice_data),
        "--model",
        "random",
        "--model",
        str(tiny_hps_model),
    ]
    assert main([*args, "--out", str(out), "--bootstrap", "50", "--batch-size", "16", "--no-progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:2] == ["scorer", "top1"] and lines[2].startswith("random")
    assert "random baseline of top1" in captured.out and "report.html" in captured.err
    data = json.loads((out / "report.json").read_text())
    assert data["results"]["random"]["top1"]["n"] == 12
    runtime = data["runtime"]  # how each model scorer computed; the random baseline has nothing to say
    assert list(runtime) == [str(tiny_hps_model)]
    assert runtime[str(tiny_hps_model)]["precision_requested"] == "auto"
    assert runtime[str(tiny_hps_model)]["precision"] in ("fp32", "bf16")
    assert (out / "plots" / "accuracy.png").exists()


def test_agreement_and_compare_commands(tmp_path, capsys):
    prompts = ["a cat", "a dog"]
    generated_set(tmp_path / "a", prompts, [0, 0], seed=0)
    generated_set(tmp_path / "b", prompts, [0, 0], seed=1)
    votes_dataset(
        tmp_path / "votes", [("u1", "i", ("x.png", "y.png"), 0), ("u2", "i", ("x.png", "y.png"), 0)]
    )
    assert (
        main(
            [
                "eval",
                "agreement",
                "--votes",
                str(tmp_path / "votes"),
                "-m",
                "random",
                "-o",
                str(tmp_path / "r1"),
            ]
        )
        == 0
    )
    assert "human (vs the others)  1.000 ± 0.000" in capsys.readouterr().out
    code = main(
        [
            "eval",
            "compare",
            "--a",
            str(tmp_path / "a"),
            "--b",
            str(tmp_path / "b"),
            "-m",
            "random",
            "-o",
            str(tmp_path / "r2"),
        ]
    )
    assert code == 0 and "win_rate_b" in capsys.readouterr().out


def test_agreement_without_a_model_is_human_against_human(tmp_path, capsys):
    """Step 4 of the annotation flow: votes only, no --model (was a traceback in np.stack)."""
    votes_dataset(
        tmp_path / "votes",
        [
            ("u1", "i", ("x.png", "y.png"), 0),
            ("u2", "i", ("x.png", "y.png"), 0),
            ("u3", "i", ("x.png", "y.png"), 1),
            ("u1", "j", ("x.png", "z.png"), 1),
            ("u2", "j", ("x.png", "z.png"), 1),
        ],
    )
    code = main(["eval", "agreement", "--votes", str(tmp_path / "votes"), "-o", str(tmp_path / "r")])
    assert code == 0
    out = capsys.readouterr().out
    # u1: 2 of 3 others agree (u2 on i and j; not u3); u2 likewise 2/3; u3: 0 of 2 -> mean 4/9.
    assert "human (vs the others)  0.444 ± 0.314  3" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["scorers"] == {}


def test_images_with_a_custom_feature_extractor(tmp_path, capsys):
    noise_images(tmp_path / "gen", 10, seed=0)
    noise_images(tmp_path / "ref", 8, seed=1)
    code = main(
        [
            "eval", "images", "--images", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
            "--metrics", "is,fid", "--feature-extractor", "tests.evaluate.helpers:tiny_features",
            "--image-size", "16", "-o", str(tmp_path / "rep"), "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("all")
    groups = json.loads((tmp_path / "rep" / "report.json").read_text())["groups"]
    assert groups["all"]["is"]["n"] == 10 and groups["all"]["fid"]["value"] > 0


def bad(tmp_path, choice_data, tiny_hps_model):
    """Each bad input and the words its error must contain."""
    save_dataset([Record("a cat", ["x.png", "y.png"])], tmp_path / "unlabelled")
    generated_set(tmp_path / "a", ["a cat", "a dog"], [0, 0], seed=0)
    generated_set(tmp_path / "b", ["a cat", "a bird"], [0, 0], seed=1)
    noise_images(tmp_path / "gen", 3, seed=0)
    noise_images(tmp_path / "one", 1, seed=1)
    return [
        (["preference", "--data", str(tmp_path / "unlabelled"), "-m", "random"], "has a preference label"),
        (["preference", "--data", str(tmp_path / "nowhere"), "-m", "random"], "not a prefalign dataset"),
        (["preference", "--data", str(choice_data), "-m", "random:x"], "seed must be an integer"),
        (
            ["preference", "--data", str(choice_data), "-m", str(tmp_path / "nomodel")],
            "no such model directory",
        ),
        (["agreement", "--votes", str(choice_data)], "a vote needs exactly 2 images"),
        (["compare", "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "-m", "random"], "only in A"),
        (["images", "--images", str(tmp_path / "gen"), "--metrics", "hps"], "needs --hps-model"),
        (["images", "--images", str(tmp_path / "gen"), "--metrics", "psnr"], "unknown ['psnr']"),
        (
            [
                "images",
                "--images",
                str(tmp_path / "gen"),
                "--metrics",
                "fid",
                "--reference",
                str(tmp_path / "one"),
                "--feature-extractor",
                "tests.evaluate.helpers:tiny_features",
            ],
            "the reference set has 1 image(s)",
        ),
        (
            ["images", "--images", str(tmp_path / "gen"), "--metrics", "is", "--feature-extractor", "nope"],
            "MODULE:FUNCTION",
        ),
    ]


def test_bad_inputs_are_one_clear_line(choice_data, tiny_hps_model, tmp_path, capsys):
    for args, words in bad(tmp_path, choice_data, tiny_hps_model):
        assert main(["eval", *args, "-o", str(tmp_path / "out")]) == 2, args
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and err.startswith("prefalign eval: error:"), (
            args,
            err,
        )


def test_images_hps_metric_is_100_cos_even_for_a_plain_clip_directory(tmp_path, tiny_clip_dir, capsys):
    """The metric fixes the kind: a plain CLIP directory as --hps-model was scored as bare cosine."""
    generated_set(tmp_path / "gen", ["a red cat", "a blue dog"], [0, 0], seed=0)
    code = main(
        [
            "eval", "images", "--images", str(tmp_path / "gen"), "--metrics", "clip,hps",
            "--clip-model", str(tiny_clip_dir), "--hps-model", str(tiny_clip_dir), "-o", str(tmp_path / "r"),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "kind hps = 100 * cos(i, t)" in out and "kind clip = cos(i, t)" in out
    groups = json.loads((tmp_path / "r" / "report.json").read_text())["groups"]["all"]
    clip = groups["clip"].get("value", groups["clip"].get("mean"))
    hps = groups["hps"].get("value", groups["hps"].get("mean"))
    assert hps == pytest.approx(100 * clip, rel=1e-5)
