"""No number depends on the batch size: repeated images score once, ties use one tolerance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from prefalign.cli.main import main
from prefalign.data import Record, save_dataset
from prefalign.scoring import load_scorer


@pytest.fixture
def files(images, tmp_path):
    paths = []
    for i, image in enumerate(images[:4]):
        paths.append(tmp_path / f"img{i}.png")
        image.save(paths[-1])
    copy = tmp_path / "copy-of-img0.png"  # the same bytes under another name
    shutil.copy(paths[0], copy)
    return paths, copy


def test_repeated_images_are_scored_once_and_share_the_score(tiny_hps_dir, files):
    from prefalign.scoring.ties import score_order

    (a, b, c, d), copy = files
    scorer = load_scorer(tiny_hps_dir, device="cpu")
    encoded = []
    encode = scorer.encode_pixels
    scorer.encode_pixels = lambda px: encoded.append(px.shape[0]) or encode(px)
    records = [("a red cat", [a, b, copy, c, a]), ("a red cat", [d, copy]), ("a blue dog", [a, b])]
    results = {}
    for batch_size in (1, 2, 3, 4, 5):
        encoded.clear()
        results[batch_size] = scorer.score_records(records, batch_size=batch_size, progress=False).scores
        # 4 distinct images for "a red cat" plus 2 for "a blue dog": 6 images through the tower
        assert sum(encoded) == 6, (batch_size, encoded)
        first = results[batch_size]
        assert first[0][0] == first[0][2] == first[0][4] == first[1][1]  # bit-identical copies
    for batch_size, scores in results.items():
        for got, want in zip(scores, results[1]):
            assert np.all(score_order(got, want) == 0), batch_size
    # the one-prompt door shares too
    single = scorer.score([a, copy, b], "a red cat", batch_size=2)
    assert single[0] == single[1]


def test_eval_preference_is_the_same_for_every_batch_size(tiny_hps_dir, files, tmp_path, capsys):
    """A record showing the same image twice: before, 0.750 with --batch-size 1, 1.000 with 4."""
    (a, b, c, d), copy = files
    root = tmp_path / "data"
    root.mkdir()
    for p in (a, b, c, d, copy):
        shutil.copy(p, root / p.name)
    records = [
        Record("a red cat", [a.name, copy.name], chosen=0),  # the image against itself
        Record("a red cat", [a.name, b.name, copy.name], chosen=2),
        Record("two blue dogs", [c.name, d.name, a.name], chosen=1),
    ]
    save_dataset(records, root)
    reports = []
    for batch_size in ("1", "2", "3", "4"):
        out = tmp_path / f"r{batch_size}"
        argv = [
            "eval",
            "preference",
            "--data",
            str(root),
            "-m",
            str(tiny_hps_dir),
            "--batch-size",
            batch_size,
        ]
        assert main([*argv, "-o", str(out), "--bootstrap", "20", "--no-progress"]) == 0
        reports.append(json.loads((out / "report.json").read_text())["results"])
    assert all(r == reports[0] for r in reports)
    # the image against itself is a tie at the top: half a point, never a win or a loss
    assert reports[0][str(tiny_hps_dir)]["n_records"] == 3


def test_one_tolerance_decides_ties_everywhere():
    from prefalign.evaluate.agreement import Vote, vote_credit
    from prefalign.evaluate.compare import paired_comparison
    from prefalign.evaluate.preference import preference_accuracy
    from prefalign.scoring.ties import SCORE_RTOL, score_order

    s = 25.0
    noise = s * SCORE_RTOL / 10  # fp32 batch noise: far below the tolerance
    scores = [np.array([s, s + noise])]  # the same image, scored in two batches
    result = preference_accuracy(scores, [Record("p", ["x", "x2"], chosen=0)], n_bootstrap=10)
    assert result.top1.value == 0.5 and result.pairwise_pooled.value == 0.5  # were 0.0
    vote = Vote(0, "u", "i", "p", ("x", "x2"), 0)
    assert vote_credit([vote], [np.array([s, s + noise])])[0] == 0.5
    paired = paired_comparison(np.array([s, 1.0]), np.array([s + noise, 2.0]))
    assert (paired.ties, paired.wins_b) == (1, 1)
    # a real difference still counts
    assert score_order(s, s + 10 * s * SCORE_RTOL) == -1
