"""``prefalign train scorer|reward`` and ``prefalign data prompts compositional``.

The training options are generated from the config dataclasses (``PreferenceConfig``,
``RewardConfig``, both on ``prefalign.training.TrainingConfig``) by ``transformers.HfArgumentParser``
(``prefalign.training.arguments``): one help text per field, and ``--config FILE.yaml`` sets any
of them (options on the command line win over the file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefalign.cli.main import CommandError
from prefalign.training.arguments import add_trainer_parser, config_from_args

TRAINERS = {
    "scorer": (
        "prefalign.train.preference_config:PreferenceConfig",
        "prefalign.train.preference_trainer:PreferenceTrainer",
        "fine-tune CLIP into an HPS preference classifier (Wu et al.) on n-way choices",
    ),
    "reward": (
        "prefalign.train.reward_config:RewardConfig",
        "prefalign.train.reward_trainer:RewardTrainer",
        "train a Lee et al. reward model (MLP on frozen CLIP embeddings) on binary labels",
    ),
}
PROMPT_FORMATS = (".txt", ".jsonl", ".csv", ".parquet")


def _import(path: str):
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a preference model (HPS classifier) or a reward model (Lee et al.)",
        description="Train your own preference model on a prefalign dataset. The output is a model "
        "directory that `prefalign score` and `load_scorer` use directly, with training_log.jsonl, "
        "training_config.yaml and training_summary.json beside the weights. The same command runs "
        "under `accelerate launch` on many GPUs.",
        epilog="examples (each subcommand's --help has more):\n"
        "  prefalign train scorer --data choices --base openai/clip-vit-large-patch14 --output_dir models/hps\n"
        "  prefalign train reward --data rated --base openai/clip-vit-large-patch14 --output_dir models/reward",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = p.add_subparsers(dest="trainer", metavar="TRAINER", required=True)
    for kind, (config_path, _, help_text) in TRAINERS.items():
        config_cls = _import(config_path)
        q = add_trainer_parser(
            kinds,
            kind,
            config_cls,
            help=help_text,
            description=(config_cls.__doc__ or "").strip().split("\n\n")[0].replace("\n    ", " "),
            epilog=_EPILOGS[kind],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        q.set_defaults(func=run_train, config_cls=config_cls, kind=kind)


def register_prompts(sub: argparse._SubParsersAction) -> None:
    """``prompts compositional``: registered under ``prefalign data`` (see cli/data.py)."""
    prompts = sub.add_parser(
        "prompts",
        help="write prompt sets (the Lee et al. compositional family)",
        description="Prompt sets to generate images from and collect feedback on.",
        epilog="example:\n  prefalign data prompts compositional --out prompts.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = prompts.add_subparsers(dest="prompt_set", metavar="SET", required=True)
    c = which.add_parser(
        "compositional",
        help="objects x counts x colours x backgrounds, alone and combined (Lee et al.)",
        description="Write the compositional prompt family of Lee et al.: each object with a count "
        "(one to six), a colour, a background, and all of them combined.",
        epilog="examples:\n"
        "  prefalign data prompts compositional --out prompts.txt\n"
        "  prefalign data prompts compositional --categories count colour --out prompts.jsonl\n"
        "  prefalign data prompts compositional --family my-family.yaml --sample 500 --out prompts.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument(
        "--out", "-o", required=True, help=f"output file: {', '.join(PROMPT_FORMATS)} (by extension)"
    )
    c.add_argument(
        "--categories",
        nargs="+",
        default=["count", "colour", "background", "combined"],
        choices=["count", "colour", "background", "combined"],
        help="which kinds of prompt (default: all four)",
    )
    c.add_argument(
        "--family",
        metavar="FILE.yaml",
        help="word lists: objects, colours, backgrounds, counts (default: built in)",
    )
    c.add_argument("--sample", type=int, help="write a random sample of this many prompts")
    c.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    c.set_defaults(func=run_prompts)
    from prefalign.cli.common import guard_output

    guard_output(c, "out")


_EPILOGS = {
    "scorer": "examples:\n"
    "  prefalign train scorer --data my-choices --output_dir models/my-hps   # the paper's defaults\n"
    "  prefalign train scorer --data my-choices --base models/hps-v1 --output_dir models/hps-ft --max_steps 2000\n"
    "  prefalign train scorer --config recipe.yaml --resume_from_checkpoint   # continue the latest checkpoint\n"
    "  accelerate launch -m prefalign.cli.main train scorer --data my-choices --output_dir models/my-hps",
    "reward": "examples:\n"
    "  prefalign train reward --data my-labels --output_dir models/my-reward\n"
    "  prefalign train reward --data my-labels --family family.yaml --num_prompts 8 --output_dir models/my-reward",
}


def run_train(args: argparse.Namespace) -> int:
    from prefalign.train.loop import TrainingInterrupted

    config = config_from_args(args.config_cls, args)
    config.validate()
    trainer_cls = _import(TRAINERS[args.kind][1])
    try:
        result = trainer_cls(config).train()
    except TrainingInterrupted as exc:
        print(f"prefalign train {args.kind}: {exc}", file=sys.stderr)
        return 130
    if result.skipped:
        print(
            "skipped: " + ", ".join(f"{n} {reason}" for reason, n in result.skipped.items()), file=sys.stderr
        )
    key = "eval_accuracy" if args.kind == "scorer" else "eval_pairwise_accuracy"
    before = (result.eval_before or {}).get(key)
    after = (result.eval_after or {}).get(key)
    if after is not None:
        shown = f"{before:.4f} -> {after:.4f}" if before is not None else f"{after:.4f}"
        print(f"held-out {key.removeprefix('eval_').replace('_', ' ')}: {shown}", file=sys.stderr)
    print(f"wrote {result.model_dir} ({result.state.step} steps)")
    return 0


# ---------------------------------------------------------------------------- prompts
def run_prompts(args: argparse.Namespace) -> int:
    import json
    import random

    from prefalign.train.prompts import CompositionalFamily, compositional_prompts

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in PROMPT_FORMATS:
        raise CommandError(f"{out}: output must end in one of {', '.join(PROMPT_FORMATS)}")
    family = CompositionalFamily.from_yaml(args.family) if args.family else CompositionalFamily()
    prompts = list(compositional_prompts(family, args.categories))
    if args.sample is not None:
        if args.sample < 1:
            raise CommandError("--sample must be at least 1")
        prompts = random.Random(args.seed).sample(prompts, min(args.sample, len(prompts)))
    rows = [
        {
            "prompt": p.text,
            "category": p.category,
            "object": p.object,
            "count": p.count,
            "colour": p.colour,
            "background": p.background,
        }
        for p in prompts
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".txt":
        out.write_text("".join(r["prompt"] + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".jsonl":
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        from prefalign.cli.common import write_table

        write_table(rows, out, ("prompt", "category", "object", "count", "colour", "background"))
    print(f"wrote {len(rows)} prompts to {out}", file=sys.stderr)
    return 0
