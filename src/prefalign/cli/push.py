"""``prefalign push``: share a scorer, adapter, dataset or pipeline on the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from prefalign.hub import KINDS

    p = sub.add_parser(
        "push",
        help="upload a model, adapter or dataset to the Hugging Face Hub with a generated card",
        description="Stage DIR (hard links, hidden files left out) with a generated card (README.md: what "
        "it is, how to load it, and how it was made, from prefalign.json / prefalign_adapter.json / "
        "training_config.yaml / the records), create the repository and upload it with huggingface_hub's "
        "upload_folder. A README.md already in DIR is used instead of the generated card. The token is "
        "huggingface_hub's (`hf auth login` or HF_TOKEN). --stage-only writes the staged folder and "
        "uploads nothing, to check what would be sent.",
        epilog="examples:\n"
        "  prefalign push lora-out --repo me/sd15-hps-lora\n"
        "  prefalign push choices --repo me/my-choices --private\n"
        "  prefalign push models/hps-mine --repo me/hps-mine --stage-only staged/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "directory", metavar="DIR", help="a model, adapter, dataset or diffusers pipeline directory"
    )
    p.add_argument("--repo", required=True, help="hub repository, user/name or org/name")
    p.add_argument("--kind", choices=KINDS, help="what DIR is (default: detected from its files)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--message", help="commit message (default: 'Upload KIND with prefalign')")
    p.add_argument("--stage-only", metavar="STAGE_DIR", help="write the staged upload here and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from prefalign.hub import push, stage

    if args.stage_only:
        staged = stage(args.directory, args.repo, args.stage_only, kind=args.kind)
        print(f"staged {len(staged.files)} files ({staged.kind}, {staged.repo_type} repo) in {staged.folder}")
        return 0
    with tempfile.TemporaryDirectory(prefix="prefalign-push-") as tmp:
        staged = stage(args.directory, args.repo, Path(tmp) / "stage", kind=args.kind)
        print(f"uploading {len(staged.files)} files ({staged.kind}) to {args.repo} ...", file=sys.stderr)
        url = push(staged, args.repo, private=args.private, message=args.message)
    print(url)
    return 0
