"""``prefalign list-scorers``: every scorer family, its score, preprocessing and conversion."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list-scorers",
        help="list every scorer family: score kind and scale, preprocessing, what convert needs",
        description="Every scorer family load_scorer knows: its score kind, scale and meaning, "
        "preprocessing, what `prefalign convert` needs, whether score_pixels is differentiable "
        "(and its measured distance from the file path), and the original code it matches.",
        epilog="examples:\n  prefalign list-scorers\n  prefalign list-scorers --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="one JSON object per family")
    p.add_argument(
        "--names", action="store_true", help="only the names load_scorer accepts (as score --list-models)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefalign.scoring.listing import FAMILY_TABLE, NOT_YET

    if args.names:
        from prefalign.scoring import list_scorers

        print("\n".join(list_scorers()))
        return 0
    if args.json:
        for row in FAMILY_TABLE:
            print(json.dumps(row.to_dict(), ensure_ascii=False))
        return 0
    for row in FAMILY_TABLE:
        print(row.family)
        for key, value in row.to_dict().items():
            if key != "family":
                print(f"  {key + ':':16}{value}")
    if NOT_YET:
        print("not yet: " + "; ".join(NOT_YET.values()))
    return 0
