"""``prefalign adapt``: HPS-guided selection, LoRA with the identifier, reward-weighted fine-tuning.

Trainer options are generated from the config dataclasses (``prefalign.adapt.config``, on
``prefalign.training.TrainingConfig``) by ``transformers.HfArgumentParser``
(``prefalign.training.arguments``), so each default and help text lives in one place.
"""

from __future__ import annotations

import argparse
import sys

from prefalign.cli.common import add_precision_arg
from prefalign.cli.main import CommandError
from prefalign.training.arguments import add_trainer_parser, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt",
        help="align a Stable Diffusion model: select by HPS, train a LoRA, reward-weighted fine-tuning",
        description="Align a text-to-image generator with human preference (HPS section 6; Lee et al.).",
        epilog="examples (each subcommand's --help has more):\n"
        "  prefalign adapt select --data ddb --model hps-v1 --out selected\n"
        "  prefalign adapt train-lora --data selected --base sd-v1-4 --output_dir lora\n"
        "  prefalign adapt export-lora lora --format kohya --out hps-lora.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    adapt_sub = p.add_subparsers(dest="adapt_command", metavar="SUBCOMMAND", required=True)
    _register_select(adapt_sub)
    _register_train_lora(adapt_sub)
    _register_train_rwr(adapt_sub)
    _register_train_dpo(adapt_sub)
    _register_train_reward_backprop(adapt_sub)
    from prefalign.cli.export_lora import register_export_lora

    register_export_lora(adapt_sub)


# ---------------------------------------------------------------------- select
def _register_select(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.identifier import DEFAULT_IDENTIFIER
    from prefalign.adapt.selection import (
        AUTHORS,
        BLUR_MAX_DIFF,
        DEFAULT_ALPHA,
        DEFAULT_MIN_GROUP_SIZE,
        IMAGE_FILTERS,
        NO_FILTER,
        PAPER_AESTHETIC_THRESHOLD,
    )

    p = sub.add_parser(
        "select",
        help="build the LoRA training set: HPS-preferred and non-preferred images per prompt",
        description="Score each prompt's generated images with HPS; p = softmax of the group's HPS values "
        "(100·cos units). The best image is preferred if p > alpha/n; the worst (softmax of the negated "
        "scores) is non-preferred if its p > alpha/n, and its caption gets the identifier prefix. "
        "Writes an image-caption dataset (one image per record; meta.kind says which) and prints counts.",
        epilog="example (the paper's recipe; alpha = 2 was tuned on HPS v1 scores):\n"
        "  prefalign adapt select --data diffusiondb --model hps-v1 --out selected \\\n"
        "      --regularization laion --aesthetic-model aesthetic",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", required=True, help="dataset with one record per prompt and its generated images"
    )
    p.add_argument("--model", "-m", required=True, help="HPS model (directory, hub id or known name)")
    p.add_argument("--out", "-o", required=True, help="output dataset directory")
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"selection strictness: p > alpha/n (default {DEFAULT_ALPHA}, the paper's, tuned on HPS v1 scores)",
    )
    p.add_argument(
        "--identifier",
        default=DEFAULT_IDENTIFIER,
        help=f"prefix of non-preferred captions (default {DEFAULT_IDENTIFIER!r})",
    )
    p.add_argument(
        "--min-group-size",
        type=int,
        default=DEFAULT_MIN_GROUP_SIZE,
        help=f"skip prompts with fewer usable images (default {DEFAULT_MIN_GROUP_SIZE}, as the authors' "
        "selection script)",
    )
    p.add_argument(
        "--filter",
        dest="image_filter",
        choices=IMAGE_FILTERS,
        default=AUTHORS,
        help=f"image filter before scoring. authors (default, the authors' is_blurry): drop an image whose "
        f"largest signed left-minus-right pixel difference is < {BLUR_MAX_DIFF}, which also drops "
        f"dark-to-bright step edges and horizontal stripes; symmetric (ours): drop only images whose "
        f"absolute adjacent differences are < {BLUR_MAX_DIFF} both horizontally and vertically; none",
    )
    p.add_argument(
        "--keep-degenerate",
        action="store_const",
        dest="image_filter",
        const=NO_FILTER,
        help="same as --filter none",
    )
    p.add_argument(
        "--regularization",
        metavar="DATASET",
        help="real image-caption pairs to mix in (the paper: 200,231 LAION images with aesthetic score >= "
        f"{PAPER_AESTHETIC_THRESHOLD}); without them the selected set is not the paper's recipe",
    )
    p.add_argument("--aesthetic-model", help="aesthetic scorer for --aesthetic-threshold")
    p.add_argument(
        "--aesthetic-threshold",
        type=float,
        help="keep regularization images scoring at least this (default with --aesthetic-model: "
        f"{PAPER_AESTHETIC_THRESHOLD}, the paper's threshold)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default auto)")
    add_precision_arg(p)
    p.add_argument("--batch-size", type=int, default=4, help="images per scoring pass (default 4)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_select)
    from prefalign.cli.common import guard_output

    guard_output(p, "out", marker="records.parquet")


def run_select(args: argparse.Namespace) -> int:
    from prefalign.adapt.selection import PAPER_AESTHETIC_THRESHOLD, scorer_score_fn, select_training_set
    from prefalign.cli.common import format_table
    from prefalign.data import load_dataset
    from prefalign.scoring import load_scorer

    if args.aesthetic_threshold is not None and not args.aesthetic_model:
        raise CommandError("--aesthetic-threshold needs --aesthetic-model")
    if args.aesthetic_model and not args.regularization:
        raise CommandError("--aesthetic-model filters --regularization pairs; give --regularization too")
    threshold = args.aesthetic_threshold
    if args.aesthetic_model and threshold is None:
        threshold = PAPER_AESTHETIC_THRESHOLD
    data = load_dataset(args.data)
    progress = False if args.no_progress else None
    scorer = load_scorer(args.model, device=args.device, precision=args.precision)
    print(f"{args.model}: {scorer.precision} ({scorer.precision_choice.reason})", file=sys.stderr)
    if scorer.kind != "hps":
        print(
            f"warning: {args.model} is a {scorer.kind!r} scorer; alpha is calibrated for HPS (100·cos)",
            file=sys.stderr,
        )
    aesthetic = None
    if args.aesthetic_model:
        aesthetic = scorer_score_fn(
            load_scorer(args.aesthetic_model, device=args.device, precision=args.precision), progress=progress
        )
    report = select_training_set(
        data,
        scorer_score_fn(scorer, batch_size=args.batch_size, progress=progress),
        args.out,
        alpha=args.alpha,
        identifier=args.identifier,
        min_group_size=args.min_group_size,
        image_filter=args.image_filter,
        regularization=load_dataset(args.regularization) if args.regularization else None,
        aesthetic_fn=aesthetic,
        aesthetic_threshold=threshold,
    )
    print(format_table(report.as_rows(), ("count", "value")))
    print(
        f"wrote {report.preferred + report.non_preferred + report.regularization} pairs to {args.out}",
        file=sys.stderr,
    )
    for failure in report.failures:
        print(f"  skipped: {failure}", file=sys.stderr)
    if report.degenerate:
        print(f"dropped {report.degenerate} images by the {args.image_filter!r} filter", file=sys.stderr)
    if report.groups_too_small:
        print(
            f"skipped {report.groups_too_small} of {report.groups} prompts with fewer than "
            f"{args.min_group_size} usable images",
            file=sys.stderr,
        )
    if not args.regularization:
        print("no regularisation set (--regularization): not the paper's recipe", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- trainers
# What a diffusion training run writes into OUTPUT_DIR (a LoRA run, or a full-UNet run's pipeline).
RUN_OUTPUTS = frozenset(
    {
        "pytorch_lora_weights.safetensors",
        "prefalign_adapter.json",
        "prefalign_finetune.json",
        "training_log.jsonl",
        "checkpoints",
        "validation",
        "merged",
        "model_index.json",
        "unet",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "feature_extractor",
        "safety_checker",
    }
)


def _check_out(config) -> None:
    """A non-empty OUTPUT_DIR: continued with --resume_from_checkpoint, replaced with --overwrite
    (only when it holds nothing but a run's outputs), refused otherwise."""
    import os
    import shutil
    from pathlib import Path

    out = Path(config.output_dir)
    if not (out.is_dir() and any(out.iterdir())) or config.resume_from_checkpoint:
        if out.is_file():
            raise CommandError(f"{out}: is a file; --output_dir must be a directory")
        return
    if not config.overwrite:
        raise CommandError(
            f"{out}: already exists; pass --overwrite to replace it, --resume_from_checkpoint to continue its "
            "run, or choose another --output_dir"
        )
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_OUTPUTS)
    if foreign:
        raise CommandError(
            f"{out}: --overwrite replaces a training run's output only, and this directory also holds "
            f"{', '.join(foreign[:5])}; choose another --output_dir"
        )
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch, the first process clears it
        shutil.rmtree(out, ignore_errors=True)


def _register_train_lora(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.config import LoraTrainingConfig

    p = add_trainer_parser(
        sub,
        "train-lora",
        LoraTrainingConfig,
        help="train a LoRA adapter on the selected set (HPS section 6)",
        description="Train a peft LoRA on the UNet's to_q, to_k, to_v, to_out.0 (base UNet, VAE and text "
        "encoder frozen) with the ε-prediction MSE. The paper's recipe mixes regularisation images (LAION, "
        "aesthetic score >= 6.5) into the data (`adapt select --regularization`); without them the log and "
        "prefalign_adapter.json say so. Images: shorter side to --resolution (bilinear), random square crop "
        "(--center-crop: the centre), as the authors' script. Saves diffusers' LoRA format "
        "(pytorch_lora_weights.safetensors, loadable by StableDiffusionPipeline.load_lora_weights) and "
        "prefalign_adapter.json with the identifier that `prefalign generate` uses as negative prompt.",
        epilog="examples:\n"
        "  prefalign adapt train-lora --data selected --base sd-v1-4 --output_dir lora\n"
        "  accelerate launch -m prefalign.cli.main adapt train-lora --data selected --base sd-v1-4 "
        "--output_dir lora\n"
        "  prefalign adapt train-lora --data selected --base sd-v1-4 --output_dir lora --resume_from_checkpoint\n"
        "  prefalign adapt train-lora --config recipe.yaml --max_steps 2000   (the command line wins)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run_train_lora)


def run_train_lora(args: argparse.Namespace) -> int:
    from prefalign.adapt.config import LoraTrainingConfig
    from prefalign.adapt.lora import train_lora

    config = config_from_args(LoraTrainingConfig, args)
    config.validate()
    _check_out(config)
    out = train_lora(config)
    print(f"adapter saved to {out}", file=sys.stderr)
    _print_recipe_notes(out)
    return 0


def _print_recipe_notes(out) -> None:
    """Repeat the run's departures from the paper's recipe (recorded with the result) at the end."""
    import json
    from pathlib import Path

    for name in ("prefalign_adapter.json", "prefalign_finetune.json"):
        info_file = Path(out) / name
        if info_file.is_file():
            for note in json.loads(info_file.read_text(encoding="utf-8")).get("recipe_notes", []):
                print(f"note: {note}", file=sys.stderr)


def _register_train_rwr(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.config import RewardWeightedConfig

    p = add_trainer_parser(
        sub,
        "train-rwr",
        RewardWeightedConfig,
        help="reward-weighted fine-tuning with a pre-training term (Lee et al.)",
        description="loss = mean r(x,z)·||ε − ε_θ(x_t, t, z)||² over model-generated pairs + β · mean "
        "||ε − ε_θ||² over pre-training pairs. Rewards are the records' human ratings where present, else "
        "the --reward model's scores for the rest, mapped to [0, 1] by --reward-transform (Lee et al.'s rewards "
        "are probabilities). Trains the whole UNet with the text encoder frozen (default, as Lee et al.; saves a "
        "full Stable Diffusion directory) or a LoRA adapter (--train lora). Defaults marked 'ours' are this "
        "toolkit's, not the paper's.",
        epilog="examples:\n"
        "  prefalign adapt train-rwr --data generated --reward models/reward --prior-data laion-subset \\\n"
        "      --base sd-v1-5 --output_dir rwr\n"
        "  prefalign adapt train-rwr --data generated --reward hps-v2 --reward-transform minmax --train lora \\\n"
        "      --prior-data laion-subset --base sd-v1-5 --output_dir rwr-lora",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run_train_rwr)


def run_train_rwr(args: argparse.Namespace) -> int:
    from prefalign.adapt.config import RewardWeightedConfig
    from prefalign.adapt.reward_weighted import train_reward_weighted

    config = config_from_args(RewardWeightedConfig, args)
    config.validate()
    _check_out(config)
    out = train_reward_weighted(config)
    print(f"saved to {out}", file=sys.stderr)
    _print_recipe_notes(out)
    return 0


def _register_train_dpo(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.dpo import DPOConfig

    p = add_trainer_parser(
        sub,
        "train-dpo",
        DPOConfig,
        help="Diffusion-DPO on human preference pairs (Wallace et al., 2023)",
        description="loss = -log σ(-β/2 · ((‖ε − ε_θ(x_w,t)‖² − ‖ε − ε_ref(x_w,t)‖²) − (‖ε − ε_θ(x_l,t)‖² − "
        "‖ε − ε_ref(x_l,t)‖²))), errors averaged over the latent's values, one noise and timestep per pair, "
        "as the authors' train.py. Pairs: a choice among n gives the chosen image against each other; ranks "
        "or ratings give every pair that differs; ties are skipped and counted. The reference is the base: "
        "for a LoRA run (default) the UNet with its adapter disabled. Logs loss, implicit_accuracy, "
        "reward_margin (mean of -β/2·(d_θ − d_ref)), model_mse and ref_mse to training_log.jsonl.",
        epilog="example:\n  prefalign adapt train-dpo --data pickapic --base sd-v1-5 --output_dir dpo-lora",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run_train_dpo)


def run_train_dpo(args: argparse.Namespace) -> int:
    from prefalign.adapt.dpo import DPOConfig, train_dpo

    config = config_from_args(DPOConfig, args)
    _check_out(config)
    out = train_dpo(config)
    print(f"saved to {out}", file=sys.stderr)
    _print_recipe_notes(out)
    return 0


def _register_train_reward_backprop(sub: argparse._SubParsersAction) -> None:
    from prefalign.adapt.reward_backprop import RewardBackpropConfig

    p = add_trainer_parser(
        sub,
        "train-reward-backprop",
        RewardBackpropConfig,
        help="backpropagate a differentiable reward through the sampler (DRaFT-K, ReFL)",
        description="Sample from fresh noise with DDIM, decode with the VAE, score the pixels with the --reward "
        "scorers (a weighted sum, differentiable: score_pixels) and follow the gradient into the UNet (LoRA by "
        "default). draft (Clark et al., 2023): gradients through the last --truncation_steps K of "
        "--num_inference_steps (K=1, 50 steps, guidance 7.5), loss = -reward. refl (ImageReward's ReFL.py): a "
        "random step in 30..39 of 40, x0 predicted from it with one gradient step, loss = 1e-3 * relu(2 - "
        "reward). --pretraining_data adds the denoising MSE on real images against reward hacking. The reward "
        "of held-out prompts (fixed noise) is logged to training_log.jsonl before training and every "
        "--eval_steps (eval_reward_mean).",
        epilog="examples:\n"
        "  prefalign adapt train-reward-backprop --reward hps-v2 --prompts prompts.txt --base sd-v1-5 "
        "--output_dir draft\n"
        "  prefalign adapt train-reward-backprop --reward hps-v2:1 --reward aesthetic:0.05 --mode refl \\\n"
        "      --prompts prompts.txt --pretraining_data laion-subset --base sd-v1-5 --output_dir refl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run_train_reward_backprop)


def run_train_reward_backprop(args: argparse.Namespace) -> int:
    from prefalign.adapt.reward_backprop import RewardBackpropConfig, train_reward_backprop

    config = config_from_args(RewardBackpropConfig, args)
    assert isinstance(config, RewardBackpropConfig)
    config.validate()
    _check_out(config)
    out = train_reward_backprop(config)
    print(f"saved to {out}", file=sys.stderr)
    _print_recipe_notes(out)
    return 0
