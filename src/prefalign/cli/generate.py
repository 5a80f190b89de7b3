"""``prefalign generate``: images from a Stable Diffusion base (+ LoRA) into a dataset; best-of-n."""

from __future__ import annotations

import argparse
import sys

from prefalign.cli.main import CommandError
from prefalign.scoring.catalog import PRECISION_CHOICES, PRECISION_HELP


def parse_seeds(text: str) -> list[int]:
    """``0,1,2``, ``0-3`` or a mix (``0-3,10``) -> a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise CommandError(f"--seeds: cannot read {text!r} (use e.g. 0,1,2 or 0-15)") from None
    if not seeds:
        raise CommandError("--seeds: no seeds given")
    return seeds


def register(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.config import DEFAULT_GUIDANCE, DEFAULT_SCHEDULER, DEFAULT_STEPS

    p = sub.add_parser(
        "generate",
        help="generate images from a Stable Diffusion model (+ LoRA) into a dataset; best-of-n",
        description="Generate one image per prompt and seed into a dataset whose records carry the seed, "
        "model and settings in meta, so `eval compare` pairs base and adapted images by prompt and seed. "
        "With an adapter trained with an identifier (`adapt train-lora`), that identifier is the negative "
        "prompt unless --negative-prompt says otherwise. With --best-of K, each seed s draws K candidates "
        "(seeds s·K … s·K+K−1) and keeps the --keep M best by --scorer.",
        epilog="examples:\n"
        "  prefalign generate --base sd-v1-4 --prompts prompts.txt --seeds 0-3 --out gen-base\n"
        "  prefalign generate --base sd-v1-4 --lora lora --prompts prompts.txt --seeds 0-3 --out gen-lora\n"
        "  prefalign generate --base sd-v1-5 --prompts prompts.txt --best-of 16 --keep 4 --scorer models/reward "
        "--out gen-best",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--base",
        required=True,
        help="Stable Diffusion 1.x/2.x or SDXL (family read from the pipeline; SDXL through "
        "StableDiffusionXLPipeline): a diffusers directory, a hub id, or one .safetensors/.ckpt checkpoint "
        "(AUTOMATIC1111/ComfyUI style, loaded with diffusers' from_single_file)",
    )
    p.add_argument(
        "--lora", help="LoRA adapter: a directory (diffusers format) or a weights file (.safetensors)"
    )
    p.add_argument(
        "--lora-weight-name",
        metavar="NAME",
        help="the weight file of a --lora directory holding several (diffusers' weight_name)",
    )
    p.add_argument(
        "--prompts", required=True, help="text file with one prompt per line, or a dataset directory"
    )
    p.add_argument("--seeds", default="0", help="seeds, e.g. 0,1,2 or 0-15 (default 0)")
    p.add_argument("--out", "-o", required=True, help="output dataset directory")
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"denoising steps (default {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=DEFAULT_GUIDANCE,
        help=f"classifier-free guidance (default {DEFAULT_GUIDANCE})",
    )
    p.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER,
        choices=("pndm", "ddim", "dpm", "euler"),
        help=f"sampler (default {DEFAULT_SCHEDULER}, SD 1.x's; euler is SDXL's own)",
    )
    p.add_argument("--height", type=int, help="pixels (default: the model's native size)")
    p.add_argument("--width", type=int, help="pixels (default: --height)")
    p.add_argument(
        "--negative-prompt",
        help="negative prompt (default: the adapter's identifier if it has one; '' for none)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="images per UNet pass (default 4)")
    p.add_argument(
        "--best-of", type=int, default=1, help="candidates per seed for rejection sampling (default 1)"
    )
    p.add_argument("--keep", type=int, help="candidates kept per seed with --best-of (default 1)")
    p.add_argument("--scorer", help="model ranking the --best-of candidates (reward, HPS, PickScore ...)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default auto)")
    p.add_argument(
        "--scorer-precision", choices=PRECISION_CHOICES, default="auto", help="of --scorer: " + PRECISION_HELP
    )
    p.add_argument("--model-name", help="what meta.model says (default: base[+adapter])")
    p.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="weights' precision (default fp32, diffusers' default; fp16 needs a GPU)",
    )
    p.add_argument(
        "--lora-scale",
        type=float,
        default=1.0,
        help="strength of --lora: 1 as trained (default, diffusers'), 0 the base, in between a blend",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    from prefalign.cli.common import guard_output

    guard_output(p, "out", marker="records.parquet")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prefalign.adapt.generate import GenerationSettings, generate, read_prompts
    from prefalign.scoring.load import resolve_device

    prompts = read_prompts(args.prompts)
    seeds = parse_seeds(args.seeds)
    if args.keep is not None and args.best_of == 1:
        raise CommandError("--keep needs --best-of K")
    if args.best_of > 1 and not args.scorer:
        raise CommandError("--best-of needs --scorer MODEL to rank the candidates")
    out = Path(args.out)
    if (out / "records.parquet").exists():
        raise CommandError(f"{out}: already holds a dataset; choose a new --out")
    device = resolve_device(args.device)
    reward = None
    if args.scorer:
        from prefalign.adapt.rewards import reward_fn_from_scorer
        from prefalign.scoring import load_scorer

        scorer = load_scorer(args.scorer, device=device, precision=args.scorer_precision)
        print(f"{args.scorer}: {scorer.precision} ({scorer.precision_choice.reason})", file=sys.stderr)
        reward = reward_fn_from_scorer(scorer)
    settings = GenerationSettings(
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
        height=args.height,
        width=args.width,
        negative_prompt=args.negative_prompt,
        batch_size=args.batch_size,
        dtype=args.dtype,
        lora_scale=args.lora_scale,
    )
    report = generate(
        args.base,
        prompts,
        seeds,
        out,
        lora=args.lora,
        lora_weight_name=args.lora_weight_name,
        settings=settings,
        best_of=args.best_of,
        keep=args.keep,
        reward=reward,
        model_name=args.model_name,
        device=device,
        progress=not args.no_progress,
    )
    negative = f" (negative prompt {report.negative_prompt!r})" if report.negative_prompt else ""
    print(
        f"wrote {report.images} images of {report.candidates} generated to {out}{negative}", file=sys.stderr
    )
    return 0
