"""`prefalign data import table`: your own choices in CSV / TSV / JSONL / Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefalign.cli.main import main
from prefalign.data import DatasetError, load_dataset
from prefalign.data.importers.table import import_table
from prefalign.testing.images import draw_shape


def _images(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        draw_shape("circle", ("red", "blue", "green", "yellow")[i % 4], size=16).save(root / name)


def test_pair_csv_needs_no_flags_and_reads_every_winner_spelling(tmp_path):
    src = tmp_path / "src"
    _images(src, ["img/a1.png", "img/b1.png", "img/a2.png", "img/b2.png"])
    absolute = src / "img" / "b2.png"
    (src / "choices.csv").write_text(
        "prompt,image_a,image_b,winner\n"
        "a red cat,img/a1.png,img/b1.png,b\n"
        "a dog,img/a2.png,img/b2.png,0\n"
        "a dog,img/a2.png,img/b2.png,1\n"
        "a dog,img/a2.png,img/b2.png,image_b\n"
        f"a dog,img/a2.png,{absolute},{absolute}\n"
        "a dog,img/a2.png,img/b2.png,img/a2.png\n"
        "a dog,img/a2.png,img/b2.png,tie\n"
        '"a ""quoted"", comma",img/a1.png,img/b1.png,A\n'
        '"two\nlines\u2028and a separator",img/a1.png,img/b1.png,b\n'
    )
    assert main(["data", "import", "table", str(src / "choices.csv"), "--out", str(tmp_path / "ds")]) == 0
    ds = load_dataset(tmp_path / "ds")
    assert [r.chosen for r in ds] == [1, 0, 1, 1, 1, 0, None, 0, 1]
    assert ds[8].prompt == "two\nlines\u2028and a separator" and ds[8].id == "choices:10"  # quoted newline
    assert ds[6].ranks == [0, 0]
    assert ds[7].prompt == 'a "quoted", comma'
    assert ds[0].id == "choices:2"  # the line number in the file
    for rec in ds:  # copied into the dataset, so it stands alone
        for image in rec.images:
            assert not Path(image).is_absolute() and (tmp_path / "ds" / image).is_file()
    assert (tmp_path / "ds" / ds[0].images[1]).read_bytes() == (src / "img/b1.png").read_bytes()


def test_columns_numbered_from_one_read_the_winner_as_their_number(tmp_path):
    _images(tmp_path, ["x.png", "y.png"])
    (tmp_path / "n.csv").write_text(
        "prompt,image_1,image_2,winner\np,x.png,y.png,1\nq,x.png,y.png,2\nr,x.png,y.png,0\n"
    )
    _, bad = import_table(tmp_path / "n.csv", tmp_path / "ds", skip_bad_rows=True)
    assert [r.chosen for r in load_dataset(tmp_path / "ds")] == [
        0,
        1,
    ]  # winner 1 is image_1, not the 2nd image
    assert bad == ["line 4: winner '0' matches none of the numbered columns image_1, image_2"]


def test_rating_csv_and_tsv_with_users_and_splits(tmp_path):
    _images(tmp_path, ["x.png", "y.png"])
    (tmp_path / "r.csv").write_text(
        "prompt,image,rating,user_id,split\np,x.png,1,u1,train\nq,y.png,0,u2,val\n"
    )
    report, bad = import_table(tmp_path / "r.csv", tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert (report.records, bad) == (2, [])
    assert [r.ratings for r in ds] == [[1.0], [0.0]]
    assert [r.user for r in ds] == ["u1", "u2"] and [r.split for r in ds] == ["train", "validation"]
    assert [r.chosen for r in ds] == [None, None]
    (tmp_path / "t.tsv").write_text(
        "caption\timage_0\timage_1\timage_2\tranks\nc\tx.png\ty.png\tx.png\t[2, 0, 1]\n"
    )
    import_table(tmp_path / "t.tsv", tmp_path / "tsv")
    assert load_dataset(tmp_path / "tsv")[0].ranks == [2, 0, 1]


def test_jsonl_and_parquet_with_named_columns_and_links(tmp_path):
    _images(tmp_path, ["p/1.png", "p/2.png", "p/3.png"])
    rows = [
        {"text_in": "three", "files": ["p/1.png", "p/2.png", "p/3.png"], "pick": "p/3.png", "who": "ann"},
        {"text_in": "two", "files": ["p/1.png", "p/2.png"], "pick": 0, "who": "bob"},
    ]
    (tmp_path / "v.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    flags = {"prompt_col": "text_in", "images_col": "files", "chosen_col": "pick", "user_col": "who"}
    import_table(tmp_path / "v.jsonl", tmp_path / "j", link=True, **flags)
    ds = load_dataset(tmp_path / "j")
    assert [r.chosen for r in ds] == [2, 0] and [len(r.images) for r in ds] == [3, 2]
    assert (tmp_path / "j" / ds[0].images[0]).stat().st_ino == (tmp_path / "p/1.png").stat().st_ino  # linked
    rows[1]["pick"] = "0"  # a Parquet column has one type
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "v.parquet")
    import_table(tmp_path / "v.parquet", tmp_path / "pq", **flags)
    assert [r.chosen for r in load_dataset(tmp_path / "pq")] == [2, 0]


def test_every_bad_row_is_named_by_line_and_nothing_is_written(tmp_path, capsys):
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "bad.csv").write_text(
        "prompt,image_a,image_b,winner\n"
        "ok,a.png,b.png,a\n"
        ",a.png,b.png,a\n"
        "missing,a.png,nothere.png,a\n"
        "bad winner,a.png,b.png,c\n"
        "no label,a.png,b.png,\n"
        "short,a.png\n"
    )
    out = tmp_path / "ds"
    assert main(["data", "import", "table", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    for line, reason in [
        (3, "empty prompt"),
        (4, "nothere.png"),
        (5, "winner 'c'"),
        (6, "no label"),
        (7, "cells"),
    ]:
        assert f"bad.csv: line {line}: " in err and reason in err
    assert "5 bad row(s) of 6; nothing written" in err
    assert not (out / "records.parquet").exists() and not list(out.rglob("*.png"))
    assert (
        main(["data", "import", "table", str(tmp_path / "bad.csv"), "--out", str(out), "--skip-bad-rows"])
        == 0
    )
    captured = capsys.readouterr()
    assert "skipped 5 bad row(s)" in captured.err and "line 5: winner 'c'" in captured.err
    assert [r.chosen for r in load_dataset(out)] == [0]
    again = ["data", "import", "table", str(tmp_path / "bad.csv"), "--out", str(out), "--skip-bad-rows"]
    assert main(again) == 2 and "already holds a dataset; pass --overwrite" in capsys.readouterr().err
    assert main([*again, "--overwrite"]) == 0


def test_unknown_layout_names_the_columns(tmp_path):
    (tmp_path / "x.csv").write_text("prompt,left,right\np,a.png,b.png\n")
    with pytest.raises(
        DatasetError, match=r"no image columns .* \['prompt', 'left', 'right'\].*--image-cols"
    ):
        import_table(tmp_path / "x.csv", tmp_path / "ds")
    with pytest.raises(DatasetError, match="no column 'pick'"):
        import_table(tmp_path / "x.csv", tmp_path / "ds", image_cols=["left", "right"], chosen_col="pick")


def test_split_writes_to_out_and_in_place_only_when_asked(tmp_path, capsys):
    from prefalign.testing.images import make_choice_dataset

    ds = make_choice_dataset(tmp_path / "ds", 10)
    before = (ds / "records.parquet").read_bytes()
    with pytest.raises(SystemExit):  # neither --out nor --in-place
        main(["data", "split", str(ds), "--test-size", "3"])
    assert "--out" in capsys.readouterr().err
    assert main(["data", "split", str(ds), "--test-size", "3", "--out", str(tmp_path / "s")]) == 0
    assert (ds / "records.parquet").read_bytes() == before
    split = load_dataset(tmp_path / "s")
    assert sum(r.split == "test" for r in split) == 3
    assert all(Path(split.image_path(i)).is_file() for r in split for i in r.images)
    assert main(["data", "split", str(ds), "--test-size", "3", "--out", str(tmp_path / "s")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["data", "split", str(ds), "--test-size", "3", "--out", str(tmp_path / "s"), "--overwrite"]) == 0
    )
    assert main(["data", "split", str(ds), "--test-size", "3", "--in-place"]) == 0
    assert sum(r.split == "test" for r in load_dataset(ds)) == 3


def test_failed_import_leaves_nothing_and_skipping_copies_only_kept_images(tmp_path, capsys):
    """A failed import left images/ behind; a skipping one copied the skipped rows' images too."""
    names = [f"img/{p}{i}.png" for i in range(8) for p in "ab"]
    _images(tmp_path, names)
    rows = [f"p{i},img/a{i}.png,img/b{i}.png,{'a' if i % 2 else 'c'}" for i in range(8)]  # even: bad winner
    (tmp_path / "bad.csv").write_text("prompt,image_a,image_b,winner\n" + "\n".join(rows) + "\n")
    out = tmp_path / "bad-ds"
    assert main(["data", "import", "table", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    assert "4 bad row(s) of 8; nothing written" in capsys.readouterr().err
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    out.mkdir()  # a folder the user made stays, empty
    assert main(["data", "import", "table", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    assert out.is_dir() and not list(out.iterdir())
    args = ["data", "import", "table", str(tmp_path / "bad.csv"), "--out", str(out), "--skip-bad-rows"]
    assert main(args) == 0
    ds = load_dataset(out)
    kept = sorted(image for rec in ds for image in rec.images)
    assert len(ds) == 4 and len(kept) == 8
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == kept
    assert all(int(Path(image).stem[1:]) % 2 == 1 for image in kept)
