"""Every command's --help ends with an example that names the command."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from prefalign.cli.main import build_parser


def _leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of every command and command group (``adapt``, ``data``...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if path:
        yield path, parser
    seen = set()
    for action in subs:
        for name, child in action.choices.items():
            if id(child) in seen:  # aliases
                continue
            seen.add(id(child))
            yield from _leaf_commands(child, (*path, name))


COMMANDS = sorted(_leaf_commands(build_parser()), key=lambda item: item[0])


def test_the_walk_finds_the_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"score", "generate", "adapt train-lora", "data split", "eval compare"} <= names
    assert len(names) > 25


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_ends_with_an_example(path, parser):
    if parser.get_default("func") is not None and parser.add_help is False:
        pytest.skip("a command group whose extra is missing")
    text = parser.format_help().rstrip("\n")
    lines = text.splitlines()
    start = max((i for i, line in enumerate(lines) if line.lower().startswith("example")), default=None)
    assert start is not None, f"prefalign {' '.join(path)} --help has no 'example' section at its end"
    examples = "\n".join(lines[start + 1 :])
    command = "prefalign " + " ".join(path)
    assert command in examples, f"the example of {command} does not run it:\n{examples}"
    # the example section is the last thing printed
    assert all(line.startswith(" ") or not line.strip() for line in lines[start + 1 :]), examples


def _example_lines(text: str) -> list[str]:
    """The ``prefalign ...`` command lines of a help text's examples, continuations joined, comments cut."""
    lines, current = [], ""
    all_lines = text.splitlines()
    first = next(
        (i for i, line in enumerate(all_lines) if line.lower().startswith("example")), len(all_lines)
    )
    for raw in all_lines[first:]:
        line = raw.strip()
        if current:
            current += " " + line
        elif line.startswith("prefalign ") and not line.startswith("prefalign:"):
            current = line
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        lines.append(re.split(r"\s{2,}(?:#|\()", current)[0].strip())
        current = ""
    return lines


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_examples_parse(path, parser, capsys):
    """Every example line is a valid command line (the options exist, the values fit)."""
    if parser.add_help is False:
        pytest.skip("a command group whose extra is missing")
    for line in _example_lines(parser.format_help()):
        argv = shlex.split(line)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"example does not parse: {line}\n{capsys.readouterr().err}")
        assert getattr(args, "func", None) is not None, line  # it reached a runnable command
