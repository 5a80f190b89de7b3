"""split, validate, stats, the dataset writer, and the ``prefalign data`` commands."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from prefalign.cli.main import main
from prefalign.data import DatasetError, DatasetWriter, Record, load_dataset, save_dataset
from prefalign.data.split import split_dataset
from prefalign.data.stats import dataset_stats
from prefalign.data.validate import validate_dataset
from prefalign.testing.discord_export import FakeChannel, fake_user


def _records(n=40):
    return [
        Record(
            id=f"r{i}", prompt=f"prompt {i % 13}", images=["a.png", "b.png"], chosen=i % 2, user=f"u{i % 7}"
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("by", ["prompt", "user"])
def test_split_is_deterministic_and_groups_do_not_cross(tmp_path, by):
    save_dataset(_records(), tmp_path / "a")
    save_dataset(_records(), tmp_path / "b")
    counts = split_dataset(tmp_path / "a", 10, by=by, seed=3)
    split_dataset(tmp_path / "b", 10, by=by, seed=3)
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert [r.split for r in a] == [r.split for r in b]
    assert counts["test"] >= 10 and counts["train"] + counts["test"] == 40
    key = (lambda r: r.prompt) if by == "prompt" else (lambda r: r.user)
    test_keys = {key(r) for r in a if r.split == "test"}
    train_keys = {key(r) for r in a if r.split == "train"}
    assert test_keys and train_keys and not test_keys & train_keys
    split_dataset(tmp_path / "b", 10, by=by, seed=4)
    assert [r.split for r in load_dataset(tmp_path / "b")] != [r.split for r in a]


def test_validate_finds_every_kind_of_problem(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (4, 4)).save(good, format="PNG")
    (tmp_path / "ok.png").write_bytes(good.getvalue())
    (tmp_path / "bad.png").write_bytes(good.getvalue()[:20])
    save_dataset(
        [
            Record(id="1", prompt="fine", images=["ok.png", "ok.png"], chosen=1),
            Record(id="1", prompt="   ", images=["ok.png"], chosen=3),
            Record(id="3", prompt="p", images=["ok.png", "gone.png"], ranks=[0]),
            Record(id="4", prompt="p", images=["bad.png", "http://127.0.0.1:9/x.png"]),
        ],
        tmp_path,
    )
    report = validate_dataset(tmp_path)
    assert report.counts() == {
        "duplicate id": 1,
        "empty prompt": 1,
        "choice out of range": 1,
        "ranks do not fit the images": 1,
        "missing image": 1,
        "undecodable image": 1,
        "image not fetched": 1,
    }
    assert main(["data", "validate", str(tmp_path)]) == 1


def test_writer_is_atomic(tmp_path):
    save_dataset([Record(id="old", prompt="p", images=["a"])], tmp_path)
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path, batch_size=2) as w:
        for i in range(5):
            w.write(Record(id=f"n{i}", prompt="p", images=["a"]))
        raise RuntimeError("interrupted")
    assert [r.id for r in load_dataset(tmp_path)] == ["old"]
    assert not list(tmp_path.glob(".records-*"))


def _mined(tmp_path):
    ch = FakeChannel("1", "dreambot")
    users = [fake_user(str(i), f"user{i}") for i in range(3)]
    for i in range(6):
        user = users[i % 3]
        r = ch.request(user, f"prompt {i}", "-n 2" if i % 2 else "-n 3")
        ch.generation(r, list(range(10 * i, 10 * i + (2 if i % 2 else 3))))
        ch.request(user, f"prompt {i}", f"-S {10 * i + 1}")
    r = ch.request(users[0], "no choice here", "-n 2")
    ch.generation(r, [1, 2])
    return ch.write(tmp_path / "export.json")


def test_cli_from_discord_stats_split_export(tmp_path, capsys):
    export = _mined(tmp_path)
    out = tmp_path / "ds"
    assert main(["data", "from-discord", str(export), "--out", str(out), "--no-progress"]) == 0
    assert "6 choices" in capsys.readouterr().out
    stats = dataset_stats(out)
    assert (stats["records"], stats["users"], stats["most_choices_by_one_user"]) == (6, 3, 2)
    assert stats["images_per_prompt"] == {2: 3, 3: 3} and stats["dropped"] == {"no choice made": 1}
    assert main(["data", "stats", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 15
    assert main(["data", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no choice made" in text and "images per prompt" in text
    assert main(["data", "split", str(out), "--test-size", "2", "--by", "user", "--in-place"]) == 0
    assert {r.split for r in load_dataset(out)} == {"train", "test"}
    # images are still URLs: validate says so, export refuses with a clear message
    assert main(["data", "validate", str(out), "--no-images"]) == 1
    assert main(["data", "export", "hpd-v1", str(out), "--out", str(tmp_path / "hpd")]) == 2
    assert "fetch-images" in capsys.readouterr().err


def test_cli_bad_export_exits_2_and_keeps_work(tmp_path, capsys):
    export = _mined(tmp_path)
    bad = tmp_path / "page.html"
    bad.write_text("<html></html>")
    assert (
        main(["data", "from-discord", str(bad), str(export), "--out", str(tmp_path / "ds"), "--no-progress"])
        == 2
    )
    err = capsys.readouterr().err
    assert "page.html" in err and "HTML" in err
    assert len(load_dataset(tmp_path / "ds")) == 6


def test_cli_help_of_every_subcommand(capsys):
    for sub in ("from-discord", "fetch-images", "stats", "import", "export", "split", "validate"):
        with pytest.raises(SystemExit) as info:
            main(["data", sub, "--help"])
        assert info.value.code == 0
        assert "usage: prefalign data " + sub in capsys.readouterr().out


def test_cli_import_unknown_source(tmp_path, capsys):
    assert main(["data", "import", "hpd-v1", str(tmp_path / "nope"), "--out", str(tmp_path / "ds")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_save_dataset_checks_image_references(tmp_path, caplog):
    """A record naming an image that is not there is found when the dataset is written."""
    ds = tmp_path / "ds"
    ds.mkdir()
    Image.new("RGB", (4, 4)).save(ds / "ok.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "elsewhere.png")
    records = [
        Record(id="a", prompt="p", images=["ok.png", str(tmp_path / "elsewhere.png")]),  # absolute: kept
        Record(id="b", prompt="q", images=["ok.png", "missing.png", "https://example.com/x.png"]),
        Record(id="c", prompt="r", images=[str(tmp_path / "gone.png")]),
    ]
    with pytest.raises(DatasetError, match=r"2 image reference\(s\) of 3 records.*record b: 'missing.png'"):
        save_dataset(records, ds, check_images="error")
    assert not (ds / "records.parquet").exists() and not list(ds.glob(".records-*"))  # nothing half
    with caplog.at_level("WARNING", logger="prefalign.data.dataset"):
        save_dataset(records, ds)
    assert len(load_dataset(ds)) == 3
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "2 image reference(s)" in warning and "data validate" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="prefalign.data.dataset"):
        save_dataset(records[:1], ds)
    assert caplog.records == []
