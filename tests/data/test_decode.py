"""The decode pool: batches come back in the order given, failures name their file and reason."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.data.decode import decode_ahead, decode_batch, decode_workers
from prefalign.data.images import Preprocess


@pytest.fixture
def sources(tmp_path):
    rng = np.random.RandomState(0)
    paths = []
    for i in range(14):
        path = tmp_path / f"img{i:02d}.jpg"
        Image.fromarray(rng.randint(0, 255, (30 + i, 40, 3), np.uint8)).save(path)
        paths.append(str(path))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths[3] = str(tmp_path / "missing.jpg")
    paths[9] = str(tmp_path / "corrupt.jpg")
    return paths


def test_batches_come_back_in_order_with_failures_named(sources):
    pre = Preprocess(mode="pad", size=32)
    rnd = random.Random(0)
    threads = set()

    def slow(src):  # finish out of order: later batches are often faster
        threads.add(threading.get_ident())
        time.sleep(rnd.random() * 0.02)
        return pre(src)

    batches = [sources[i : i + 3] for i in range(0, len(sources), 3)]
    got = list(decode_ahead(slow, batches, workers=3, ahead=4))
    assert len(got) == len(batches)
    for batch, done in zip(batches, got):
        expected = [pre(s) for s in batch if "missing" not in s and "corrupt" not in s]
        assert done.pixels is not None and len(done.ok) == len(expected)
        torch.testing.assert_close(done.pixels, torch.stack(expected), rtol=0, atol=0)
    errors = {batch[k]: reason for batch, done in zip(batches, got) for k, _, reason in done.errors}
    assert set(errors) == {sources[3], sources[9]}
    assert errors[sources[3]] == "file not found"
    assert "corrupt" in errors[sources[9]] or "cannot" in errors[sources[9]]
    named = [source for done in got for _, source, _ in done.errors]
    assert named == [sources[3], sources[9]]
    assert len(threads) > 1  # really decoded in parallel


def test_a_batch_of_failures_has_no_pixels(tmp_path):
    done = decode_batch(Preprocess(size=32), [str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    assert done.pixels is None and done.ok == []
    assert [k for k, _, _ in done.errors] == [0, 1]


def test_workers_are_sized_to_the_machine():
    assert decode_workers("cpu", cpu_count=64) == 1  # the model uses the cores
    assert decode_workers("cuda", cpu_count=2) == 1
    assert decode_workers("cuda:1", cpu_count=6) == 5
    assert decode_workers(torch.device("cuda", 0), cpu_count=64) == 8


def test_score_records_uses_the_pool_and_keeps_order(tiny_clip_dir, sources, tmp_path):
    from prefalign.scoring import convert_checkpoint, load_scorer

    model = convert_checkpoint("hf-clip", tiny_clip_dir, tmp_path / "hps", kind="hps")
    scorer = load_scorer(model, device="cpu", precision="fp32")
    records = [("a red circle", sources[:7]), ("a blue square", sources[7:])]
    one = scorer.score_records(records, batch_size=2, workers=1)
    many = scorer.score_records(records, batch_size=2, workers=3, prefetch=5)
    for a, b in zip(one.scores, many.scores):
        np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)
    assert [str(f) for f in many.failures] == [str(f) for f in one.failures]
    assert [(f.record, f.image) for f in many.failures] == [(0, 3), (1, 2)]
    direct = scorer.score([sources[0], sources[1]], "a red circle")
    np.testing.assert_allclose(many.scores[0][:2], direct.numpy(), rtol=1e-5)
