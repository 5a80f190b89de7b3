"""``prefalign data``: build, import, export, split, inspect and check datasets."""

from __future__ import annotations

import argparse
import json
import sys

_RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="build, import, export, split, inspect and check datasets",
        description="A dataset is a directory with records.parquet and the images it references. "
        "These commands build one from chat exports or public preference sets and check it.",
        epilog="examples (each subcommand's --help has more):\n"
        "  prefalign data import table choices.csv --out choices\n"
        "  prefalign data validate choices\n"
        "  prefalign data split choices --test-size 0.1 --out choices-split",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    _register_from_discord(data_sub)
    _register_fetch_images(data_sub)
    _register_stats(data_sub)
    _register_import(data_sub)
    _register_export(data_sub)
    _register_split(data_sub)
    _register_validate(data_sub)
    from prefalign.cli.train import register_prompts  # the prompt family belongs to the trainers

    register_prompts(data_sub)


def _register_from_discord(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "from-discord",
        help="mine human choices from DiscordChatExporter JSON exports",
        description="Mine the choices people made among a bot's generated images from DiscordChatExporter "
        'JSON exports (the HPS paper\'s dataset). A user sends `!dream "PROMPT" FLAGS`, the bot replies '
        "with n images (or one grid) and names their seeds; the user picks one by a new request with the "
        "same prompt and one image's seed (-S), or by replying with the image. Each unambiguous choice "
        "becomes a record (prompt, the n images, the chosen index, the hashed user id); every skipped "
        "case is counted with its reason in OUT/mining_report.json (see `prefalign data stats`). "
        "Exports are streamed in constant memory; overlapping exports of a channel count each message once. "
        "An export that cannot be read is named with the last message read; what was mined is kept.",
        epilog="examples:\n"
        "  prefalign data from-discord exports/*.json --out choices\n"
        "  prefalign data fetch-images choices\n"
        "  prefalign data stats choices",
        formatter_class=_RAW,
    )
    p.add_argument("exports", nargs="+", metavar="EXPORT.json", help="DiscordChatExporter JSON exports")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="dataset directory to write")
    p.add_argument("--command", default="!dream", help="the word that starts a request (default: !dream)")
    p.add_argument(
        "--bot",
        action="append",
        metavar="NAME_OR_ID",
        help="only this bot's replies count as generations (repeatable; default: any bot)",
    )
    p.add_argument(
        "--window",
        type=float,
        default=60.0,
        metavar="MINUTES",
        help="how long a request or generation can still be answered or chosen from (default: 60)",
    )
    p.add_argument("--salt", default="", help="mixed into the hashed user ids (default: none)")
    p.add_argument(
        "--no-copy-media",
        action="store_true",
        help="leave images of --media exports as file:// URLs instead of copying them into DIR",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="exit 0 even if local images of --media exports are missing (their records keep file:// "
        "URLs; counted per reason in the report). Default: such a run exits 2",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_from_discord)
    from prefalign.cli.common import guard_output

    guard_output(p, "out", marker="records.parquet")


def run_from_discord(args: argparse.Namespace) -> int:
    from prefalign.data.dreambot import DreamGrammar
    from prefalign.data.mining import from_discord

    grammar = DreamGrammar(command=args.command, bot_names=frozenset(args.bot) if args.bot else None)
    report = from_discord(
        args.exports,
        args.out,
        grammar=grammar,
        window_minutes=args.window,
        salt=args.salt,
        copy_media=not args.no_copy_media,
        progress=not args.no_progress,
        strict=False,
        allow_missing=args.allow_missing,
    )
    print(
        f"{report.choices:,} choices from {report.messages:,} messages "
        f"({report.requests:,} requests, {report.generations:,} generations) -> {args.out}"
    )
    for reason, count in report.skipped.most_common():
        print(f"  skipped {count:>7,}  {reason}")
    if report.unknown_types:
        kinds = ", ".join(f"{k}: {v:,}" for k, v in report.unknown_types.most_common())
        print(f"  read by content: message types the exporter does not name ({kinds})")
    for reason, count in report.missing_media.most_common():
        print(f"  missing {count:>7,}  local image files: {reason}", file=sys.stderr)
    for err in report.errors:
        print(f"error: {err}", file=sys.stderr)
    if report.errors:
        print(f"the {report.choices:,} choices mined before the errors were saved", file=sys.stderr)
        return 2
    return 0


def _register_fetch_images(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch-images",
        help="download the images a dataset still names by URL",
        description="Download every image the dataset names by URL into DIR/images/, concurrently, with "
        "timeouts and retries, one atomic file per image; check each decodes; cut grid images into their "
        "cells; and point the records at the files. Resumable: a second run fetches only what is "
        "missing. Exits 1 if some images could not be fetched (they keep their URLs).",
        epilog="example:\n  prefalign data fetch-images choices --workers 16",
        formatter_class=_RAW,
    )
    p.add_argument("dataset", metavar="DIR", help="dataset directory")
    p.add_argument("--workers", type=int, default=8, help="concurrent downloads (default: 8)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    p.add_argument(
        "--retries", type=int, default=3, help="retries after a network error, 429 or 5xx (default: 3)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_fetch_images)


def run_fetch_images(args: argparse.Namespace) -> int:
    from prefalign.data.fetch import fetch_images

    report = fetch_images(
        args.dataset,
        workers=args.workers,
        timeout=args.timeout,
        retries=args.retries,
        progress=not args.no_progress,
    )
    print(
        f"fetched {report.fetched:,}, already present {report.already_present:,}, failed {len(report.failed):,}"
    )
    for url, reason in report.failed.items():
        print(f"failed: {url}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _register_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="print what a dataset holds (prompts, images, users, what was dropped and why)",
        description="Print the counts section 3 of the HPS paper reports: prompts, images, the "
        "distribution of images per prompt, distinct users, the most choices by one user, and for mined "
        "datasets what was dropped and why.",
        epilog="example:\n  prefalign data stats choices --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", metavar="DIR", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    from prefalign.data.stats import dataset_stats, format_stats

    stats = dataset_stats(args.dataset)
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_stats(stats))
    return 0


def _register_import(sub: argparse._SubParsersAction) -> None:
    from prefalign.data.importers import IMAGE_MODES, IMPORT_FORMATS

    p = sub.add_parser(
        "import",
        help="convert a public preference set into a dataset",
        description="Read a public set in its original layout and write a prefalign dataset:\n"
        "  hpd-v1       preference_train.json / preference_test.json + preference_images/\n"
        "  hpd-v2       train.json (pairs) / test.json (rankings) + train/ test/\n"
        "  pickapic     Parquet shards with the images embedded (jpg_0, jpg_1); unlabelled and\n"
        "               identical-image rows skipped and counted\n"
        "  imagereward  ImageRewardDB (metadata-<split>.parquet or <split>_<k>.json, one row per image,\n"
        "               grouped by prompt_id) or the ImageReward repo's JSON with generations and rankings\n"
        "  diffusiondb  metadata.parquet + part-NNNNNN/ (unlabelled, one record per prompt)\n"
        "  table        your own CSV / TSV / JSONL / Parquet: one row per record. With no flags:\n"
        "               prompt,image_a,image_b,winner (winner: a/b, 0/1, the column name, the image\n"
        "               path, or tie) or prompt,image,rating. Image paths relative to the file or\n"
        "               absolute; images are copied (--link: hard-linked) into DIR/images/. Every bad\n"
        "               row is named with its line number and nothing is written (--skip-bad-rows)",
        epilog="examples:\n  prefalign data import hpd-v1 ~/HPD --out hpd-v1\n"
        "  prefalign data import table choices.csv --out mine\n"
        "  prefalign data import table votes.jsonl --out mine --images-col files --chosen-col pick",
        formatter_class=_RAW,
    )
    formats = sorted([*IMPORT_FORMATS, "table"])
    p.add_argument("format", choices=formats, metavar="FORMAT", help=", ".join(formats))
    p.add_argument("src", metavar="SRC", help="the set's directory (or one of its files; table: the file)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="dataset directory to write")
    p.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default=None,
        help="how images get into DIR: link (hard link, else copy; default), copy, symlink, "
        "or reference (keep absolute paths to SRC)",
    )
    p.add_argument(
        "--keep-unlabeled",
        action="store_true",
        help="pickapic: keep has_label = False rows as records with no label (default: skip and count "
        "them; PickScore's trainer drops them from its evaluation splits)",
    )
    p.add_argument(
        "--keep-identical",
        action="store_true",
        help="pickapic: keep are_different = False rows, the same image twice (default: skip and count, "
        "ours: no preference can exist between an image and itself)",
    )
    t = p.add_argument_group("table (defaults: the common column names, see above; all ours)")
    t.add_argument("--prompt-col", metavar="COL", help="the prompt (default: prompt, caption or text)")
    t.add_argument(
        "--image-cols",
        metavar="A,B,...",
        help="one column per image (default: image_a, image_b, ... or image)",
    )
    t.add_argument(
        "--images-col", metavar="COL", help="one column holding a list of images (JSON list or a|b)"
    )
    t.add_argument(
        "--chosen-col",
        metavar="COL",
        help="the chosen image: letter, 0-based index, column name, image path or tie (default: winner, chosen, ...)",
    )
    t.add_argument("--ranks-col", metavar="COL", help="a list of ranks, lower is better (default: ranks)")
    t.add_argument(
        "--rating-col", metavar="COL", help="the rating (a list with several images; default: rating)"
    )
    t.add_argument("--user-col", metavar="COL", help="who chose (default: user, user_id or annotator)")
    t.add_argument("--split-col", metavar="COL", help="train / validation / test (default: split)")
    t.add_argument("--link", action="store_true", help="hard-link the images instead of copying them")
    t.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="import the good rows and name the bad ones (default: refuse)",
    )
    t.add_argument(
        "--overwrite", action="store_true", help="replace a dataset already in DIR (default: refuse)"
    )
    p.set_defaults(func=run_import)
    from prefalign.cli.common import guard_output

    guard_output(p, "out", marker="records.parquet")


def run_table_import(args: argparse.Namespace) -> int:
    from prefalign.data.importers.table import import_table
    from prefalign.errors import PrefalignError

    if args.images is not None:
        raise PrefalignError(
            "table: images are copied, or hard-linked with --link; --images is for public sets"
        )
    report, bad = import_table(
        args.src,
        args.out,
        link=args.link,
        skip_bad_rows=args.skip_bad_rows,
        overwrite=args.overwrite,
        prompt_col=args.prompt_col,
        image_cols=[c.strip() for c in args.image_cols.split(",")] if args.image_cols else None,
        images_col=args.images_col,
        chosen_col=args.chosen_col,
        ranks_col=args.ranks_col,
        rating_col=args.rating_col,
        user_col=args.user_col,
        split_col=args.split_col,
    )
    print(f"{report.records:,} records, {report.images:,} images -> {args.out}")
    if bad:
        print(f"skipped {len(bad):,} bad row(s):", file=sys.stderr)
        for line in bad:
            print(f"  {args.src}: {line}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from prefalign.data.importers import import_dataset

    if args.format == "table":
        return run_table_import(args)
    table_flags = [
        k
        for k in (
            "prompt_col",
            "image_cols",
            "images_col",
            "chosen_col",
            "ranks_col",
            "rating_col",
            "user_col",
            "split_col",
            "link",
            "skip_bad_rows",
            "overwrite",
        )
        if getattr(args, k)
    ]
    if table_flags:
        from prefalign.errors import PrefalignError

        flags = ", ".join("--" + k.replace("_", "-") for k in table_flags)
        raise PrefalignError(f"{flags}: only for `data import table`; {args.format} has its own layout")
    report = import_dataset(
        args.format,
        args.src,
        args.out,
        images=args.images or "link",
        keep_unlabeled=args.keep_unlabeled,
        keep_identical=args.keep_identical,
    )
    print(f"{report.records:,} records, {report.images:,} images -> {args.out}")
    for reason, count in sorted(report.skipped.items(), key=lambda kv: -kv[1]):
        print(f"  skipped {count:>7,}  {reason}")
    if report.missing_images:
        print(
            f"warning: {len(report.missing_images):,} images not found, e.g. {report.missing_images[0]} "
            "(`prefalign data validate` lists them)",
            file=sys.stderr,
        )
    return 0


def _register_export(sub: argparse._SubParsersAction) -> None:
    from prefalign.data.importers import EXPORT_FORMATS

    p = sub.add_parser(
        "export",
        help="write a dataset in a public set's layout (hpd-v1)",
        description="Write a dataset in a public set's layout. A round trip import → export of HPD v1 "
        "gives back every field. Records without a single choice are skipped; images must be local "
        "files (run fetch-images first).",
        epilog="example:\n  prefalign data export hpd-v1 choices --out choices-hpd",
        formatter_class=_RAW,
    )
    p.add_argument(
        "format", choices=sorted(EXPORT_FORMATS), metavar="FORMAT", help=", ".join(sorted(EXPORT_FORMATS))
    )
    p.add_argument("dataset", metavar="DIR", help="dataset directory")
    p.add_argument("--out", "-o", required=True, metavar="OUT", help="directory to write")
    p.set_defaults(func=run_export)
    from prefalign.cli.common import guard_output

    guard_output(p, "out")


def run_export(args: argparse.Namespace) -> int:
    from prefalign.data.importers import export_dataset

    counts = export_dataset(args.format, args.dataset, args.out)
    print(", ".join(f"{k}: {v:,}" for k, v in counts.items()) + f" -> {args.out}")
    return 0


def _register_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="assign train/test splits with no prompt (or user) on both sides",
        description="Set each record's split to train or test, deterministically (the same seed gives "
        "the same split on any machine). Whole groups - all records of a prompt, or of a user - go to "
        "one side, so none appears on both.",
        epilog="examples:\n  prefalign data split choices --test-size 1000 --by user --seed 0 --out choices-split\n"
        "  prefalign data split choices --test-size 0.1 --in-place",
        formatter_class=_RAW,
    )
    p.add_argument("dataset", metavar="DIR", help="dataset directory (left as it is unless --in-place)")
    p.add_argument(
        "--test-size",
        type=float,
        required=True,
        metavar="N",
        help="test records: a count, or a fraction if < 1",
    )
    p.add_argument(
        "--by",
        choices=("prompt", "user"),
        default="prompt",
        help="what may not cross (default: prompt, ours); `user` refuses (exit 2) a dataset where some "
        "records have no user",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--out", "-o", metavar="OUT", help="write the split dataset here (its images are referenced)"
    )
    where.add_argument("--in-place", action="store_true", help="rewrite DIR's records.parquet instead")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a dataset already in OUT (default: refuse)"
    )
    p.set_defaults(func=run_split)
    from prefalign.cli.common import guard_output

    guard_output(p, "out", marker="records.parquet")


def run_split(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prefalign.data.split import split_dataset
    from prefalign.errors import PrefalignError

    if args.out and Path(args.out).resolve() == Path(args.dataset).resolve():
        raise PrefalignError(f"--out {args.out} is the dataset itself; pass --in-place to rewrite it")
    if args.out and (Path(args.out) / "records.parquet").exists() and not args.overwrite:
        raise PrefalignError(f"{args.out}: already holds a dataset; pass --overwrite to replace it")
    counts = split_dataset(args.dataset, args.test_size, by=args.by, seed=args.seed, out=args.out)
    print(f"train: {counts['train']:,}, test: {counts['test']:,} (by {args.by}, seed {args.seed})")
    return 0


def _register_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a dataset; exit 1 if anything is wrong",
        description="Report missing or undecodable images, images not fetched yet, empty prompts, "
        "choices and ranks that do not fit the images, and duplicate ids. Exits 1 if any.",
        epilog="example:\n  prefalign data validate choices",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", metavar="DIR", help="dataset directory")
    p.add_argument("--no-images", action="store_true", help="skip opening the images (records only)")
    p.add_argument(
        "--max-lines", type=int, default=50, help="problems to list before summarising (default: 50)"
    )
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from prefalign.data.validate import validate_dataset

    report = validate_dataset(args.dataset, check_images=not args.no_images)
    for rid, problem in report.problems[: args.max_lines]:
        print(f"{rid}: {problem}")
    if len(report.problems) > args.max_lines:
        print(f"... and {len(report.problems) - args.max_lines:,} more")
    summary = ", ".join(f"{k}: {v}" for k, v in report.counts().most_common()) or "no problems"
    print(f"{report.records:,} records, {report.images_checked:,} images checked: {summary}")
    if not report.ok:
        return 1
    return 0
