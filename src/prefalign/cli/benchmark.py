"""``prefalign benchmark run|compare|prompts``: rank text-to-image models by preference scorers.

Thin: parse, load the prompt set and scorers, call ``prefalign.benchmark``, print the ranking.
Under ``accelerate launch`` every process generates and scores a share; only the first writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefalign.cli.common import add_precision_arg
from prefalign.cli.main import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.config import DEFAULT_GUIDANCE, DEFAULT_SCHEDULER, DEFAULT_STEPS

    p = sub.add_parser(
        "benchmark",
        help="rank text-to-image models by preference scorers on standard prompt sets (leaderboard)",
        description="Generate (or reuse) images per model, prompt and seed, score them with every scorer, "
        "and write a leaderboard: each scorer's mean per model with a bootstrap interval over prompts, "
        "paired win rates with a sign test, and per-category means.",
        epilog="examples (each subcommand's --help has more):\n"
        "  prefalign benchmark run --prompts parti --model sd-v1-5 --scorer hps-v2 --out runs/parti\n"
        "  prefalign benchmark compare runs/2026-11 runs/parti",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = p.add_subparsers(dest="benchmark_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    run = cmds.add_parser(
        "run",
        help="generate, score and write OUT/leaderboard.{json,md,html}",
        description="Images go to OUT/images/MODEL/INDEX-sSEED.png, written one by one: re-running the same "
        "command after an interruption keeps every finished image and generates only the missing ones. "
        "With --images DIR, images made elsewhere are scored instead (DIR/MODEL/ holds files named "
        "INDEX-sSEED.png, INDEX_SEED.png or INDEX.png (seed 0, as HPS v2's benchmark folders), or a dataset "
        "from `prefalign generate`, paired by prompt text and meta.seed). Writes OUT/scores.parquet (every "
        "image's score), OUT/leaderboard.json, OUT/leaderboard.md (+ OUT/plots/) and a self-contained "
        "OUT/leaderboard.html. The first scorer ranks the models.",
        epilog="examples:\n"
        "  prefalign benchmark run --models sd14=CompVis/stable-diffusion-v1-4 tuned=sd-v1-4+lora/ \\\n"
        "      --prompts parti --limit 200 --seeds 0-3 --scorers hps-v2 pickscore --out bench/\n"
        "  prefalign benchmark run --images hpsv2-images/ --prompts prompts.tsv --scorers hps-v2.1 --out bench/\n"
        "  accelerate launch -m prefalign.cli.main benchmark run ... (one GPU per process)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="[NAME=]BASE[+LORA]",
        help="Stable Diffusion 1.x bases (diffusers directory or hub id), optionally +LoRA adapter directory; "
        "with --images, the model folders to use (default: all)",
    )
    run.add_argument("--images", metavar="DIR", help="score images generated elsewhere: DIR/MODEL/ per model")
    run.add_argument(
        "--prompts",
        required=True,
        metavar="SET",
        help="parti (PartiPrompts, shipped, Apache-2.0), lee-compositional (Lee et al.'s family), or a file: "
        ".txt one prompt a line, .tsv/.csv/.jsonl with a prompt column and optional category",
    )
    run.add_argument(
        "--limit", type=int, help="at most N prompts, taken round-robin across categories (ours)"
    )
    run.add_argument("--categories", nargs="+", metavar="CATEGORY", help="only prompts of these categories")
    run.add_argument(
        "--seeds",
        help="seeds, e.g. 0-3 or 0,1,5 (default: 0 when generating, every seed found with --images)",
    )
    run.add_argument(
        "--scorers",
        nargs="+",
        required=True,
        metavar="SCORER",
        help="model directories, hub ids or known names (hps-v2, pickscore ...; see `prefalign score "
        "--list-models`), clip:MODEL, random; the first ranks the models",
    )
    run.add_argument("--out", "-o", required=True, help="run directory (reused: existing images are kept)")
    run.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"denoising steps (default {DEFAULT_STEPS}, SD's)"
    )
    run.add_argument(
        "--guidance",
        type=float,
        default=DEFAULT_GUIDANCE,
        help=f"classifier-free guidance (default {DEFAULT_GUIDANCE}, SD's)",
    )
    run.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER,
        choices=("pndm", "ddim", "dpm"),
        help=f"sampler (default {DEFAULT_SCHEDULER}, SD's)",
    )
    run.add_argument("--height", type=int, help="pixels (default: the model's native size)")
    run.add_argument("--width", type=int, help="pixels (default: --height)")
    run.add_argument(
        "--negative-prompt", help="negative prompt (default: a LoRA's identifier if it has one; '' for none)"
    )
    run.add_argument("--gen-batch-size", type=int, default=4, help="images per UNet pass (default 4)")
    run.add_argument("--batch-size", type=int, default=4, help="images per scorer pass (default 4)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default auto)")
    add_precision_arg(run)
    run.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples of the intervals (default 1000, ours)",
    )
    run.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    run.set_defaults(func=run_command)

    cmp = cmds.add_parser(
        "compare",
        help="diff two leaderboards (means, intervals, ranks)",
        description="Per model and scorer in both: old and new mean, the difference, and whether the bootstrap "
        "intervals overlap; rank changes; models only in one. Warns when prompt sets or seeds differ.",
        epilog="example:\n  prefalign benchmark compare runs/2026-11 runs/2026-12 --out changes.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp.add_argument("old", help="OLD leaderboard.json or its run directory")
    cmp.add_argument("new", help="NEW leaderboard.json or its run directory")
    cmp.add_argument("--out", "-o", help="also write the comparison as JSON (.json) or Markdown (.md)")
    cmp.set_defaults(func=compare_command)

    prompts = cmds.add_parser(
        "prompts",
        help="list the shipped prompt sets, or a set's categories",
        epilog="examples:\n  prefalign benchmark prompts\n  prefalign benchmark prompts parti",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prompts.add_argument("set", nargs="?", help="a set name or file: print its categories and counts")
    prompts.set_defaults(func=prompts_command)


def _parse_seeds(text: str) -> list[int]:
    from prefalign.cli.generate import parse_seeds

    return parse_seeds(text)


def run_command(args: argparse.Namespace) -> int:
    from prefalign.benchmark import load_prompt_set, parse_model, run_benchmark
    from prefalign.evaluate.scorers import load_eval_scorer
    from prefalign.scoring.load import resolve_device

    prompt_set = load_prompt_set(args.prompts, limit=args.limit, categories=args.categories)
    # Default seeds: 0 when generating; with --images, every seed found ([]).
    default_seeds: list[int] = [] if args.images else [0]
    seeds = _parse_seeds(args.seeds) if args.seeds is not None else default_seeds
    if args.images:
        models = [parse_model(f"{m}={m}") for m in args.models]
    else:
        if not args.models:
            raise CommandError("give --models NAME=BASE ... to generate, or --images DIR")
        models = [parse_model(m) for m in args.models]
    device = resolve_device(args.device)
    scorers = []
    for name in args.scorers:
        scorer = load_eval_scorer(name, device=device, precision=args.precision)
        if Path(name).exists():  # a model directory: its folder name heads the tables (ours)
            scorer.name = Path(name).resolve().name
        scorers.append(scorer)
    settings = None
    if not args.images:
        from prefalign.adapt.generate import GenerationSettings

        settings = GenerationSettings(
            steps=args.steps,
            guidance=args.guidance,
            scheduler=args.scheduler,
            height=args.height,
            width=args.width,
            negative_prompt=args.negative_prompt,
            batch_size=args.gen_batch_size,
        )
    result = run_benchmark(
        prompt_set,
        scorers,
        args.out,
        models=models,
        seeds=seeds,
        images=args.images,
        settings=settings,
        device=device,
        batch_size=args.batch_size,
        n_bootstrap=args.bootstrap,
        level=args.level,
    )
    if not result.paths:  # not the writing process
        return 0
    board = result.leaderboard
    if result.generation:
        for m in result.generation.generated:
            print(
                f"{m}: {result.generation.generated[m]} images generated, {result.generation.reused[m]} reused",
                file=sys.stderr,
            )
    first = board.ranking_scorer
    for i, m in enumerate(board.ranking, 1):
        r = board.results[m][first]
        print(
            f"{i}. {m}: {first} {r['mean']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] ({r['n_images']} images)"
        )
    for note in board.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.paths['html']} and {result.paths['json']}", file=sys.stderr)
    return 0


def compare_command(args: argparse.Namespace) -> int:
    import json

    from prefalign.benchmark.compare import compare_leaderboards, format_comparison, read_leaderboard
    from prefalign.files import write_atomic

    diff = compare_leaderboards(read_leaderboard(args.old), read_leaderboard(args.new))
    text = format_comparison(diff)
    print(text, end="")
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() == ".json":
            write_atomic(out, json.dumps(diff, indent=2) + "\n")
        elif out.suffix.lower() == ".md":
            write_atomic(out, text)
        else:
            raise CommandError(f"{out}: --out must end in .json or .md")
        print(f"wrote {out}", file=sys.stderr)
    return 0


def prompts_command(args: argparse.Namespace) -> int:
    from collections import Counter

    from prefalign.benchmark.prompts import BUILTIN_SETS, load_prompt_set

    if not args.set:
        for name, (description, source, license_) in BUILTIN_SETS.items():
            print(f"{name}: {description}\n    source: {source}\n    license: {license_}")
        return 0
    ps = load_prompt_set(args.set)
    print(f"{ps.name}: {ps.total} prompts")
    for category, n in Counter(p.category for p in ps.prompts if p.category).items():
        print(f"  {category}: {n}")
    return 0
