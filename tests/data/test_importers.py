"""Importers read the public sets in their original layouts; hpd-v1 exports back exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from prefalign.data import DatasetError, Record, export_dataset, import_dataset, load_dataset, save_dataset
from prefalign.data.validate import validate_dataset


def image_bytes(colour, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format=fmt)
    return buf.getvalue()


def write_hpd_v1(root: Path) -> dict[str, list]:
    (root / "preference_images").mkdir(parents=True)
    items = {
        "preference_train.json": [
            {
                "human_preference": 2,
                "prompt": 'a "quoted" castle, 城',
                "id": "100",
                "file_path": ["100_0.webp", "100_1.webp", "100_2.webp", "100_3.webp"],
                "user_hash": "u1",
                "contain_name": False,
            },
            {
                "human_preference": 0,
                "prompt": "portrait of a cat by Greg Rutkowski",
                "id": "101",
                "file_path": ["101_0.webp", "101_1.webp"],
                "user_hash": "u2",
                "contain_name": True,
                "extra_field": {"kept": [1, 2]},
            },
        ],
        "preference_test.json": [
            {
                "human_preference": 1,
                "prompt": "a bridge",
                "id": 7,
                "file_path": ["t7_0.webp", "t7_1.webp", "t7_2.webp"],
                "user_hash": None,
                "contain_name": False,
            }
        ],
    }
    for name, rows in items.items():
        (root / name).write_text(json.dumps(rows), encoding="utf-8")
        for row in rows:
            for k, f in enumerate(row["file_path"]):
                (root / "preference_images" / f).write_bytes(image_bytes((k * 40, 10, 10), "WEBP"))
    return items


def test_hpd_v1_import_and_exact_round_trip(tmp_path):
    items = write_hpd_v1(tmp_path / "hpd")
    report = import_dataset("hpd-v1", tmp_path / "hpd", tmp_path / "ds")
    assert report.records == 3 and not report.missing_images
    ds = load_dataset(tmp_path / "ds")
    first = ds.records[0]
    assert (first.prompt, first.chosen, first.user, first.split, len(first.images)) == (
        'a "quoted" castle, 城',
        2,
        "u1",
        "train",
        4,
    )
    assert ds.records[2].split == "test" and ds.records[2].user is None
    assert validate_dataset(tmp_path / "ds").ok

    export_dataset("hpd-v1", tmp_path / "ds", tmp_path / "back")
    for name, rows in items.items():
        assert json.loads((tmp_path / "back" / name).read_text(encoding="utf-8")) == rows
        for row in rows:
            assert list(json.loads(json.dumps(row))) == list(row)  # key order too
            for f in row["file_path"]:
                assert (tmp_path / "back/preference_images" / f).read_bytes() == (
                    tmp_path / "hpd/preference_images" / f
                ).read_bytes()
    back = json.loads((tmp_path / "back/preference_train.json").read_text(encoding="utf-8"))
    assert [list(r) for r in back] == [list(r) for r in items["preference_train.json"]]


def test_export_of_other_records_and_choices_only(tmp_path):
    img = tmp_path / "ds" / "a.png"
    img.parent.mkdir()
    img.write_bytes(image_bytes((1, 2, 3)))
    save_dataset(
        [
            Record(id="x", prompt="p", images=["a.png", "a.png"], chosen=1, user="h", split="test"),
            Record(id="y", prompt="q", images=["a.png", "a.png"], ranks=[0, 0]),  # a tie: not HPD v1
        ],
        tmp_path / "ds",
    )
    counts = export_dataset("hpd-v1", tmp_path / "ds", tmp_path / "out")
    assert counts["skipped"] == 1 and counts["preference_test.json"] == 1
    (item,) = json.loads((tmp_path / "out/preference_test.json").read_text())
    assert item["human_preference"] == 1 and item["file_path"] == ["x_0.png", "x_1.png"]
    assert (tmp_path / "out/preference_images/x_1.png").is_file()


def test_hpd_v2_pairs_ties_and_rankings(tmp_path):
    src = tmp_path / "hpd2"
    for split in ("train", "test"):
        (src / split).mkdir(parents=True)
    train = [
        {"human_preference": [0, 1], "prompt": "a", "file_path": ["a0.jpg", "a1.jpg"], "user_hash": "u"},
        {"human_preference": [1, 1], "prompt": "b", "file_path": ["b0.jpg", "b1.jpg"]},
    ]
    test = [
        {
            "prompt": "c",
            "image_path": ["c0.jpg", "c1.jpg", "c2.jpg"],
            "rank": [2, 1, 3],
            "raw_annotations": [
                {"rank": [2, 1, 3], "user_hash": "h1"},
                {"rank": [1, 2, 3], "user_hash": "h2"},
            ],
        }
    ]
    (src / "train.json").write_text(json.dumps(train))
    (src / "test.json").write_text(json.dumps(test))
    for split, rows, key in (("train", train, "file_path"), ("test", test, "image_path")):
        for row in rows:
            for f in row[key]:
                (src / split / f).write_bytes(image_bytes((9, 9, 9), "JPEG"))
    import_dataset("hpd-v2", src, tmp_path / "ds", images="copy")
    a, b, c = load_dataset(tmp_path / "ds").records
    assert (a.chosen, a.ranks, a.split) == (1, None, "train")
    assert (b.chosen, b.ranks) == (None, [0, 0])
    assert (c.ranks, c.split, len(c.meta["raw_annotations"])) == ([2, 1, 3], "test", 2)
    assert validate_dataset(tmp_path / "ds").ok
    # the train pair's annotator is the record's user; the test ranking keeps each annotator's hash
    assert (a.user, "user_hash" in a.meta, b.user) == ("u", False, None)
    assert c.user is None and [r["user_hash"] for r in c.meta["raw_annotations"]] == ["h1", "h2"]


def test_split_by_user_refuses_records_without_a_user(tmp_path, capsys):
    from prefalign.cli.main import main

    records = [
        Record(id=f"r{i}", prompt=f"p{i}", images=["a.png"], user=None if i < 3 else "u") for i in range(8)
    ]
    save_dataset(records, tmp_path / "ds", check_images="off")
    before = (tmp_path / "ds/records.parquet").read_bytes()
    with pytest.raises(DatasetError, match="3 of 8 records have no user"):
        from prefalign.data.split import split_dataset

        split_dataset(tmp_path / "ds", 2, by="user")
    assert (
        main(["data", "split", str(tmp_path / "ds"), "--test-size", "2", "--by", "user", "--in-place"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 of 8 records have no user" in err[0] and "--by prompt" in err[0]
    assert (tmp_path / "ds/records.parquet").read_bytes() == before  # nothing rewritten


def test_pickapic_bytes_labels_and_ties(tmp_path):
    table = pa.table(
        {
            "caption": ["a dog", "a cat", "a cow"],
            "jpg_0": [
                image_bytes((1, 1, 1), "JPEG"),
                image_bytes((2, 2, 2), "PNG"),
                image_bytes((3, 3, 3), "JPEG"),
            ],
            "jpg_1": [image_bytes((4, 4, 4), "JPEG")] * 3,
            "label_0": [1.0, 0.0, 0.5],
            "label_1": [0.0, 1.0, 0.5],
            "user_id": [5, 6, 5],
            "model_0": ["sdxl", "sd15", "sd21"],
            "model_1": ["sd15", "sdxl", "sdxl"],
            "ranking_id": [10, 11, 12],
            "image_0_uid": ["i0", "i2", "i4"],
            "image_1_uid": ["i1", "i3", "i5"],
        }
    )
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    import_dataset("pickapic", tmp_path / "train-00000-of-00001.parquet", tmp_path / "ds")
    dog, cat, cow = load_dataset(tmp_path / "ds").records
    assert (dog.chosen, cat.chosen, cow.chosen, cow.ranks) == (0, 1, None, [0, 0])
    assert cat.images[0].endswith("i2.png") and dog.images[0].endswith("i0.jpg")
    assert dog.user == "5" and dog.meta["model_0"] == "sdxl" and dog.split == "train"
    assert validate_dataset(tmp_path / "ds").ok


def _pickapic_shard(path: Path, labels, has_label, are_different) -> Path:
    n = len(labels)
    table = pa.table(
        {
            "are_different": are_different,
            "best_image_uid": [""] * n,
            "caption": [f"prompt {i}" for i in range(n)],
            "created_at": [f"2023-0{1 + i % 9}-01" for i in range(n)],
            "has_label": has_label,
            "image_0_uid": [f"u{i}a" for i in range(n)],
            "image_1_uid": [f"u{i}b" for i in range(n)],
            "jpg_0": [image_bytes((i, 1, 1), "JPEG") for i in range(n)],
            "jpg_1": [image_bytes((i, 2, 2), "JPEG") for i in range(n)],
            "label_0": [a for a, _ in labels],
            "label_1": [b for _, b in labels],
            "model_0": ["sdxl"] * n,
            "model_1": ["sd15"] * n,
            "ranking_id": list(range(100, 100 + n)),
            "user_id": [7] * n,
            "num_example_per_prompt": [1] * n,
        }
    )
    pq.write_table(table, path)
    return path


def test_pickapic_skips_unlabelled_and_identical_rows(tmp_path, capsys):
    """has_label = False rows are no judgement (not ties); are_different = False is one image twice."""
    shard = _pickapic_shard(
        tmp_path / "validation_unique-00000-of-00001.parquet",
        labels=[(1.0, 0.0), (0.0, 0.0), (0.5, 0.5), (0.0, 1.0), (0.5, 0.5), (0.0, 0.0)],
        has_label=[True, False, True, True, True, False],
        are_different=[True, True, True, False, True, False],
    )
    report = import_dataset("pickapic", shard, tmp_path / "ds")
    recs = load_dataset(tmp_path / "ds").records
    assert [(r.id, r.chosen, r.ranks) for r in recs] == [
        ("pickapic:100", 0, None),
        ("pickapic:102", None, [0, 0]),
        ("pickapic:104", None, [0, 0]),
    ]
    assert report.skipped == {
        "has_label = False: no human judgement": 2,
        "are_different = False: the same image twice": 1,
    }
    assert recs[0].split == "validation"
    # --keep-unlabeled keeps them with no label at all (not a tie)
    import_dataset("pickapic", shard, tmp_path / "all", keep_unlabeled=True, keep_identical=True)
    kept = {r.id: (r.chosen, r.ranks) for r in load_dataset(tmp_path / "all")}
    assert len(kept) == 6 and kept["pickapic:101"] == (None, None) and kept["pickapic:103"] == (1, None)
    # the flags written as 0/1 integers mean the same
    shard01 = _pickapic_shard(
        tmp_path / "test_unique-00000-of-00001.parquet",
        labels=[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)],
        has_label=[1, 0, 1],
        are_different=[1, 1, 0],
    )
    report01 = import_dataset("pickapic", shard01, tmp_path / "ints")
    assert report01.records == 1 and sum(report01.skipped.values()) == 2
    # the command line prints the counts
    from prefalign.cli.main import main

    assert main(["data", "import", "pickapic", str(shard), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "3 records" in out and "skipped       2  has_label = False" in out


def test_pickapic_invalid_labels_name_the_row(tmp_path):
    shard = _pickapic_shard(
        tmp_path / "train-00000-of-00002.parquet",
        labels=[(1.0, 0.0), (0.0, 0.0)],
        has_label=[True, True],
        are_different=[True, True],
    )
    with pytest.raises(DatasetError, match=r"train-00000-of-00002.parquet: row 1: labels .*\(0.0, 0.0\)"):
        import_dataset("pickapic", shard, tmp_path / "ds")
    assert not (tmp_path / "ds" / "records.parquet").exists()


def test_imagereward_rankings_with_ties(tmp_path):
    (tmp_path / "images").mkdir()
    rows = [
        {"id": "q1", "prompt": "a ship", "generations": ["g0.png", "g1.png", "g2.png"], "ranking": [1, 1, 3]}
    ]
    for g in rows[0]["generations"]:
        (tmp_path / "images" / g).write_bytes(image_bytes((7, 7, 7)))
    (tmp_path / "validation.json").write_text(json.dumps(rows))
    import_dataset("imagereward", tmp_path / "validation.json", tmp_path / "ds")
    (rec,) = load_dataset(tmp_path / "ds").records
    assert (rec.id, rec.ranks, rec.split, rec.chosen) == ("imagereward:q1", [1, 1, 3], "validation", None)
    assert validate_dataset(tmp_path / "ds").ok


def write_imagerewarddb(root: Path) -> list[dict]:
    """ImageRewardDB as published: metadata-<split>.parquet at the root, one row per image, and
    the extracted shards images/<split>/<split>_<k>/ holding the images and <split>_<k>.json."""
    root.mkdir(parents=True)
    rows = []
    for split, shard, pid, prompt, ranks, overall in (
        ("train", 1, "000864-0061", "a castle on a cliff, 城", [1, 3, 1, 2], [6.0, 2.0, 6.0, 4.0]),
        ("train", 2, "001123-0007", "a red bicycle", [2, 1], [3.0, 5.0]),
        ("validation", 1, "004000-0001", "an owl", [1, 2, 3], [7.0, 5.0, 1.0]),
    ):
        for k, (rank, rating) in enumerate(zip(ranks, overall, strict=True)):
            rows.append(
                {
                    "image_path": f"images/{split}/{split}_{shard}/{pid}-{k}.webp",
                    "prompt_id": pid,
                    "prompt": prompt,
                    "classification": "Outdoor Scenes",
                    "image_amount_in_total": len(ranks),
                    "rank": rank,
                    "overall_rating": rating,
                    "image_text_alignment_rating": rating - 1,
                    "fidelity_rating": rating + 1,
                }
            )
    for split in ("train", "validation"):
        split_rows = [r for r in rows if r["image_path"].startswith(f"images/{split}/")]
        pq.write_table(pa.Table.from_pylist(split_rows), root / f"metadata-{split}.parquet")
        for shard in {r["image_path"].split("/")[2] for r in split_rows}:
            shard_rows = [r for r in split_rows if r["image_path"].split("/")[2] == shard]
            folder = root / "images" / split / shard
            folder.mkdir(parents=True)
            (folder / f"{shard}.json").write_text(json.dumps(shard_rows), encoding="utf-8")
            for r in shard_rows:
                (root / r["image_path"]).write_bytes(image_bytes((r["rank"] * 30, 5, 5), "WEBP"))
    return rows


IRDB_EXPECTED = {
    "imagereward:000864-0061": ("a castle on a cliff, 城", [1, 3, 1, 2], [6.0, 2.0, 6.0, 4.0], "train"),
    "imagereward:001123-0007": ("a red bicycle", [2, 1], [3.0, 5.0], "train"),
    "imagereward:004000-0001": ("an owl", [1, 2, 3], [7.0, 5.0, 1.0], "validation"),
}


@pytest.mark.parametrize("layout", ["directory", "parquet", "json-shards", "images-folder"])
def test_imagerewarddb_as_published(tmp_path, layout):
    """One row per image, grouped by prompt_id: ranks with ties, overall rating, the others in meta."""
    write_imagerewarddb(tmp_path / "db")
    if layout == "directory":  # both Parquet and JSON shards: the rows are read once
        sources = [tmp_path / "db"]
    elif layout == "parquet":
        sources = [tmp_path / "db/metadata-train.parquet", tmp_path / "db/metadata-validation.parquet"]
    elif layout == "json-shards":
        sources = sorted((tmp_path / "db/images").rglob("*.json"))
    else:  # the images/ folder alone: its shards, grouped by prompt across shards of a split
        sources = [tmp_path / "db/images"]
    got = {}
    for n, src in enumerate(sources):
        report = import_dataset("imagereward", src, tmp_path / f"ds{n}")
        assert not report.missing_images
        for rec in load_dataset(tmp_path / f"ds{n}"):
            got[rec.id] = rec
            assert validate_dataset(tmp_path / f"ds{n}").ok
    assert {k: (r.prompt, r.ranks, r.ratings, r.split) for k, r in got.items()} == IRDB_EXPECTED
    castle = got["imagereward:000864-0061"]
    assert castle.meta["fidelity_rating"] == [7.0, 3.0, 7.0, 5.0]
    assert castle.meta["image_text_alignment_rating"] == [5.0, 1.0, 5.0, 3.0]
    assert (castle.meta["classification"], castle.meta["image_amount_in_total"]) == ("Outdoor Scenes", 4)
    assert castle.chosen is None and castle.images[3].endswith("000864-0061-3.webp")


def test_imagerewarddb_wrong_files_say_what_they_are(tmp_path):
    pq.write_table(pa.table({"caption": ["x"], "jpg_0": [b"x"]}), tmp_path / "metadata-train.parquet")
    with pytest.raises(
        DatasetError, match=r"metadata-train.parquet: a Parquet file with columns .*expected ImageRewardDB"
    ):
        import_dataset("imagereward", tmp_path / "metadata-train.parquet", tmp_path / "ds")
    (tmp_path / "x.json").write_text(json.dumps([{"caption": "x"}]))
    with pytest.raises(DatasetError, match=r"x.json: a JSON list whose first item has keys \['caption'\]"):
        import_dataset("imagereward", tmp_path / "x.json", tmp_path / "ds")
    (tmp_path / "train_1.zip").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(DatasetError, match=r"train_1\.zip: a zip archive; extract it"):
        import_dataset("imagereward", tmp_path / "train_1.zip", tmp_path / "ds")
    assert not (tmp_path / "ds" / "records.parquet").exists()


def test_diffusiondb_groups_by_prompt(tmp_path):
    (tmp_path / "part-000001").mkdir()
    names = ["x1.png", "x2.png", "y1.png"]
    for n in names:
        (tmp_path / "part-000001" / n).write_bytes(image_bytes((5, 5, 5)))
    pq.write_table(
        pa.table(
            {
                "image_name": names,
                "prompt": ["castle", "castle", "forest"],
                "part_id": [1, 1, 1],
                "seed": [1, 2, 3],
                "step": [50, 50, 30],
                "cfg": [7.0, 7.0, 9.0],
                "sampler": [8, 8, 1],
                "width": [512] * 3,
                "height": [512] * 3,
                "user_name": ["h1", "h1", "h2"],
                "timestamp": pa.array([1, 2, 3], pa.timestamp("s")),
                "image_nsfw": [0.1, 0.2, 0.9],
                "prompt_nsfw": [0.0, 0.0, 0.1],
            }
        ),
        tmp_path / "metadata.parquet",
    )
    import_dataset("diffusiondb", tmp_path, tmp_path / "ds")
    castle, forest = load_dataset(tmp_path / "ds").records
    assert (len(castle.images), castle.chosen, castle.ranks, castle.user) == (2, None, None, "h1")
    assert castle.meta["seed"] == [1, 2] and forest.meta["image_nsfw"] == [0.9]
    assert validate_dataset(tmp_path / "ds").ok


@pytest.mark.parametrize(
    ("fmt", "content", "match"),
    [
        ("hpd-v1", "{not json", "malformed JSON at line 1"),
        ("hpd-v1", json.dumps({"a": 1}), "expected a JSON list"),
        ("hpd-v1", json.dumps([{"prompt": "x"}]), "lacks \\['human_preference', 'file_path'\\]"),
        (
            "imagereward",
            json.dumps([{"prompt": "x", "generations": ["a"], "ranking": [1, 2]}]),
            "2 ranks for 1",
        ),
    ],
)
def test_bad_input_names_the_file(tmp_path, fmt, content, match):
    path = tmp_path / "preference_train.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=match) as info:
        import_dataset(fmt, path, tmp_path / "ds")
    assert "preference_train.json" in str(info.value)
    assert not (tmp_path / "ds" / "records.parquet").exists(), "no half dataset"


def test_invalid_utf8_and_wrong_format(tmp_path):
    path = tmp_path / "preference_train.json"
    path.write_bytes(b'[{"prompt": "caf\xe9"}]')
    with pytest.raises(DatasetError, match="not UTF-8"):
        import_dataset("hpd-v1", path, tmp_path / "ds")
    (tmp_path / "x.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="not a Parquet file"):
        import_dataset("pickapic", tmp_path / "x.parquet", tmp_path / "ds")
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "y.parquet")
    with pytest.raises(DatasetError, match="lacks columns"):
        import_dataset("pickapic", tmp_path / "y.parquet", tmp_path / "ds")
    with pytest.raises(DatasetError, match="unknown format"):
        import_dataset("laion", tmp_path, tmp_path / "ds")
