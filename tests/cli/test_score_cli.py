"""`prefalign score`: tables, every bad input reported with its path, exit codes."""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from prefalign.cli.main import main
from prefalign.data import Record, save_dataset


@pytest.fixture(scope="module")
def model_dir(tiny_clip_dir, tmp_path_factory):
    from prefalign.scoring import convert_checkpoint

    return convert_checkpoint("hf-clip", tiny_clip_dir, tmp_path_factory.mktemp("cli") / "hps", kind="hps")


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        Image.fromarray(rng.randint(0, 255, (48, 40, 3), np.uint8)).save(d / f"img{i}.png")
    (d / "notes.txt").write_text("not an image, not picked up from a directory")
    return d


def test_scores_a_directory_into_parquet(model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    code = main(
        ["score", str(image_dir), "--prompt", "a red circle", "--model", str(model_dir), "--out", str(out)]
    )
    assert code == 0
    table = pq.read_table(out).to_pylist()
    assert [r["image"] for r in table] == [str(image_dir / f"img{i}.png") for i in range(3)]
    assert all(r["prompt"] == "a red circle" and isinstance(r["score"], float) for r in table)


def test_prints_a_table_without_out(model_dir, image_dir, capsys):
    assert main(["score", str(image_dir / "img0.png"), "-p", "a cat", "-m", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["image", "prompt", "score"]
    assert "img0.png" in out


def bad_files(d):
    """One of each bad input, with the reason the report must give."""
    (d / "zero.png").write_bytes(b"")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    from tests.data.test_images import png_claiming_size

    (d / "bomb.png").write_bytes(png_claiming_size(50_000, 50_000))
    return {
        "zero.png": "empty file (0 bytes)",
        "corrupt.png": "cannot open image",
        "bomb.png": "decompression bomb",
    }


def test_bad_inputs_are_listed_and_the_rest_is_scored(model_dir, image_dir, tmp_path, capsys):
    expected = bad_files(image_dir)
    out = tmp_path / "scores.csv"
    args = [str(image_dir), "--prompt", "a cat", "--model", str(model_dir)]
    code = main(["score", *args, "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "3 could not be scored" in err
    for name, reason in expected.items():
        line = next(line for line in err.splitlines() if name in line)
        assert str(image_dir / name) in line and reason in line, line
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 3 + 3
    good = [r for r in rows if r["image"].endswith(("img0.png", "img1.png", "img2.png"))]
    assert all(r["score"] for r in good) and not any(r["score"] for r in rows if r not in good)


def test_strict_stops_at_the_first_failure(model_dir, image_dir, capsys):
    (image_dir / "zero.png").write_bytes(b"")
    code = main(["score", str(image_dir / "zero.png"), "-p", "a cat", "-m", str(model_dir), "--strict"])
    assert code == 2
    assert "zero.png: empty file (0 bytes)" in capsys.readouterr().err


def test_empty_prompt_is_refused(model_dir, image_dir, capsys):
    assert main(["score", str(image_dir), "--prompt", "", "--model", str(model_dir)]) == 2
    assert "--prompt is empty" in capsys.readouterr().err


def test_scores_a_dataset_and_reports_empty_prompts(model_dir, image_dir, tmp_path, capsys):
    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(3):
        (ds / f"img{i}.png").write_bytes((image_dir / f"img{i}.png").read_bytes())
    save_dataset(
        [
            Record(prompt="a cat", images=["img0.png", "img1.png"], chosen=0),
            Record(prompt="", images=["img2.png"]),
        ],
        ds,
    )
    out = tmp_path / "s.parquet"
    assert main(["score", "--data", str(ds), "--model", str(model_dir), "--out", str(out)]) == 1
    rows = pq.read_table(out).to_pylist()
    assert [(r["id"], r["index"], r["image"]) for r in rows] == [
        ("0", 0, "img0.png"),
        ("0", 1, "img1.png"),
        ("1", 0, "img2.png"),
    ]
    assert rows[0]["score"] is not None and rows[2]["score"] is None
    assert "record 1: empty prompt" in capsys.readouterr().err


def test_usage_errors(model_dir, image_dir, capsys):
    assert main(["score", str(image_dir), "--model", str(model_dir)]) == 2
    assert "--prompt is required" in capsys.readouterr().err
    assert main(["score", str(image_dir), "-p", "x", "-m", str(model_dir), "--out", "x.txt"]) == 2
    assert "must end in .parquet or .csv" in capsys.readouterr().err
    assert main(["score", str(image_dir), "-p", "x", "-m", "/no/such/model"]) == 2
    assert "/no/such/model: no such model directory, known name" in capsys.readouterr().err


def test_mistyped_folder_is_refused_before_the_model_loads(model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    for model in (str(model_dir), "/no/such/model"):  # the inputs are checked first, model unread
        code = main(["score", str(tmp_path / "my-imgs"), "-p", "a cat", "-m", model, "--out", str(out)])
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err  # one line, no scorer loaded
        assert f"{tmp_path / 'my-imgs'}: no such file or directory" in err and "nothing was" in err
        assert not out.exists()
    code = main(["score", str(image_dir), str(image_dir / "missing.png"), "-p", "x", "-m", str(model_dir)])
    assert code == 2 and "missing.png: no such file or directory" in capsys.readouterr().err


def test_device_and_precision_are_said_once(model_dir, image_dir, capsys, caplog):
    caplog.set_level("INFO")
    assert main(["score", str(image_dir), "-p", "a cat", "-m", str(model_dir)]) == 0
    said = capsys.readouterr().err.splitlines() + caplog.messages
    lines = [line for line in said if f"{model_dir} on cpu in " in line]
    assert len(lines) == 1, lines


def test_list_models(capsys):
    assert main(["score", "--list-models"]) == 0
    assert "hps-v2" in capsys.readouterr().out.split()


def test_two_processes_give_the_one_process_table(model_dir, image_dir, tmp_path):
    """Under torchrun the dataset is sharded across processes and gathered in order."""
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(3):
        shutil.copy(image_dir / f"img{i}.png", ds / f"img{i}.png")
    records = [
        Record(prompt=f"a cat number {k}", images=[f"img{k % 3}.png", f"img{(k + 1) % 3}.png"])
        for k in range(5)
    ]
    records.append(Record(prompt="broken", images=["img0.png", "missing.png"]))
    save_dataset(records, ds)
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    args = ["score", "--data", str(ds), "--model", str(model_dir), "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(one)]) == 1
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--nproc_per_node", "2", "-m", "prefalign.cli.main", *args, "--out", str(two)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "missing.png: file not found" in proc.stderr
    assert "process 0 of 2 scores 3 of 6 records" in proc.stderr
    assert "process 1 of 2 scores 3 of 6 records" in proc.stderr
    a, b = pq.read_table(one).to_pylist(), pq.read_table(two).to_pylist()
    assert [r["image"] for r in a] == [r["image"] for r in b]
    for x, y in zip(a, b):
        assert (x["score"] is None and y["score"] is None) or abs(x["score"] - y["score"]) < 1e-4


def test_precision_defaults_to_auto_and_is_recorded(model_dir, image_dir, tmp_path, capsys, caplog):
    import json

    caplog.set_level("INFO")
    from prefalign.scoring.precision import choose_precision

    out = tmp_path / "scores.parquet"
    assert main(["score", str(image_dir), "-p", "a red circle", "-m", str(model_dir), "-o", str(out)]) == 0
    meta = json.loads(pq.read_schema(out).metadata[b"prefalign"])
    expected = choose_precision("auto", "cpu")
    assert (meta["precision_requested"], meta["precision"]) == ("auto", expected.precision)
    assert meta["precision_reason"] == expected.reason
    assert meta["attn_implementation"] == "sdpa"
    said = [capsys.readouterr().err, *caplog.messages]  # the scorer logs it (INFO), once
    assert sum(f"in {expected.precision} ({expected.reason})" in line for line in said) == 1


def test_explicit_precision_is_recorded(model_dir, image_dir, tmp_path, capsys):
    import json

    out = tmp_path / "scores.parquet"
    args = ["score", str(image_dir), "-p", "a red circle", "-m", str(model_dir), "-o", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 is emulated on CPUs without it
        assert main([*args, "--precision", "bf16"]) == 0
    meta = json.loads(pq.read_schema(out).metadata[b"prefalign"])
    assert (meta["precision_requested"], meta["precision"], meta["device"]) == ("bf16", "bf16", "cpu")
