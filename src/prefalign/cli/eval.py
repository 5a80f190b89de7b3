"""``prefalign eval``: do metrics agree with people? The HPS paper's tables as commands.

Thin: parse, load scorers and datasets, call ``prefalign.evaluate``, print a table, write the
report (JSON + Markdown + HTML with plots). Under ``accelerate launch`` every process scores a
shard; only the first prints and writes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from prefalign.cli.main import CommandError

SCORER_HELP = (
    "a scorer: model directory, hub id or known name; clip:MODEL (cosine), aesthetic:MODEL, hps:MODEL; "
    "random (or random:SEED) for the chance baseline. Repeat for several scorers"
)


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions to the terminal; keeps the example lines of an epilog as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate scorers and image sets against human preference (accuracy, agreement, IS/FID, compare)",
        description="Measure whether metrics agree with people. Each subcommand prints a table and writes "
        "OUT/report.json, OUT/report.md, OUT/report.html (plots embedded) and OUT/plots/*.png.",
        epilog="examples (each subcommand's --help has more):\n"
        "  prefalign eval preference --data hpd-test --model hps-v2 --model clip --out eval-pref\n"
        "  prefalign eval compare --a gen-base --b gen-lora --model hps-v2 --out compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evals = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    pref = evals.add_parser(
        "preference",
        help="preference accuracy of scorers on a labelled dataset (Table 2)",
        description="Preference accuracy of each scorer with 95% bootstrap CIs: top-1 among n for single "
        "choices (random baseline = mean of 1/n), pairwise accuracy for pairs and rankings (label ties "
        "skipped; pooled and per-prompt averaged), HPS v2's inversion score for rankings, and tie-aware "
        "accuracy for pairs labelled with ties (threshold tuned on the split named validation).",
        epilog="examples:\n"
        "  prefalign eval preference --data choices/ --model random --model clip:models/hps-v2 --model models/hps-v2\n"
        "  prefalign eval preference --data pickapic/ --split test --model pickscore --out reports/pick",
        formatter_class=_HelpFormatter,
    )
    pref.add_argument(
        "--data", required=True, metavar="DATASET_DIR", help="a dataset with chosen/ranks/ratings"
    )
    _add_scorer_args(pref, required=True)
    pref.add_argument(
        "--split",
        help="the split to evaluate (default: test when the data have one, else the data's only split; "
        "ours, as the papers report test accuracy). 'all' evaluates every split together (records a model "
        "was trained on included, and stated). Validation records not evaluated tune the tie threshold",
    )
    pref.add_argument(
        "--tie-threshold", type=float, help="fixed tie threshold of tie-aware accuracy (default: tuned)"
    )
    _add_common_args(pref, "eval-preference")
    pref.set_defaults(func=run_preference_command)
    from prefalign.cli.common import guard_output

    guard_output(pref, "out", marker="report.json")

    agr = evals.add_parser(
        "agreement",
        help="agreement of scorers and people with each participant (Table 3)",
        description="For pairwise votes by several participants: each scorer's agreement with each "
        "participant and each participant's agreement with the others, as mean ± std over participants. "
        "A votes dataset has one record per vote: images=[a, b], chosen=0/1 (ranks=[0, 0] for a tie), "
        "user=participant id, meta.item=an id shared by the votes on one pair.",
        epilog="example:\n  prefalign eval agreement --votes study-export/ --model models/hps-v2 --model clip:openai/clip-vit-large-patch14",
        formatter_class=_HelpFormatter,
    )
    agr.add_argument("--votes", required=True, metavar="DATASET_DIR", help="the votes dataset")
    _add_scorer_args(agr, required=False)
    _add_common_args(agr, "eval-agreement")
    agr.set_defaults(func=run_agreement_command)
    from prefalign.cli.common import guard_output

    guard_output(agr, "out", marker="report.json")

    img = evals.add_parser(
        "images",
        help="IS, FID, CLIP score, aesthetic, HPS of an image set (Tables 1 and 4)",
        description="Image-set metrics; for a choice dataset also split into preferred vs non-preferred "
        "images. IS and FID use the standard Inception v3 from a local weights file (never downloaded): "
        "pass --inception-weights, or --feature-extractor for your own network.",
        epilog="example:\n  prefalign eval images --images generated/ --reference coco-val/ --metrics is,fid,clip,hps "
        "--clip-model openai/clip-vit-large-patch14 --hps-model models/hps-v2 --inception-weights pt_inception.pth",
        formatter_class=_HelpFormatter,
    )
    img.add_argument(
        "--images", required=True, metavar="DIR", help="a dataset directory, or a folder of images"
    )
    img.add_argument("--reference", metavar="DIR", help="reference images for FID (dataset or folder)")
    img.add_argument(
        "--metrics", default="clip,hps", help="comma-separated: is,fid,clip,aesthetic,hps (default clip,hps)"
    )
    img.add_argument("--clip-model", help="model of the clip metric (scored as cosine, 0.28 scale)")
    img.add_argument(
        "--aesthetic-model", help="model of the aesthetic metric (a converted LAION aesthetic model)"
    )
    img.add_argument("--hps-model", help="model of the hps metric (an HPS model directory)")
    img.add_argument(
        "--inception-weights",
        metavar="FILE",
        help="torch-fidelity's Inception v3 weights file (default: $PREFALIGN_INCEPTION_WEIGHTS, else the torch hub checkpoint path)",
    )
    img.add_argument(
        "--feature-extractor",
        metavar="MODULE:FUNCTION",
        help="a function returning an nn.Module that maps uint8 (n, 3, s, s) images to (n, d) features "
        "(logits for IS), used instead of Inception",
    )
    img.add_argument(
        "--image-size", type=int, default=299, help="square size given to the extractor (default 299)"
    )
    img.add_argument("--splits", type=int, default=10, help="IS splits (default 10)")
    _add_runtime_args(img)
    _add_common_args(img, "eval-images", bootstrap=False)
    img.set_defaults(func=run_images_command)
    from prefalign.cli.common import guard_output

    guard_output(img, "out", marker="report.json")

    cmp_ = evals.add_parser(
        "compare",
        help="two generated sets of the same prompts and seeds, pair by pair",
        description="Per scorer: mean score of A and of B, B's paired win rate (95% CI) and a two-sided sign "
        "test. Images pair up by prompt and meta['seed']. With --votes, the A/B study's vote histogram.",
        epilog="example:\n  prefalign eval compare --a base/ --b adapted/ --model models/hps-v2 --model clip:models/hps-v2",
        formatter_class=_HelpFormatter,
    )
    cmp_.add_argument("--a", required=True, metavar="DIR", help="set A (e.g. the base model's images)")
    cmp_.add_argument("--b", required=True, metavar="DIR", help="set B (e.g. the adapted model's images)")
    cmp_.add_argument("--votes", metavar="DIR", help="votes of an A/B study on pairs of A and B images")
    _add_scorer_args(cmp_, required=True)
    _add_common_args(cmp_, "eval-compare")
    cmp_.set_defaults(func=run_compare_command)
    from prefalign.cli.common import guard_output

    guard_output(cmp_, "out", marker="report.json")


# ---------------------------------------------------------------------------- arguments
def _add_scorer_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--model", "-m", action="append", default=[], required=required, metavar="SCORER", help=SCORER_HELP
    )
    _add_runtime_args(p)


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu, cuda:1 ... (default auto)"
    )
    from prefalign.cli.common import add_precision_arg

    add_precision_arg(p)
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--compile", action="store_true", help="torch.compile the image towers")


def _add_common_args(p: argparse.ArgumentParser, default_out: str, *, bootstrap: bool = True) -> None:
    p.add_argument("--out", "-o", default=default_out, help=f"report directory (default {default_out})")
    if bootstrap:
        p.add_argument(
            "--bootstrap", type=int, default=1000, help="bootstrap replicates of the CIs (default 1000)"
        )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap / IS splits (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _progress(args) -> bool | None:
    return False if args.no_progress else None


def _load_scorers(names: list[str], args) -> list:
    from prefalign.evaluate import load_eval_scorer

    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    return [
        load_eval_scorer(n, device=args.device, precision=args.precision, compile=args.compile) for n in names
    ]


def _is_main() -> bool:
    from prefalign.evaluate.distributed import process_group

    return process_group()[0] == 0


def _finish(table: str, paths: dict, scorers=()) -> int:
    from prefalign.cli.common import describe_scorer

    print(table)
    for scorer in scorers:  # which kind each scorer used, and what decided it
        print(describe_scorer(scorer).replace("scoring with", "scorer"))
    print(f"\nreport: {paths['html']} (also {paths['markdown'].name}, {paths['json'].name})", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- commands
def run_preference_command(args: argparse.Namespace) -> int:
    from prefalign.cli.common import format_table
    from prefalign.data import load_dataset
    from prefalign.evaluate import run_preference, write_preference_report

    dataset = load_dataset(args.data)
    scorers = _load_scorers(args.model, args)
    run = run_preference(
        dataset,
        scorers,
        split=args.split,
        tie_threshold=args.tie_threshold,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=_progress(args),
    )
    if not _is_main():
        return 0
    paths = write_preference_report(run, args.out)
    rows = []
    for name in run.scorers:
        r = run.results[name]
        row = {"scorer": name}
        for field in ("top1", "pairwise_pooled", "pairwise_per_prompt", "inversion", "tie_aware"):
            e = getattr(r, field)
            row[field] = None if e is None else f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"
        rows.append(row)
    columns = ["scorer"] + [
        c
        for c in ("top1", "pairwise_pooled", "pairwise_per_prompt", "inversion", "tie_aware")
        if any(r[c] for r in rows)
    ]
    table = format_table(rows, columns)
    table += f"\nevaluated: {run.selection['how']}"
    baseline = next(iter(run.results.values())).random_baseline
    if baseline is not None:
        table += f"\nrandom baseline of top1 (mean of 1/n): {baseline:.3f}"
    return _finish(table, paths, scorers)


def run_agreement_command(args: argparse.Namespace) -> int:
    from prefalign.cli.common import format_table
    from prefalign.data import load_dataset
    from prefalign.evaluate import run_agreement, write_agreement_report

    votes = load_dataset(args.votes)
    scorers = _load_scorers(args.model, args)
    run = run_agreement(votes, scorers, batch_size=args.batch_size, progress=_progress(args))
    if not _is_main():
        return 0
    paths = write_agreement_report(run, args.out)
    r = run.result
    entries = list(r.scorers.items()) + [("human (vs the others)", r.human)]
    rows = [
        {
            "": name,
            "agreement": None if s is None else f"{s.mean:.3f} ± {s.std:.3f}",
            "participants": 0 if s is None else s.n_participants,
        }
        for name, s in entries
    ]
    return _finish(format_table(rows, ["", "agreement", "participants"]), paths, scorers)


def _feature_extractor(spec: str | None):
    if not spec:
        return None
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise CommandError(f"--feature-extractor {spec}: expected MODULE:FUNCTION")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"--feature-extractor {spec}: cannot import ({exc})") from None
    return factory()


def run_images_command(args: argparse.Namespace) -> int:
    from prefalign.cli.common import format_table
    from prefalign.evaluate import IMAGE_METRICS, run_images, write_images_report

    metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(metrics) - set(IMAGE_METRICS))
    if unknown or not metrics:
        raise CommandError(f"--metrics: unknown {unknown}; choose from {','.join(IMAGE_METRICS)}")
    models = {"clip": args.clip_model, "aesthetic": args.aesthetic_model, "hps": args.hps_model}
    scorers = {}
    for m in ("clip", "aesthetic", "hps"):
        if m not in metrics:
            continue
        if not models[m]:
            raise CommandError(f"the {m} metric needs --{m}-model")
        name = models[m]
        if not name.startswith(f"{m}:"):
            # the metric fixes the score kind (the CLIP score is plain cosine, HPS 100 * cosine),
            # whatever a plain model directory would default to
            name = f"{m}:{name}"
        scorers[m] = _load_scorers([name], args)[0]
    feature = _feature_extractor(args.feature_extractor)
    run = run_images(
        args.images,
        metrics,
        reference=args.reference,
        scorers=scorers,
        is_feature=feature,
        fid_feature=feature,
        image_size=args.image_size,
        inception_weights=args.inception_weights,
        splits=args.splits,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=_progress(args),
    )
    if not _is_main():
        return 0
    paths = write_images_report(run, args.out)
    rows = []
    for group, values in run.groups.items():
        row = {"images": group}
        for m in metrics:
            v = values.get(m)
            row[m] = None if v is None else v.get("value", v.get("mean"))
        rows.append(row)
    table = format_table(rows, ["images", *metrics])
    for note in run.notes:
        table += f"\nnote: {note}"
    return _finish(table, paths, scorers.values())


def run_compare_command(args: argparse.Namespace) -> int:
    from prefalign.cli.common import format_table
    from prefalign.data import load_dataset
    from prefalign.evaluate import run_compare, write_compare_report

    a, b = load_dataset(args.a), load_dataset(args.b)
    votes = load_dataset(args.votes) if args.votes else None
    scorers = _load_scorers(args.model, args)
    run = run_compare(
        a,
        b,
        scorers,
        votes=votes,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=_progress(args),
    )
    if not _is_main():
        return 0
    paths = write_compare_report(run, args.out)
    rows = [
        {
            "scorer": n,
            "mean_a": r.mean_a,
            "mean_b": r.mean_b,
            "win_rate_b": r.win_rate_b,
            "sign_test_p": r.sign_test_p,
        }
        if r
        else {"scorer": n}
        for n, r in run.results.items()
    ]
    table = format_table(rows, ["scorer", "mean_a", "mean_b", "win_rate_b", "sign_test_p"])
    if run.votes:
        v = run.votes
        table += f"\nA/B study: {v['votes_b']} votes for B, {v['votes_a']} for A, {v['ties']} ties"
        if v.get("share_b_ci"):
            low, high = v["share_b_ci"]
            table += (
                f"; share for B {v['share_b']:.3f} [{low:.3f}, {high:.3f}] (95% Wilson), "
                f"sign test p = {v['sign_test_p']:.4f}"
            )
    return _finish(table, paths, scorers)
