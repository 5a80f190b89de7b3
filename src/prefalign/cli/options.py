"""One value per option: a single-value option given twice is refused, never silently dropped.

argparse keeps the last of ``--model A --model B``, so ``score`` would score with B alone and say
nothing. Options meant to take several values say so (``action="append"``: ``eval --model``);
every other option that stores a value is turned, once the parser is built, into one that
refuses a second occurrence with one line naming both values.
"""

from __future__ import annotations

import argparse

_GIVEN = "_prefalign_options_given"  # dests set on the command line during this parse


class _StoreOnce(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):
        given: dict[str, object] = namespace.__dict__.setdefault(_GIVEN, {})
        if self.dest in given:
            parser.error(
                f"{'/'.join(self.option_strings)} given twice ({given[self.dest]!r}, then {values!r}); "
                "it takes one value: run the command once per value"
            )
        given[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


def refuse_repeated_options(parser: argparse.ArgumentParser) -> None:
    """Make every single-value option of ``parser`` and its subcommands refuse a repeat."""
    seen: set[int] = set()
    todo = [parser]
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        hooks = getattr(p, "on_populate", None)  # a parser filled in on first use (training.arguments)
        if hooks is not None and refuse_repeated_options not in hooks:
            hooks.append(refuse_repeated_options)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
            elif type(action) is argparse._StoreAction and action.option_strings:
                action.__class__ = _StoreOnce
