"""``prefalign score``: score image files or a dataset with any scorer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefalign.cli.common import add_model_args, describe_scorer, format_table, write_table
from prefalign.cli.main import CommandError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
COLUMNS = ("image", "prompt", "score")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score images against a prompt, or a whole dataset",
        description="Score images with a preference model (HPS, PickScore, CLIP score, aesthetic, your own). "
        "Writes a table with the columns image, prompt, score (plus id, index for --data). Images that "
        "cannot be scored are listed with the reason; the run goes on and exits 1 (use --strict to stop "
        "at the first).",
        epilog="examples:\n"
        "  prefalign score out/*.png --prompt 'a red circle' --model models/hps-v2\n"
        "  prefalign score --data my-dataset --model pickscore --out scores.parquet\n"
        "  torchrun --nproc_per_node 4 -m prefalign.cli.main score --data my-dataset -m pickscore -o s.parquet\n"
        "      (or accelerate launch: records are sharded across processes and gathered in order)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR", help="image files or directories of images")
    p.add_argument("--prompt", "-p", help="the prompt the images were generated from (with IMAGE_OR_DIR)")
    p.add_argument("--data", metavar="DATASET_DIR", help="score every image of a prefalign dataset")
    add_model_args(p, required=False)
    p.add_argument("--out", "-o", help="write the table to FILE.parquet or FILE.csv (default: print it)")
    p.add_argument("--strict", action="store_true", help="stop at the first image that cannot be scored")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list-models", action="store_true", help="list the known model names and exit")
    p.set_defaults(func=run)
    from prefalign.cli.common import guard_output

    guard_output(p, "out")


def expand_images(paths: list[str]) -> list[str]:
    """Directories become their image files (sorted, not recursive); files stay as given."""
    out: list[str] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                print(f"warning: {given}: no image files in this directory", file=sys.stderr)
            out.extend(found)
        else:
            out.append(given)  # files that cannot be read are reported by the scorer with the others
    return out


def run(args: argparse.Namespace) -> int:
    from prefalign.scoring import list_scorers, load_scorer

    if args.list_models:
        print("\n".join(list_scorers()))
        return 0
    if not args.model:
        raise CommandError("--model is required")
    if bool(args.data) == bool(args.images):
        raise CommandError("give either IMAGE_OR_DIR... with --prompt, or --data DATASET_DIR")
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")

    rows: list[dict] = []
    columns: tuple[str, ...] = COLUMNS
    if args.data:
        from prefalign.data import load_dataset

        dataset = load_dataset(args.data)
        records = [(r.prompt, [dataset.image_path(i) for i in r.images]) for r in dataset]
        rows = [
            {"id": r.id, "index": i, "image": img, "prompt": r.prompt}
            for r in dataset
            for i, img in enumerate(r.images)
        ]
        columns = ("id", "index", *COLUMNS)
    else:
        if args.prompt is None:
            raise CommandError("--prompt is required with IMAGE_OR_DIR")
        missing = [given for given in args.images if not Path(given).exists()]
        if missing:  # a mistyped folder: said before the model loads, and nothing is written
            raise CommandError(
                f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: no such file or directory "
                f"({len(missing)} of {len(args.images)} IMAGE_OR_DIR argument(s)); check the path(s), "
                "nothing was scored or written"
            )
        images = expand_images(args.images)
        if not images:
            raise CommandError("no images to score")
        records = [(args.prompt, images)]
        rows = [{"image": img, "prompt": args.prompt} for img in images]

    scorer = load_scorer(
        args.model,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        kind=args.kind,
        tokenizer=args.tokenizer,
        allow_slow=args.allow_slow,
    )
    print(describe_scorer(scorer), file=sys.stderr)
    if scorer.uses_text and args.prompt is not None and not args.prompt.strip():
        raise CommandError("--prompt is empty")
    meta = scorer.runtime_metadata()  # device and precision: logged once by the scorer itself
    from prefalign.scoring.distributed import process_rank, score_records_sharded

    result = score_records_sharded(
        scorer,
        records,
        batch_size=args.batch_size,
        strict=args.strict,
        progress=False if args.no_progress else None,
    )
    flat = [None if v != v else float(v) for scores in result.scores for v in scores]  # NaN -> None
    for row, value in zip(rows, flat):
        row["score"] = value

    if process_rank() != 0:  # under torchrun / accelerate launch, the first process reports
        return 1 if result.failures else 0
    if args.out:
        write_table(rows, args.out, columns, metadata=meta)
        print(f"wrote {len(rows)} scores to {args.out}", file=sys.stderr)
    else:
        print(format_table(rows, columns))
    if result.failures:
        print(f"\n{len(result.failures)} could not be scored:", file=sys.stderr)
        for failure in result.failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0
