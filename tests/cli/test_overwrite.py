"""Overwriting an existing output behaves the same in every command: refused with one line naming the
path and --overwrite, unless --overwrite."""

from __future__ import annotations

import argparse
import shlex

import pytest

from prefalign.cli.common import OUTPUT_DEST, OUTPUT_MARKER
from prefalign.cli.main import main
from tests.cli.test_help_examples import COMMANDS, _example_lines

GUARDED = [
    (path, parser)
    for path, parser in COMMANDS
    if parser.get_default(OUTPUT_DEST) is not None
    and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
]


def test_every_command_that_writes_an_output_is_guarded():
    names = {" ".join(path) for path, _ in GUARDED}
    expected = {
        "score",
        "eval preference",
        "eval agreement",
        "eval images",
        "eval compare",
        "data import",
        "data split",
        "data from-discord",
        "data export",
        "data prompts compositional",
        "generate",
        "adapt select",
        "adapt export-lora",
        "convert",
        "annotate export",
        "annotate results",
    }
    assert expected <= names, sorted(expected - names)
    # a rerun of `benchmark run --out OUT` reuses OUT's images and rewrites the leaderboard (its resume,
    # like a trainer's --resume_from_checkpoint): not refused
    assert "benchmark run" not in names
    for path, parser in GUARDED:  # each says so in --help
        assert "--overwrite" in parser.format_help(), path


def _argv_with_out(path: tuple[str, ...], parser: argparse.ArgumentParser, out: str) -> list[str]:
    """The command's first --help example, its output replaced by ``out``."""
    dest = parser.get_default(OUTPUT_DEST)
    flags = next(a.option_strings for a in parser._actions if a.dest == dest)
    for line in _example_lines(parser.format_help()):
        argv = shlex.split(line)[1:]
        for i, word in enumerate(argv):
            if word in flags and i + 1 < len(argv):
                argv[i + 1] = out
                return argv
            if "=" in word and word.split("=")[0] in flags:
                argv[i] = f"{word.split('=')[0]}={out}"
                return argv
        return [*argv, flags[0], out]
    pytest.fail(f"prefalign {' '.join(path)} has no example to start from")


@pytest.mark.parametrize("path,parser", GUARDED, ids=[" ".join(p) for p, _ in GUARDED])
def test_existing_output_is_refused_in_one_line(path, parser, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = parser.get_default(OUTPUT_MARKER)
    out = tmp_path / "existing"
    if marker is None and path[0] in ("score", "data") and path[-1] in ("score", "compositional"):
        out = tmp_path / "existing.parquet" if path == ("score",) else tmp_path / "existing.txt"
        out.write_text("old")
    else:
        out.mkdir()
        (out / (marker or "something")).write_text("old")
    argv = _argv_with_out(path, parser, str(out))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and "--overwrite" in err, err
    assert (out if out.is_file() else out / (marker or "something")).read_text() == "old"  # untouched
    # --overwrite gets past the check (the command then runs: here it fails later on the example's
    # made-up inputs, or succeeds; either way it is not the refusal)
    main([*argv, "--overwrite"])
    assert "--overwrite to replace it" not in capsys.readouterr().err


def test_overwrite_replaces_a_split_and_a_prompt_file(tmp_path, capsys):
    from prefalign.data import load_dataset
    from prefalign.testing import make_choice_dataset

    data = make_choice_dataset(tmp_path / "data", 6, size=16)
    split = ["data", "split", str(data), "--test-size", "2", "--out", str(tmp_path / "split")]
    assert main(split) == 0
    assert main([*split[:-3], "3", "--out", str(tmp_path / "split")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*split[:-3], "3", "--out", str(tmp_path / "split"), "--overwrite"]) == 0
    assert sum(r.split == "test" for r in load_dataset(tmp_path / "split")) == 3

    prompts = ["data", "prompts", "compositional", "--out", str(tmp_path / "p.txt")]
    assert main(prompts) == 0
    before = (tmp_path / "p.txt").read_text()
    (tmp_path / "p.txt").write_text("old\n")
    assert main(prompts) == 2
    assert (tmp_path / "p.txt").read_text() == "old\n"
    assert main([*prompts, "--overwrite"]) == 0
    assert (tmp_path / "p.txt").read_text() == before
