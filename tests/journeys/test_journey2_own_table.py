"""Journey 2: "I have my own choices in a CSV": import, split, train, evaluate, all through the CLI."""

from __future__ import annotations

import json

from prefalign.cli.main import main
from prefalign.data import load_dataset
from prefalign.testing import make_choice_dataset


def test_csv_of_pairs_to_a_model_that_beats_chance_on_held_out_rows(tmp_path, tiny_clip32):
    # The user's own folder: images and a CSV in the common layout (no flags needed).
    shapes = load_dataset(make_choice_dataset(tmp_path / "mine", 240, n_images=2, size=32, seed=1))
    lines = ["prompt,image_a,image_b,winner"]
    for rec in shapes:
        lines.append(f"{rec.prompt},{rec.images[0]},{rec.images[1]},{'ab'[rec.chosen]}")
    (tmp_path / "mine" / "choices.csv").write_text("\n".join(lines) + "\n")

    ds, split, model = tmp_path / "ds", tmp_path / "ds-split", tmp_path / "model"
    assert main(["data", "import", "table", str(tmp_path / "mine" / "choices.csv"), "--out", str(ds)]) == 0
    assert main(["data", "split", str(ds), "--test-size", "0.25", "--out", str(split)]) == 0
    assert main(["train", "scorer", "--data", str(split), "--base", str(tiny_clip32), "--output_dir", str(model),
                 "--vision-blocks", "1", "--text-blocks", "1", "--learning-rate", "1e-3", "--per_device_train_batch_size", "8",
                 "--max-steps", "150", "--eval-steps", "0", "--eval-fraction", "0.2", "--no-progress"]) == 0  # fmt: skip
    report = tmp_path / "report"
    assert main(["eval", "preference", "--data", str(split), "--split", "test", "--model", str(model),
                 "--model", "random", "--out", str(report), "--device", "cpu"]) == 0  # fmt: skip
    results = json.loads((report / "report.json").read_text())["results"]
    records = load_dataset(split).records
    test_prompts = {r.prompt for r in records if r.split == "test"}
    assert len([r for r in records if r.split == "test"]) >= 60  # whole prompts: at least a quarter
    assert not test_prompts & {r.prompt for r in records if r.split != "test"}  # held out by prompt
    accuracy, n = results[str(model)]["top1"]["value"], results[str(model)]["top1"]["n"]
    assert n == len([r for r in records if r.split == "test"])
    assert accuracy > 0.75 and results[str(model)]["top1"]["low"] > 0.5, accuracy  # chance is 0.5 on pairs
    assert results["random"]["top1"]["low"] < 0.5 < results["random"]["top1"]["high"]
