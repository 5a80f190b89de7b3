"""``prefalign annotate``: run a preference-collection web app and user studies.

prefalign annotate create-study --study DIR --kind pair --annotators-per-task 20
prefalign annotate add-annotator --study DIR alice bob
prefalign annotate serve --study DIR --port 8000
prefalign annotate export --study DIR --out votes/
prefalign annotate revoke-annotator --study DIR alice
prefalign annotate rotate-token --study DIR admin
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DESCRIPTION = """\
Collect human judgements of generated images in a small web app: n-way choices (click the
preferred image), A/B comparisons (random left/right order, pairing hidden) and good/bad
ratings with a skip. A study directory is a prefalign dataset directory (records.parquet and
its images inside it); create-study adds study.json and registers the tasks in the database
(default: DIR/annotations.db, SQLite; --db postgresql+psycopg://... for a team server).
"""

EPILOG = """\
typical session:
  prefalign annotate create-study --study my-study --from generated/ --kind pair --annotators-per-task 20
  prefalign annotate add-annotator --study my-study alice bob carol
  prefalign annotate serve --study my-study          # send each person their invite link
  prefalign annotate export --study my-study --out my-study-votes
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


def _invite_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/invite/{token}"


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

    config = StudyConfig(
        name=args.name or Path(args.study).resolve().name,
        kind=args.kind,
        annotators_per_task=args.annotators_per_task,
        question=args.question or "",
    )
    from prefalign.annotate.storage import sqlite_path

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
        raise
    store.close()
    print(
        f"created {config.kind} study {config.name!r} in {args.study}: {n_tasks} tasks, "
        f"each for {config.annotators_per_task} annotator(s)"
    )
    print(f"admin invite (keep it private; shown only now): {_invite_url(args.base_url, admin_token)}")
    print("next: prefalign annotate add-annotator --study", args.study, "NAME ...")
    return 0


def run_add_annotator(args: argparse.Namespace) -> int:
    from prefalign.annotate import Store, add_annotator, locate_study

    store = Store.open(_resolve_db(args))
    try:
        study, _ = locate_study(store, args.study)
        role = "admin" if args.admin else "annotator"
        for name in args.names:
            token = add_annotator(store, study, name, role=role)
            print(f"{name}\t{_invite_url(args.base_url, token)}")
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
        study, _ = locate_study(store, args.study)
        for name in args.names:
            print(f"{name}\t{_invite_url(args.base_url, rotate_token(store, study, name))}")
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
    store = Store.open(_resolve_db(args))
    app = create_app(store, args.study, lease=timedelta(minutes=args.lease_minutes), base_url=args.base_url)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not (args.base_url or "").startswith("https:"):
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
            "task per image. Nothing is written if any record does not fit."
        ),
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

    add = sub.add_parser(
        "add-annotator",
        help="create invite links (tokens) for annotators or admins",
        description="Create one invite link per name. Tokens are stored hashed: keep the printed links.",
    )
    add.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    add.add_argument("names", nargs="+", metavar="NAME", help="names (the `user` of exported votes)")
    add.add_argument("--admin", action="store_true", help="make admin tokens (progress page) instead")

    serve = sub.add_parser(
        "serve",
        help="run the web app for one study",
        description="Serve a study: annotators open their invite links, admins see /admin.",
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
    )
    export.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    export.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")

    serve.add_argument(
        "--base-url",
        metavar="URL",
        help=(
            "the address people use (e.g. https://annotate.example.org): form posts must come from "
            "it, and https makes the token cookie Secure (default: the address a request was sent to)"
        ),
    )

    revoke = sub.add_parser(
        "revoke-annotator",
        help="stop invite tokens from working (their votes are kept)",
        description="Revoke the tokens of NAME... (annotators or admins). Their votes stay in the export; "
        "rotate-token gives them a new link.",
    )
    revoke.add_argument("--study", required=True, metavar="DIR|NAME", help="the study directory or name")
    revoke.add_argument("names", nargs="+", metavar="NAME", help="token holders to revoke")
    rotate = sub.add_parser(
        "rotate-token",
        help="give a token holder (the admin too) a new invite link; the old one stops working",
        description="Replace the tokens of NAME... with new ones and print the new invite links.",
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
    }
    for name, command in commands.items():
        default_note = "default: DIR/annotations.db"
        if name in ("add-annotator", "export", "revoke-annotator", "rotate-token"):
            default_note += "; required with a study name"
        command.add_argument("--db", metavar="URL", help=_db_help(default_note))
        if name in ("create-study", "add-annotator", "rotate-token"):
            command.add_argument(
                "--base-url",
                default="http://127.0.0.1:8000",
                help="where the server will be reached, for the printed links (default: %(default)s)",
            )
        command.set_defaults(command_name=name)
    create.set_defaults(func=run_create_study)
    add.set_defaults(func=run_add_annotator)
    serve.set_defaults(func=run_serve)
    export.set_defaults(func=run_export)
    revoke.set_defaults(func=run_revoke_annotator)
    rotate.set_defaults(func=run_rotate_token)
