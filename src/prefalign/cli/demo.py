"""``prefalign demo``: the end-to-end demo on tiny models, offline."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the end-to-end demo offline on tiny models",
        description="Builds synthetic images and prompts and a tiny scorer, scores them and writes "
        "OUT/report.md. Needs no network and no weights.",
        epilog="example:\n  prefalign demo --out demo-output",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", "-o", default="demo-output", help="output directory (default: demo-output)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefalign.demo import run_demo

    report = run_demo(args.out, seed=args.seed)
    print(f"report: {report}")
    return 0
