"""Entry point of the ``prefalign`` command.

Each command group lives in its own module exposing ``register(subparsers)``; modules are
imported only when listed here, and heavy libraries only when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from prefalign.errors import PrefalignError

# Command groups, in the order ``prefalign --help`` lists them.
COMMAND_MODULES = (
    "prefalign.cli.score",
    "prefalign.cli.convert",
    "prefalign.cli.list_scorers",
    "prefalign.cli.data",
    "prefalign.cli.train",
    "prefalign.cli.demo",
    "prefalign.cli.annotate",
    "prefalign.cli.eval",
    "prefalign.cli.adapt",
    "prefalign.cli.generate",
    "prefalign.cli.benchmark",
    "prefalign.cli.push",
)


class CommandError(PrefalignError):
    """An error a command reports as one clear line and exit status 2, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefalign",
        description="Measure and improve how well text-to-image generations match human preference.",
    )
    from prefalign import __version__

    parser.add_argument("--version", action="version", version=f"prefalign {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not written yet
                continue
            raise
        try:
            module.register(sub)
        except ModuleNotFoundError as exc:  # a group whose options need an extra: listed, not usable
            from prefalign.extras import missing_extra

            if missing_extra(exc) is None:
                raise
            _register_missing(sub, name, missing_extra(exc) or "")
    from prefalign.cli.options import refuse_repeated_options

    refuse_repeated_options(parser)  # `--model A --model B` never silently keeps only B
    return parser


def _register_missing(sub: argparse._SubParsersAction, module: str, reason: str) -> None:
    """A command group whose optional library is absent: it says which extra to install."""
    name = module.rsplit(".", 1)[-1]
    p = sub.add_parser(name, help=f"(needs an extra) {reason}", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def run(_args: argparse.Namespace) -> int:
        raise CommandError(reason)

    p.set_defaults(func=run)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one clean line (``FutureWarning: ...``), without the source file and line."""
    return f"{category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # the CLI's warnings; library users keep Python's format
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from prefalign.cli.common import check_output

        check_output(args)  # an existing output is refused unless --overwrite, in every command
        return int(args.func(args) or 0)
    except PrefalignError as exc:
        print(f"prefalign {args.command}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))  # 1: nothing evaluated (evaluate.errors)
    except ModuleNotFoundError as exc:  # an optional library: one line naming the extra
        from prefalign.extras import missing_extra

        message = missing_extra(exc)
        if message is None:
            raise
        print(f"prefalign {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # TrainingInterrupted says where its checkpoint is
        print(f"prefalign {args.command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
