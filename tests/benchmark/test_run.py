"""A benchmark end to end on tiny models: the ranking, its intervals, resume, outside images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from prefalign.adapt.generate import GenerationSettings
from prefalign.benchmark import BenchmarkError, find_images, load_prompt_set, parse_model, run_benchmark
from prefalign.benchmark.images import generate_images, image_name
from tests.benchmark.conftest import write_prompts

FAST = GenerationSettings(steps=2, batch_size=2)


def test_brighter_model_ranks_first_with_intervals_that_exclude_each_other(
    tmp_path, dark_and_bright, brightness
):
    dark, bright = dark_and_bright
    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 6))
    models = [parse_model(f"dark={dark}"), parse_model(f"bright={bright}")]
    result = run_benchmark(ps, [brightness], tmp_path / "run", models=models, seeds=[0, 1], settings=FAST)
    board = result.leaderboard
    assert board.ranking == ["bright", "dark"]
    b, d = board.results["bright"]["brightness"], board.results["dark"]["brightness"]
    assert b["n_images"] == d["n_images"] == 12 and b["n_prompts"] == 6
    assert d["ci_low"] <= d["mean"] <= d["ci_high"] < b["ci_low"] <= b["mean"] <= b["ci_high"]
    wins = board.win_rates["brightness"]["bright"]["dark"]
    assert wins["win_rate"] == 1.0 and wins["wins"] == 12 and wins["sign_test_p"] < 0.001
    assert board.win_rates["brightness"]["dark"]["bright"]["win_rate"] == 0.0
    assert set(board.categories["brightness"]["bright"]) == {"circles", "squares"}
    # The mean is the mean of the images' scores, which scores.parquet lists one by one.
    import pyarrow.parquet as pq

    rows = pq.read_table(result.paths["scores"]).to_pylist()
    assert len(rows) == 24
    mine = [r["score"] for r in rows if r["model"] == "bright"]
    assert b["mean"] == pytest.approx(np.mean(mine))
    data = json.loads(result.paths["json"].read_text())
    assert data["format"] == "prefalign-leaderboard" and data["ranking"] == ["bright", "dark"]
    page = result.paths["html"].read_text()
    assert page.count("data:image/png;base64,") >= 3 + 2 * 6  # 3 plots + a 6-prompt, 2-model grid
    assert "src='images/" not in page and "src='http" not in page  # self-contained
    assert "| 1 | bright |" in result.paths["markdown"].read_text()


def test_interrupted_generation_resumes_keeping_finished_images(tmp_path, dark_and_bright, monkeypatch):
    import prefalign.files

    dark, _ = dark_and_bright
    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 3))
    models = [parse_model(f"dark={dark}")]
    out = tmp_path / "run"
    real = prefalign.files.write_atomic
    written = []

    def interrupted(path, data, **kw):
        if len(written) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while the 4th image was saved
        written.append(Path(path))
        real(path, data, **kw)

    monkeypatch.setattr(prefalign.files, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_images(models, ps, [0, 1], out, settings=FAST)
    monkeypatch.setattr(prefalign.files, "write_atomic", real)
    folder = out / "images" / "dark"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)  # no half file
    stamps = {p: os.stat(p).st_mtime_ns for p in written}

    counts = generate_images(models, ps, [0, 1], out, settings=FAST)
    assert counts.reused == {"dark": 3} and counts.generated == {"dark": 3}
    assert {p: os.stat(p).st_mtime_ns for p in written} == stamps  # finished images untouched
    assert len(list(folder.iterdir())) == 6
    again = generate_images(models, ps, [0, 1], out, settings=FAST)
    assert again.reused == {"dark": 6} and again.generated == {"dark": 0}


def test_resumed_images_equal_uninterrupted_ones(tmp_path, dark_and_bright):
    """An image depends on its prompt and seed only, not on what shared its batch (up to float
    rounding of batched kernels: one 8-bit level)."""
    dark, _ = dark_and_bright
    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 2))
    models = [parse_model(f"m={dark}")]
    generate_images(models, ps, [0, 1, 2], tmp_path / "whole", settings=FAST)
    generate_images(models, ps, [1], tmp_path / "parts", settings=FAST)
    generate_images(models, ps, [0, 1, 2], tmp_path / "parts", settings=FAST)
    from PIL import Image

    for p in ps.prompts:
        for s in (0, 1, 2):
            a = np.asarray(Image.open(tmp_path / "whole/images/m" / image_name(p.index, s)))
            b = np.asarray(Image.open(tmp_path / "parts/images/m" / image_name(p.index, s)))
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def _save(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (value, value, value)).save(path)


def test_images_made_elsewhere_pair_by_index_and_seed(tmp_path, brightness):
    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 4))
    root = tmp_path / "outside"
    for i in range(4):  # HPS v2's layout: one image per prompt, 00000.jpg
        _save(root / "a" / f"{i:05d}.jpg", 50 + i)
        _save(root / "b" / f"{i:05d}-s0.png", 200)
    _save(root / "b" / "notes.png", 0)  # not named by index: skipped and counted
    _save(root / "a" / "00099.jpg", 0)  # a prompt outside the set
    table = find_images(root, ps, None)
    assert set(table.paths) == {"a", "b"}
    assert set(table.paths["a"]) == {(i, 0) for i in range(4)}
    assert any("b: 1 files skipped" in n for n in table.notes)
    result = run_benchmark(ps, [brightness], tmp_path / "run", images=root)
    assert result.leaderboard.ranking == ["b", "a"]
    assert result.leaderboard.results["a"]["brightness"]["mean"] == pytest.approx(
        np.mean([50, 51, 52, 53]) / 255, abs=0.01
    )


def test_images_missing_for_one_model_are_left_out_and_said(tmp_path, brightness):
    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 4))
    root = tmp_path / "outside"
    for i in range(4):
        _save(root / "a" / f"{i}_0.png", 10)
        if i < 3:
            _save(root / "b" / f"{i}_0.png", 20)
    result = run_benchmark(ps, [brightness], tmp_path / "run", images=root)
    assert result.leaderboard.results["a"]["brightness"]["n_images"] == 3
    assert any("a: 1 images left out" in n for n in result.leaderboard.notes)
    with pytest.raises(BenchmarkError, match="no such folder"):
        find_images(tmp_path / "nope", ps, None)
    (tmp_path / "empty" / "m").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match="no image of the selected prompts"):
        find_images(tmp_path / "empty", ps, None)


def test_parse_model():
    m = parse_model("tuned=sd-base+runs/lora")
    assert (m.name, m.base, m.lora) == ("tuned", "sd-base", "runs/lora")
    assert parse_model("CompVis/stable-diffusion-v1-4").name == "stable-diffusion-v1-4"
    assert parse_model("sd+lora").name == "sd+lora"
    with pytest.raises(BenchmarkError, match="cannot name a folder"):
        parse_model("a/b=sd")


def test_datasets_from_prefalign_generate_pair_by_prompt_text(tmp_path, dark_and_bright, brightness):
    """A `prefalign generate` dataset numbers prompts in its own file's order: pairing goes by text."""
    from prefalign.adapt.generate import generate

    dark, bright = dark_and_bright
    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 3))
    texts = [p.text for p in ps.prompts]
    generate(dark, texts[::-1], [0, 1], tmp_path / "gen" / "dark", settings=FAST)  # reversed order
    generate(bright, texts, [0, 1], tmp_path / "gen" / "bright", settings=FAST)
    table = find_images(tmp_path / "gen", ps, None)
    assert set(table.paths["dark"]) == {(i, s) for i in range(3) for s in (0, 1)}
    assert table.paths["dark"][(0, 1)].endswith("images/00002-s1.png")  # set prompt 0 was line 2 there
    result = run_benchmark(ps, [brightness], tmp_path / "run", images=tmp_path / "gen", seeds=[1])
    assert result.leaderboard.ranking == ["bright", "dark"]
    assert (
        result.leaderboard.seeds == [1] and result.leaderboard.results["dark"]["brightness"]["n_images"] == 3
    )


def test_a_dataset_with_one_prompt_and_seed_twice_is_refused(tmp_path):
    from prefalign.data.dataset import Record, save_dataset

    ps = load_prompt_set(write_prompts(tmp_path / "p.tsv", 2))
    folder = tmp_path / "outside" / "m"
    for name in ("a.png", "b.png"):
        _save(folder / name, 10)
    records = [Record(prompt=ps.prompts[0].text, images=[n], meta={"seed": 0}) for n in ("a.png", "b.png")]
    save_dataset(records, folder)
    with pytest.raises(BenchmarkError, match="with seed 0 twice"):
        find_images(tmp_path / "outside", ps, None)
