"""The scorer protocol: every scorer, the random baseline and user classes are ``ScorerLike``,
and the code that takes a scorer dispatches on it (not on attribute names)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from prefalign.adapt.rewards import as_reward_fn
from prefalign.evaluate import RandomScorer, load_eval_scorer
from prefalign.scoring import PixelScorerLike, Scorer, ScorerLike, load_scorer
from prefalign.scoring.distributed import score_records_sharded


class Brightness:
    """A user's own scorer: the mean pixel value, no encode_images, no score_pixels."""

    name = "brightness"
    kind = "custom"
    uses_text = False

    def score(self, images, prompt, *, batch_size=4):
        return torch.tensor(
            [
                float(np.asarray(Image.open(i) if isinstance(i, str) else i, dtype=np.float64).mean() / 255)
                for i in images
            ]
        )

    def score_records(self, records, *, batch_size=4, progress=None):
        from prefalign.scoring import ScoreResult

        return ScoreResult([self.score(list(imgs), p).double().numpy() for p, imgs in records])


def test_loaded_scorers_and_the_random_baseline_are_scorer_like(tiny_hps_dir):
    scorer = load_scorer(tiny_hps_dir, device="cpu")
    assert isinstance(scorer, Scorer)
    assert isinstance(scorer, ScorerLike) and isinstance(scorer, PixelScorerLike)
    random = load_eval_scorer("random:3")
    assert isinstance(random, ScorerLike) and not isinstance(random, PixelScorerLike)
    assert (random.name, random.kind, random.uses_text) == ("random:3", "random", False)
    assert isinstance(Brightness(), ScorerLike)
    assert not isinstance(lambda images, prompts: None, ScorerLike)


def test_any_scorer_like_is_a_reward_a_callable_stays_itself(images, tmp_path):
    # Before the protocol, as_reward_fn recognised scorers by `encode_images`: the random
    # baseline and this user class fell through to load_scorer(str(obj)) and failed.
    # (Files, not PIL images: the random baseline keys a PIL image by its position in the batch.)
    for i, img in enumerate(images):
        img.save(tmp_path / f"{i}.png")
    images = [str(tmp_path / f"{i}.png") for i in range(len(images))]
    prompts = ["a", "b", "a", "c", "b"]
    for scorer in (RandomScorer(7), Brightness()):
        reward = as_reward_fn(scorer)(images, prompts)
        assert reward.shape == (5,) and reward.dtype == torch.float32
        for i, (img, p) in enumerate(zip(images, prompts)):
            assert float(reward[i]) == float(scorer.score([img], p)[0])

    def fn(imgs, ps):
        return torch.zeros(len(imgs))

    assert as_reward_fn(fn) is fn


def test_sharded_scoring_takes_any_scorer_like(images):
    records = [("a", images[:2]), ("b", images[2:])]
    result = score_records_sharded(Brightness(), records, batch_size=2)
    direct = Brightness().score_records(records)
    for got, want in zip(result.scores, direct.scores):
        np.testing.assert_array_equal(got, want)
