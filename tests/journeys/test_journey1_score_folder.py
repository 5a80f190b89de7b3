"""Journey 1: "score my folder with HPS and PickScore": convert, score, and the offline error of known names."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from prefalign.cli.main import main


def test_convert_then_score_a_folder_with_two_scorer_kinds(tmp_path, tiny_clip32, capsys, monkeypatch):
    folder = tmp_path / "my-images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        Image.fromarray(rng.randint(0, 255, (40, 48, 3), np.uint8)).save(folder / f"{i}.png")
    hps, pick = tmp_path / "models" / "hps", tmp_path / "models" / "pickscore"
    assert main(["convert", "--from", "hf-clip", str(tiny_clip32), "--kind", "hps", "--out", str(hps)]) == 0
    assert main(["convert", "--from", "pickscore", str(tiny_clip32), "--out", str(pick)]) == 0
    tables = {}
    for name, model in (("hps", hps), ("pickscore", pick)):
        out = tmp_path / f"{name}.csv"
        assert (
            main(["score", str(folder), "--prompt", "a red circle", "--model", str(model), "--out", str(out)])
            == 0
        )
        tables[name] = list(csv.DictReader(out.open()))
    assert [len(t) for t in tables.values()] == [3, 3]
    from prefalign.scoring import load_scorer

    assert (load_scorer(hps, device="cpu").kind, load_scorer(pick, device="cpu").kind) == ("hps", "pickscore")
    scale = float(load_scorer(pick, device="cpu").model.logit_scale.exp())
    for h, p in zip(tables["hps"], tables["pickscore"], strict=True):
        # the same CLIP: HPS is 100·cos, PickScore logit_scale.exp()·cos
        assert float(p["score"]) == np_approx(float(h["score"]) * scale / 100)
        assert -100 <= float(h["score"]) <= 100

    capsys.readouterr()
    monkeypatch.setenv("PREFALIGN_HOME", str(tmp_path / "home"))
    assert main(["score", str(folder), "--prompt", "x", "--model", "pickscore"]) == 2
    err = capsys.readouterr().err
    assert "hf download yuvalkirstain/PickScore_v1" in err and err.count("\n") == 1
    assert main(["score", str(folder), "--prompt", "x", "--model", "hps-v2.1"]) == 2
    err = capsys.readouterr().err
    assert (
        "huggingface.co/xswu/HPSv2" in err
        and "prefalign convert --from hps-v2.1 HPS_v2.1_compressed.pt" in err
    )


def np_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-4, abs=1e-4)
