"""``prefalign list-scorers``: every score kind and convert family is listed."""

from __future__ import annotations

import json

from prefalign.cli.main import main
from prefalign.scoring.catalog import FAMILIES, SCORE_KINDS


def test_every_kind_and_family_is_listed(capsys):
    assert main(["list-scorers", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["kind"] for r in rows} == set(SCORE_KINDS)
    listed = " ".join(r["family"] + " " + r["convert"] for r in rows)
    for family in FAMILIES:
        assert family in listed, family
    for row in rows:
        assert all(row.values()), row


def test_names_and_table(capsys):
    assert main(["list-scorers", "--names"]) == 0
    assert "imagereward" in capsys.readouterr().out.split()
    assert main(["list-scorers"]) == 0
    out = capsys.readouterr().out
    assert "imagereward" in out and "differentiable:" in out and "THUDM/ImageReward" in out
