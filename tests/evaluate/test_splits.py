"""Which records `eval preference` measures: the test split by default, stated; 0 records exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefalign.cli.main import main
from prefalign.data import Record, save_dataset


def _pairs(prefix: str, n: int, split: str | None, **label) -> list[Record]:
    return [
        Record(f"{prefix} {i}", [f"{prefix}{i}a.png", f"{prefix}{i}b.png"], split=split, **label)
        for i in range(n)
    ]


def save(records: list[Record], directory) -> None:
    """Save records with their image files present (bytes that are not an image: the random
    scorer never reads them, and a real scorer fails on every one)."""
    directory.mkdir(parents=True, exist_ok=True)
    for record in records:
        for image in record.images:
            (directory / image).write_bytes(b"not an image")
    save_dataset(records, directory)


def _eval(data, capsys, *extra):
    code = main(["eval", "preference", "--data", str(data), "-m", "random", "--bootstrap", "10", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_default_is_the_test_split_and_all_is_stated(tmp_path, capsys):
    records = _pairs("tr", 6, "train", chosen=0) + _pairs("te", 4, "test", chosen=1)
    save(records, tmp_path / "d")
    code, out, _ = _eval(tmp_path / "d", capsys, "-o", str(tmp_path / "r1"))
    assert code == 0 and "evaluated: split test (4 records), the default" in out
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert report["results"]["random"]["n_records"] == 4  # was 10: training records included, silently
    assert report["selection"]["split"] == "test"

    code, out, _ = _eval(tmp_path / "d", capsys, "--split", "all", "-o", str(tmp_path / "r2"))
    assert code == 0 and "all splits together (--split all)" in out and "trained on" in out
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["results"]["random"]["n_records"] == 10
    assert "all splits together" in (tmp_path / "r2" / "report.md").read_text()


def test_several_splits_without_test_need_a_choice(tmp_path, capsys):
    save(_pairs("tr", 3, "train", chosen=0) + _pairs("dv", 2, "dev2", chosen=0), tmp_path / "d")
    code, _, err = _eval(tmp_path / "d", capsys)
    assert code == 2
    assert "the data hold splits dev2 (2), train (3) and no test split" in err and "--split all" in err


def test_validation_only_shard_is_evaluated_and_said(tmp_path, capsys):
    """A Pick-a-Pic validation_unique shard: before, a table with no columns, n_records 0, exit 0."""
    save(_pairs("v", 5, "validation", chosen=0), tmp_path / "d")
    for extra in ([], ["--split", "validation"]):
        code, out, _ = _eval(tmp_path / "d", capsys, *extra, "-o", str(tmp_path / "r"), "--overwrite")
        assert code == 0, extra
        assert "top1" in out.splitlines()[0]
        report = json.loads((tmp_path / "r" / "report.json").read_text())
        assert report["results"]["random"]["n_records"] == 5
    assert (
        "the only split the data hold"
        in _eval(tmp_path / "d", capsys, "-o", str(tmp_path / "r"), "--overwrite")[1]
    )


def test_zero_records_exit_1_and_say_why(tmp_path, capsys, tiny_hps_model):
    save(_pairs("v", 3, "validation", chosen=0), tmp_path / "d")
    code, out, err = _eval(tmp_path / "d", capsys, "--split", "test")
    assert code == 1 and out == ""
    assert "no record of split 'test' (--split); the data hold validation (3)" in err
    # every image fails to load: skipped records, not an empty report
    code = main(
        [
            "eval",
            "preference",
            "--data",
            str(tmp_path / "d"),
            "-m",
            str(tiny_hps_model),
            "-o",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 1
        and "0 records evaluated by" in err
        and "all 3 records of split validation were skipped" in err
    )
    # a labelled split next to an unlabelled one
    save(_pairs("t", 2, "test") + _pairs("v", 2, "validation", chosen=0), tmp_path / "u")
    code, _, err = _eval(tmp_path / "u", capsys)
    assert code == 1 and "none of the 2 records of split test has a preference label" in err


def test_other_eval_commands_with_nothing_to_evaluate_exit_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", "images", "--images", str(tmp_path / "empty"), "--metrics", "is"]) == 1
    assert "0 images to evaluate" in capsys.readouterr().err
    save_dataset([], tmp_path / "votes")
    assert main(["eval", "agreement", "--votes", str(tmp_path / "votes")]) == 1
    assert "0 votes to evaluate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("splits", "split", "evaluated", "tuning"),
    [
        (["train", "test", "validation"], None, [1], [2]),
        (["train", "test", "validation"], "all", [0, 1], [2]),
        ([None, None], None, [0, 1], []),
        ([None, "validation"], None, [0], [1]),
        (["validation", "validation"], "validation", [0, 1], []),
    ],
)
def test_select_split_rules(splits, split, evaluated, tuning):
    from prefalign.evaluate.splits import select_split

    chosen = select_split(splits, split, where="d")
    assert (chosen.evaluated, chosen.tuning) == (evaluated, tuning)


def test_named_split_of_unsplit_data_suggests_data_split(tmp_path, capsys):
    save(_pairs("u", 20, None, chosen=0), tmp_path / "d")
    code, out, err = _eval(tmp_path / "d", capsys, "--split", "test")
    assert code == 2 and out == ""  # a usage error, like the other ones (was exit 1, no hint)
    assert "the data are not split" in err and len(err.strip().splitlines()) == 1
    command = f"prefalign data split {tmp_path / 'd'} --test-size 0.1 --out {tmp_path / 'd'}-split"
    assert command in err
    assert main(["data", *command.split()[2:]]) == 0  # the command it gives works
    capsys.readouterr()
    code, out, err = _eval(
        Path(f"{tmp_path / 'd'}-split"), capsys, "--split", "test", "-o", str(tmp_path / "r")
    )
    assert code == 0 and "split test" in out, err
