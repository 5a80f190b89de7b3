"""A single-value option given twice is refused with one line naming both values."""

from __future__ import annotations

import argparse

import pytest

from prefalign.cli.main import build_parser, main


def _all_parsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _all_parsers(sub)


def test_score_refuses_two_models(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["score", "x.png", "-p", "a cat", "--model", "models/a", "--model", "models/b"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--model/-m given twice ('models/a', then 'models/b')" in err


def test_every_single_value_option_of_every_command_refuses_a_repeat(capsys):
    parser = build_parser()
    checked = 0
    for sub in _all_parsers(parser):
        for action in sub._actions:
            if type(action).__name__ == "_StoreOnce":
                checked += 1
            assert not (type(action) is argparse._StoreAction and action.option_strings), (
                sub.prog,
                action.option_strings,
            )
    assert checked > 50  # every command group was walked, not just one


def test_options_meant_to_repeat_still_take_every_value():
    args = build_parser().parse_args(
        ["eval", "preference", "--data", "d", "--model", "random", "--model", "random:1"]
    )
    assert args.model == ["random", "random:1"]
    # and one occurrence of each single-value option still parses as before
    args = build_parser().parse_args(["score", "a.png", "-p", "x", "-m", "m", "--batch-size", "2"])
    assert (args.model, args.batch_size) == ("m", 2)
