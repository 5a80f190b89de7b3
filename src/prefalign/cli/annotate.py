"""``prefalign annotate``: run a preference-collection web app and user studies.

prefalign annotate create-study --study DIR --kind pair --annotators-per-task 20
prefalign annotate create-study --study DIR --kind pair --a BASE_DIR --b ADAPTED_DIR
prefalign annotate results --study DIR
prefalign annotate add-annotator --study DIR alice bob
prefalign annotate serve --study DIR --port 8000
prefalign annotate export --study DIR --out votes/
prefalign annotate revoke-annotator --study DIR alice
prefalign annotate rotate-token --study DIR admin
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

DESCRIPTION = """\
Collect human judgements of generated images in a small web app: n-way choices (click the
preferred image), A/B comparisons (random left/right order, pairing hidden) and good/bad
ratings with a skip. A study directory is a prefalign dataset directory (records.parquet and
its images inside it); create-study adds study.json and registers the tasks in the database
(default: DIR/annotations.db, SQLite; --db postgresql+psycopg://... for a team server).
"""

EPILOG = """\
examples, a typical session:
  prefalign annotate create-study --study my-study --from generated/ --kind pair --annotators-per-task 20
  prefalign annotate add-annotator --study my-study alice bob carol
  prefalign annotate serve --study my-study          # send each person their invite link
  prefalign annotate export --study my-study --out my-study-votes

examples, an A/B study of two folders (pairs by prompt and seed, else by file name):
  prefalign annotate create-study --study ab --kind pair --a base/ --b adapted/ \\
      --annotators-per-task 10 --base-url https://annotate.example.org
  prefalign annotate add-annotator --study ab p01 p02 p03   # links use the stored --base-url
  prefalign annotate serve --study ab
  prefalign annotate results --study ab --out ab-results     # share for B, 95% CI, sign test
"""

log = logging.getLogger("prefalign.annotate")


def _db_help(default_note: str) -> str:
    return (
        "database URL or SQLite file path "
        f"({default_note}; e.g. postgresql+psycopg://user:password@host/dbname)"
    )


def _resolve_db(args: argparse.Namespace) -> str:
    """``--db`` if given, else the study directory's annotations.db."""
    from prefalign.annotate.study import STUDY_FILE, default_db
    from prefalign.cli.main import CommandError

    _quiet_migrations()
    if args.db:
        return args.db
    study = Path(args.study)
    if args.command_name == "create-study" or (study / STUDY_FILE).is_file():
        return str(default_db(study))
    raise CommandError(f"--study {args.study!r} is not a study directory; give --db with a study name")


def _quiet_migrations() -> None:
    # Alembic logs each plugin and revision at INFO; a user needs none of it unless debugging.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("alembic").setLevel(logging.WARNING)


DEFAULT_BASE_URL = "http://127.0.0.1:8000"  # serve's default --host and --port


def _invite_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/invite/{token}"


def _check_base_url(base_url: str | None) -> None:
    from prefalign.annotate.guard import origin_of
    from prefalign.cli.main import CommandError

    if base_url and origin_of(base_url) is None:
        raise CommandError(f"--base-url {base_url!r}: not an http(s) address (https://host[:port])")


def _stored_base_url(study_dir: Path) -> str:
    """The --base-url given to create-study (kept in study.json), or ''."""
    from prefalign.annotate.study import STUDY_FILE, read_study_config

    return read_study_config(study_dir).base_url if (study_dir / STUDY_FILE).is_file() else ""


def _base_url(args: argparse.Namespace, study_dir: Path) -> str:
    """This command's --base-url, else the study's stored one, else serve's default address."""
    _check_base_url(args.base_url)
    return args.base_url or _stored_base_url(study_dir) or DEFAULT_BASE_URL


def run_create_study(args: argparse.Namespace) -> int:
    from prefalign.annotate import (
        Store,
        StudyConfig,
        add_annotator,
        check_records,
        copy_dataset,
        create_study,
        task_count,
    )
    from prefalign.annotate.storage import sqlite_path
    from prefalign.cli.main import CommandError

    _check_base_url(args.base_url)
    two_sets = args.a is not None or args.b is not None
    if two_sets and (args.a is None or args.b is None or args.source or args.kind != "pair"):
        raise CommandError("--a and --b go together, with --kind pair and without --from")
    plan = None
    if two_sets:
        from prefalign.annotate.pairs import plan_pairs

        plan = plan_pairs(args.a, args.b)  # refuse before writing anything
    config = StudyConfig(
        name=args.name or Path(args.study).resolve().name,
        kind=args.kind,
        annotators_per_task=args.annotators_per_task,
        question=args.question or "",
        base_url=args.base_url or "",
        sides=None
        if plan is None
        else {
            "a": str(Path(args.a).resolve()),
            "b": str(Path(args.b).resolve()),
            "matched_by": plan.matched_by,
        },
    )
    # With --a/--b the directory is ours to remove on failure: it must be new or empty.
    made_dir = not Path(args.study).exists() or not any(Path(args.study).iterdir())
    if plan is not None:
        from prefalign.annotate.pairs import write_pair_study

        try:
            write_pair_study(plan, args.study, a=args.a, b=args.b, seed=args.seed)
        except BaseException:
            if made_dir:
                shutil.rmtree(args.study, ignore_errors=True)
            raise
        note = (
            f"; {plan.without_prompt} without a prompt (no NAME.txt beside the image)"
            if plan.without_prompt
            else ""
        )
        print(f"paired {len(plan.pairs)} images of --a with --b by {plan.matched_by}{note}")
    if args.source:
        check_records(args.source, config.kind)  # refuse before copying anything
        copy_dataset(args.source, args.study)
    db = _resolve_db(args)
    new_file = sqlite_path(db)
    if new_file is not None and new_file.exists():
        new_file = None  # an existing database is never removed
    store = Store.open(db)
    try:
        study = create_study(store, args.study, config)
        admin_token = add_annotator(store, study, args.admin_name, role="admin")
        n_tasks = task_count(store, study)
    except BaseException:
        store.close()
        if new_file is not None:
            # Nothing should be left behind by a create-study that failed: not even an empty database.
            for leftover in (new_file, *(new_file.with_name(new_file.name + s) for s in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        if plan is not None and made_dir:
            shutil.rmtree(args.study, ignore_errors=True)
        raise
    store.close()
    print(
        f"created {config.kind} study {config.name!r} in {args.study}: {n_tasks} tasks, "
        f"each for {config.annotators_per_task} annotator(s)"
    )
    base_url = args.base_url or DEFAULT_BASE_URL
    print(f"admin invite (keep it private; shown only now): {_invite_url(base_url, admin_token)}")
    print("next: prefalign annotate add-annotator --study", args.study, "NAME ...")
    return 0


def run_add_annotator(args: argparse.Namespace) -> int:
    from prefalign.annotate import Store, add_annotator, locate_study

    store = Store.open(_resolve_db(args))
    try:
        study, study_dir = locate_study(store, args.study)
        base_url = _base_url(args, study_dir)
        role = "admin" if args.admin else "annotator"
        for name in args.names:
            token = add_annotator(store, study, name, role=role)
            print(f"{name}\t{_invite_url(base_url, token)}")
    finally:
        store.close()
    return 0


def run_revoke_annotator(args: argparse.Namespace) -> int:
    from prefalign.annotate import Store, locate_study, revoke_annotator

    store = Store.open(_resolve_db(args))
    try:
        study, _ = locate_study(store, args.study)
        for name in args.names:
            revoke_annotator(store, study, name)
            print(f"{name}: token revoked (votes kept; a running server refuses it within 5 s)")
    finally:
        store.close()
    return 0


def run_rotate_token(args: argparse.Namespace) -> int:
    from prefalign.annotate import Store, locate_study, rotate_token

    store = Store.open(_resolve_db(args))
    try:
        study, study_dir = locate_study(store, args.study)
        base_url = _base_url(args, study_dir)
        for name in args.names:
            print(f"{name}\t{_invite_url(base_url, rotate_token(store, study, name))}")
    finally:
        store.close()
    return 0


def access_log_config() -> dict:
    """uvicorn's logging config with invite tokens redacted from the access log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": "prefalign.annotate.guard.RedactTokens"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config


def run_serve(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import uvicorn

    from prefalign.annotate import Store, create_app, read_study_config
    from prefalign.annotate.guard import origin_of
    from prefalign.cli.main import CommandError

    config = read_study_config(args.study)
    if args.base_url and origin_of(args.base_url) is None:
        raise CommandError(f"--base-url {args.base_url!r}: not an http(s) address (https://host[:port])")
    base_url = args.base_url or config.base_url or None  # the one stored by create-study
    store = Store.open(_resolve_db(args))
    app = create_app(store, args.study, lease=timedelta(minutes=args.lease_minutes), base_url=base_url)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not (base_url or "").startswith("https:"):
        log.warning(
            "listening on %s: invite tokens travel in clear text; put the server behind HTTPS "
            "and give --base-url https://...",
            args.host,
        )
    print(f"serving {config.kind} study {config.name!r} on http://{args.host}:{args.port} (Ctrl-C stops)")
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            access_log=args.access_log,
            log_level="info",
            log_config=access_log_config(),
        )
    finally:
        store.close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    from prefalign.annotate import Store, export_study, locate_study

    store = Store.open(_resolve_db(args))
    try:
        study, study_dir = locate_study(store, args.study)
        out, n = export_study(store, study, study_dir, args.out)
    finally:
        store.close()
    print(f"wrote {n} votes of study {study.name!r} to {out}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    from prefalign.annotate import Store, locate_study, read_study_config
    from prefalign.annotate.export import export_records
    from prefalign.cli.main import CommandError
    from prefalign.evaluate.ab_study import ab_study_report, ab_study_result
    from prefalign.evaluate.report import fmt

    store = Store.open(_resolve_db(args))
    try:
        study, study_dir = locate_study(store, args.study)
        records = export_records(store, study)
    finally:
        store.close()
    if study.kind != "pair":
        raise CommandError(
            f"study {study.name!r} is a {study.kind} study; results reports A/B (pair) studies"
        )
    if not records:
        raise CommandError(
            f"study {study.name!r} has no votes yet; results counts them once people have voted"
        )
    out = Path(args.out) if args.out else study_dir / "results"
    if (out / "report.json").exists() and not args.overwrite:
        raise CommandError(f"{out}: holds a report already; give --overwrite to replace it, or another --out")
    sides = read_study_config(study_dir).sides or {}
    label_a = Path(sides["a"]).name if "a" in sides else "images[0]"
    label_b = Path(sides["b"]).name if "b" in sides else "images[1]"
    result = ab_study_result(records)
    paths = ab_study_report(result, out, title=f"A/B study {study.name}", label_a=label_a, label_b=label_b)
    o = result.overall
    print(
        f"A/B study {study.name!r}: A = {label_a}, B = {label_b}; {o.votes} votes by {result.participants} participant(s)"
    )
    print(f"{'prompt':<40} {'votes':>5} {'A':>4} {'B':>4} {'share B':>8}  95% CI (Wilson)   sign test p")
    rows = [("all prompts", o), *((p or "(no prompt)", s) for p, s in result.per_prompt.items())]
    for name, s in rows:
        short = name if len(name) <= 40 else name[:39] + "…"
        print(
            f"{short:<40} {s.votes:>5} {s.votes_a:>4} {s.votes_b:>4} {fmt(s.share_b):>8}  "
            f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]  {fmt(s.sign_test_p, 4):>10}"
        )
    if result.agreement is not None:
        a = result.agreement
        print(
            f"agreement on {a.items} pair(s) voted by 2+ people: pairwise {fmt(a.pairwise)}, Fleiss' kappa "
            f"{fmt(a.fleiss_kappa)}, each person vs the others {fmt(a.per_participant_mean)} ± "
            f"{fmt(a.per_participant_std)}"
        )
    if result.left_share is not None:
        print(f"position bias: {fmt(result.left_share)} of {result.left_votes} votes for the left image")
    print(f"wrote {paths['json']}, {paths['html']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prefalign annotate`` and its subcommands."""
    parser = subparsers.add_parser(
        "annotate",
        help="collect human choices and run user studies in a small web app",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="annotate_command", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser(
        "create-study",
        help="register a study directory's records as tasks and print the admin invite link",
        description=(
            "Register the records of a study directory (a prefalign dataset directory with its "
            "images inside it) as tasks, write DIR/study.json, and print the admin invite link. "
            "choice: 2-9 images per record; pair: exactly 2 (shown in random order); rating: one "
            "task per image. Nothing is written if any record does not fit. With --a and --b "
            "(instead of --from): an A/B study of two sets of images, paired by prompt and seed, "
            "else by file name, copied under names that do not tell the side."
        ),
        epilog="examples:\n"
        "  prefalign annotate create-study --study s --from generated/ --kind pair --annotators-per-task 20\n"
        "  prefalign annotate create-study --study ab --kind pair --a base/ --b adapted/ \\\n"
        "      --annotators-per-task 10 --base-url https://annotate.example.org",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--study", required=True, metavar="DIR", help="the study directory")
    create.add_argument(
        "--from",
        dest="source",
        metavar="DATASET",
        help="copy this dataset (records and images) into DIR first",
    )
    create.add_argument("--kind", required=True, choices=("choice", "pair", "rating"), help="the task kind")
    create.add_argument("--name", help="the study's name in the database (default: the directory's name)")
    create.add_argument(
        "--annotators-per-task",
        type=int,
        default=1,
        metavar="N",
        help="distinct annotators each task is shown to (default: 1; a user study: all participants)",
    )
    create.add_argument("--question", help="the instruction above each task (default: one per kind)")
    create.add_argument("--admin-name", default="admin", help="name of the admin token (default: admin)")
    create.add_argument(
        "--a",
        metavar="DIR",
        help="A/B study of two sets: side A (a folder of images or a dataset, e.g. a `generate` "
        "output); DIR (new) gets one pair per prompt and seed, else per file name",
    )
    create.add_argument(
        "--b", metavar="DIR", help="side B, paired with --a (the share of votes for B is reported)"
    )
    create.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the order of the pairs and their hidden file names with --a/--b (ours; default: 0); "
        "left/right is drawn for each annotator by the server",
    )

    add = sub.add_parser(
        "add-annotator",
        help="create invite links (tokens) for annotators or admins",
        description="Create one invite link per name. Tokens are stored hashed: keep the printed links.",
        epilog="example:\n  prefalign annotate add-annotator --study ab alice bob carol",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    add.add_argument("names", nargs="+", metavar="NAME", help="names (the `user` of exported votes)")
    add.add_argument("--admin", action="store_true", help="make admin tokens (progress page) instead")

    serve = sub.add_parser(
        "serve",
        help="run the web app for one study",
        description="Serve a study: annotators open their invite links, admins see /admin.",
        epilog="example:\n  prefalign annotate serve --study ab --host 0.0.0.0 --port 8000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--study", required=True, metavar="DIR", help="the study directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--lease-minutes",
        type=float,
        default=30.0,
        help="minutes a shown, unanswered task keeps its slot before others may get it (default: 30)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")

    export = sub.add_parser(
        "export",
        help="write the votes as a prefalign dataset",
        description=(
            "Write one record per vote (user = annotator) to OUT/records.parquet, with the images "
            "copied into OUT: choice and pair votes as `chosen` (index in the dataset's image "
            "order), ratings as `ratings` (1.0 good, 0.0 bad; skips left out)."
        ),
        epilog="example:\n  prefalign annotate export --study ab --out ab-votes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    export.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")

    serve.add_argument(
        "--base-url",
        metavar="URL",
        help=(
            "the address people use (e.g. https://annotate.example.org): form posts must come from "
            "it, and https makes the token cookie Secure (default: the one given to create-study, "
            "else the address a request was sent to)"
        ),
    )

    results = sub.add_parser(
        "results",
        help="the result of an A/B study: share of votes for B, 95%% CI, sign test, agreement",
        description=(
            "Count the votes of a pair study (any: --a/--b or --from): the share of votes for B\n"
            "(images[1]; with --a/--b, the --b set) with a 95% Wilson score interval, a two-sided\n"
            "exact binomial (sign) test against 0.5, the same per prompt, inter-annotator agreement\n"
            "(pairwise, Fleiss' kappa, each person vs the others as in the HPS paper's Table 3) and\n"
            "the share of votes for the left image. Writes report.json, report.md and report.html\n"
            "(with the histogram of the share for B per pair) into --out."
        ),
        epilog="example:\n  prefalign annotate results --study ab --out ab-results",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    results.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    results.add_argument("--out", metavar="DIR", help="report directory (default: DIR/results)")
    results.add_argument("--overwrite", action="store_true", help="replace a report already in --out")

    revoke = sub.add_parser(
        "revoke-annotator",
        help="stop invite tokens from working (their votes are kept)",
        description="Revoke the tokens of NAME... (annotators or admins). Their votes stay in the export; "
        "rotate-token gives them a new link.",
        epilog="example:\n  prefalign annotate revoke-annotator --study ab bob",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    revoke.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    revoke.add_argument("names", nargs="+", metavar="NAME", help="token holders to revoke")
    rotate = sub.add_parser(
        "rotate-token",
        help="give a token holder (the admin too) a new invite link; the old one stops working",
        description="Replace the tokens of NAME... with new ones and print the new invite links.",
        epilog="example:\n  prefalign annotate rotate-token --study ab admin",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rotate.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    rotate.add_argument("names", nargs="+", metavar="NAME", help="token holders (e.g. admin)")

    commands = {
        "create-study": create,
        "add-annotator": add,
        "serve": serve,
        "export": export,
        "revoke-annotator": revoke,
        "rotate-token": rotate,
        "results": results,
    }
    for name, command in commands.items():
        default_note = "default: DIR/annotations.db"
        if name in ("add-annotator", "export", "revoke-annotator", "rotate-token", "results"):
            default_note += "; required with a study name"
        command.add_argument("--db", metavar="URL", help=_db_help(default_note))
        if name == "create-study":
            command.add_argument(
                "--base-url",
                metavar="URL",
                help="where people will reach the server; stored in study.json and used by add-annotator, "
                f"rotate-token and serve unless they are given another (default: {DEFAULT_BASE_URL})",
            )
        elif name in ("add-annotator", "rotate-token"):
            command.add_argument(
                "--base-url",
                metavar="URL",
                help="where the server will be reached, for the printed links (default: the one given "
                f"to create-study, else {DEFAULT_BASE_URL})",
            )
        command.set_defaults(command_name=name)
    create.set_defaults(func=run_create_study)
    add.set_defaults(func=run_add_annotator)
    serve.set_defaults(func=run_serve)
    export.set_defaults(func=run_export)
    from prefalign.cli.common import guard_output

    guard_output(export, "out", marker="records.parquet")
    revoke.set_defaults(func=run_revoke_annotator)
    rotate.set_defaults(func=run_rotate_token)
    results.set_defaults(func=run_results)
    from prefalign.cli.common import guard_output

    guard_output(results, "out", marker="report.json")
