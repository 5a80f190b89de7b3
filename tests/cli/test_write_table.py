"""``write_table``: Parquet or CSV by the extension, through ``prefalign.files.write_atomic``."""

from __future__ import annotations

import csv

import pyarrow.parquet as pq
import pytest

from prefalign.cli.common import write_table
from prefalign.cli.main import CommandError

ROWS = [{"image": "a.png", "score": 1.5, "extra": "dropped"}, {"image": "b é.png", "score": None}]


def test_csv_and_parquet_round_trip_and_leave_no_temporary_file(tmp_path):
    out = write_table(ROWS, tmp_path / "sub" / "scores.csv", ("image", "score"))
    with open(out, newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == [
            {"image": "a.png", "score": "1.5"},
            {"image": "b é.png", "score": ""},
        ]
    out = write_table(ROWS, tmp_path / "sub" / "scores.parquet", ("image", "score"))
    assert pq.read_table(out).to_pylist() == [
        {"image": "a.png", "score": 1.5},
        {"image": "b é.png", "score": None},
    ]
    empty = write_table([], tmp_path / "sub" / "empty.parquet", ("image", "score"))
    assert pq.read_table(empty).column_names == ["image", "score"]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "empty.parquet",
        "scores.csv",
        "scores.parquet",
    ]


def test_other_extensions_are_refused(tmp_path):
    with pytest.raises(CommandError, match=r"scores\.json: output must end in \.parquet or \.csv"):
        write_table(ROWS, tmp_path / "scores.json", ("image",))
