"""The Lee et al. reward model learns from binary labels on frozen CLIP embeddings."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from prefalign.data import load_dataset

from .conftest import tiny_reward_config


@pytest.fixture(scope="module")
def trained_reward(trained_preference, rating_data, shape_family, tmp_path_factory):
    """300 steps on the preference model trained above, used as the frozen base.

    A random tiny CLIP's embeddings barely tell colours and shapes apart, so, as the paper
    starts from a pretrained CLIP, the base is a CLIP that has learnt the synthetic world.
    """
    from prefalign.train import RewardTrainer

    _, preference = trained_preference
    out = tmp_path_factory.mktemp("reward") / "reward"
    config = tiny_reward_config(rating_data, preference.model_dir, out, max_steps=300, eval_steps=100)
    trainer = RewardTrainer(config, family=shape_family)
    return trainer, trainer.train()


def test_pairwise_accuracy_rises_from_chance(trained_reward):
    trainer, result = trained_reward
    before, after = result.eval_before, result.eval_after
    assert before["eval_pairs"] == after["eval_pairs"] > 100
    assert before["eval_pairwise_accuracy"] < 0.65
    assert after["eval_pairwise_accuracy"] >= 0.9
    assert after["eval_mse"] < before["eval_mse"]
    # The auxiliary loss ran: every synthetic prompt belongs to the family.
    assert trainer.prompts_outside_family == 0
    assert all(r["aux"] > 0 for r in result.state.train_log[:5])


def test_clip_stays_frozen_and_the_model_loads_as_a_reward_scorer(
    trained_reward, trained_preference, rating_data
):
    from prefalign.scoring import load_scorer

    _, result = trained_reward
    _, preference = trained_preference
    base = load_file(preference.model_dir / "model.safetensors")
    saved = load_file(result.model_dir / "model.safetensors")
    assert base.keys() == saved.keys() and all(torch.equal(base[k], saved[k]) for k in base)

    scorer = load_scorer(result.model_dir, device="cpu")
    assert scorer.kind == "reward" and scorer.head.dims == [64, 256, 1]
    dataset = load_dataset(rating_data)
    hits = total = 0
    for record in dataset.records[:20]:
        scores = scorer.score([dataset.image_path(i) for i in record.images], record.prompt)
        assert ((scores > 0) & (scores < 1)).all()
        good = [s for s, y in zip(scores.tolist(), record.ratings) if y == 1.0]
        bad = [s for s, y in zip(scores.tolist(), record.ratings) if y == 0.0]
        hits += sum(g > b for g in good for b in bad)
        total += len(good) * len(bad)
    assert hits / total >= 0.85  # the scorer path agrees with the trainer's own evaluation


def test_reward_records_without_usable_labels_are_skipped(tmp_path, tiny_clip32):
    from prefalign.data import Record, save_dataset
    from prefalign.testing import draw_shape
    from prefalign.train import RewardTrainer, TrainingDataError

    draw_shape("circle", "red", size=32).save(tmp_path / "a.png")
    records = [
        Record("a red circle", ["a.png"], id="no-ratings", chosen=0),
        Record("a red circle", ["a.png"], id="graded", ratings=[4.0]),
        Record("a red circle", ["a.png", "a.png"], id="short", ratings=[1.0]),
    ]
    data = save_dataset(records, tmp_path / "data")
    (data / "a.png").write_bytes((tmp_path / "a.png").read_bytes())
    with pytest.raises(TrainingDataError) as err:
        RewardTrainer(tiny_reward_config(data, tiny_clip32, tmp_path / "out")).train()
    message = str(err.value)
    assert "no usable training labelled images" in message
    assert "no ratings" in message and "label outside [0, 1]" in message and "differ in length" in message
