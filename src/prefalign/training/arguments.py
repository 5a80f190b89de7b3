"""One parser for every trainer: config dataclass -> command line through ``transformers.HfArgumentParser``.

Every field of a :class:`~prefalign.training.config.TrainingConfig` subclass becomes
``--field_name`` (and ``--field-name``), typed as the field, with its help text and default;
``--config recipe.yaml`` reads any of them from a file (typed as the field: YAML's ``1e-5`` is a
float here), and options given on the command line win over the file. The old option names of
each trainer (``TrainingConfig.DEPRECATED``) still parse, hidden from ``--help``, and warn.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from prefalign.training.config import ConfigError, TrainingConfig, read_recipe, upgrade_names

_DEPRECATED_DEST = "_deprecated__"
_NOT_IMPLEMENTED = " [not implemented by this trainer yet: only the default is accepted]"


def add_trainer_parser(
    subparsers: argparse._SubParsersAction, name: str, config_cls: type[TrainingConfig], **kwargs: Any
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose options are ``config_cls``'s fields (plus ``--config``).

    Built by ``HfArgumentParser(config_cls)``; its defaults are then moved into the help text and
    replaced by ``argparse.SUPPRESS``, so that the parsed namespace holds only what was given on
    the command line and :func:`config_from_args` can lay it over a ``--config`` file.
    """
    from transformers import HfArgumentParser

    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    # argparse builds a subcommand's parser with the subparsers action's parser class; lend it ours.
    saved = subparsers._parser_class
    subparsers._parser_class = HfArgumentParser
    try:
        parser = subparsers.add_parser(name, dataclass_types=config_cls, allow_abbrev=False, **kwargs)
    finally:
        subparsers._parser_class = saved
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for action in parser._actions:
        if action.dest not in fields or not action.option_strings:
            continue
        help_text = (action.help or "").replace("%", "%%")
        if not action.option_strings[0].startswith("--no"):
            default = fields[action.dest].default
            if default not in (None, ""):
                help_text += f" (default: {default})"
            if action.dest in config_cls.UNSUPPORTED:
                help_text += _NOT_IMPLEMENTED
        else:
            help_text = f"turn off --{action.dest}"
        action.help = help_text
        action.default = argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="read options from a YAML (or JSON) recipe of option: value lines; the command line wins",
    )
    types = config_cls.field_types()
    for old, new in config_cls.DEPRECATED.items():
        extra: dict[str, Any]
        if new == "resume_from_checkpoint":
            extra = {"nargs": "?", "const": "latest"}
        else:
            tp = types[new]
            extra = {"type": int if old == "batch_size" else tp}
        parser.add_argument(
            "--" + old.replace("_", "-"),
            dest=_DEPRECATED_DEST + old,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            **extra,
        )
    return parser


def config_from_args(config_cls: type[TrainingConfig], args: argparse.Namespace) -> TrainingConfig:
    """The config of a command: field defaults, then ``--config``, then the options given.

    Raises ``ConfigError`` naming the file and the unknown keys, a wrong type, or an old name
    given together with its new one.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    old = {
        k.removeprefix(_DEPRECATED_DEST): v for k, v in vars(args).items() if k.startswith(_DEPRECATED_DEST)
    }
    recipe: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file:
        recipe = upgrade_names(config_cls, read_recipe(config_file), source=str(config_file))
        unknown = sorted(set(recipe) - names)
        if unknown:
            raise ConfigError(
                f"{config_file}: unknown option(s) {', '.join(unknown)} for {config_cls.__name__}; "
                "fix or remove them (see --help for the option names)"
            )
    if old:
        old_as_flags = {k: v for k, v in old.items()}
        upgraded = upgrade_names(
            config_cls,
            {**old_as_flags, **given},
            source="command line",
            context=recipe,
        )
        given = upgraded
    values = {**recipe, **given}
    return config_cls.from_dict(values, source=str(config_file) if config_file else "command line")


def deprecated_aliases(config_cls: type[TrainingConfig]) -> dict[str, str]:
    """Old option -> new option of a trainer, as the command line spells them (for docs and tests)."""
    return {"--" + o.replace("_", "-"): "--" + n for o, n in config_cls.DEPRECATED.items()}
