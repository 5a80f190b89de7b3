"""Agreement (Table 3) against a hand-computed three-participant study."""

from __future__ import annotations

import numpy as np
import pytest

from prefalign.data import Record, load_dataset, save_dataset
from prefalign.evaluate import Agreement, EvaluationError, agreement, vote_credit, votes_from_dataset

from .helpers import votes_dataset

# u3 sees pair i2 in the other order: [b2, a2] and chooses a2.
VOTES = [
    ("u1", "i1", ("a1.png", "b1.png"), 0),
    ("u1", "i2", ("a2.png", "b2.png"), 0),
    ("u1", "i3", ("a3.png", "b3.png"), 1),
    ("u2", "i1", ("a1.png", "b1.png"), 0),
    ("u2", "i2", ("a2.png", "b2.png"), 1),
    ("u2", "i3", ("a3.png", "b3.png"), None),
    ("u3", "i1", ("a1.png", "b1.png"), 1),
    ("u3", "i2", ("b2.png", "a2.png"), 1),
]


@pytest.fixture
def votes(tmp_path):
    return votes_from_dataset(load_dataset(votes_dataset(tmp_path / "votes", VOTES)))


def prefers_a(votes):
    """A scorer that always scores the 'a' image higher."""
    return [np.array([1.0 if "/a" in p else 0.0 for p in v.images]) for v in votes]


def test_scorer_and_human_agreement_match_hand_computation(votes):
    credit = vote_credit(votes, prefers_a(votes))
    np.testing.assert_array_equal(credit, [1, 1, 0, 1, 0, np.nan, 0, 1])
    r = agreement(votes, {"always-a": credit})
    per = r.scorers["always-a"].per_participant
    assert per == pytest.approx({"u1": 2 / 3, "u2": 1 / 2, "u3": 1 / 2})
    assert r.scorers["always-a"].mean == pytest.approx(5 / 9)
    assert r.scorers["always-a"].std == pytest.approx(np.std([2 / 3, 1 / 2, 1 / 2]))
    # u1 vs the others: i1 agrees with u2, not u3; i2 agrees with u3, not u2 -> 2/4.
    # u2: i1 1 of 2, i2 0 of 2 -> 1/4.  u3: i1 0 of 2, i2 1 of 2 -> 1/4.
    assert r.human.per_participant == pytest.approx({"u1": 0.5, "u2": 0.25, "u3": 0.25})
    assert r.human.mean == pytest.approx(1 / 3)
    assert (r.n_votes, r.n_ties, r.n_participants, r.n_items) == (8, 1, 3, 3)


def test_equal_scores_earn_half(votes):
    credit = vote_credit(votes, [np.array([1.0, 1.0]) for _ in votes])
    assert np.nanmean(credit) == 0.5


def test_metric_class_equals_function(votes):
    credit = vote_credit(votes, prefers_a(votes))
    metric = Agreement(["always-a"])
    metric.update(votes[5:], {"always-a": credit[5:]})
    metric.update(votes[:5], {"always-a": credit[:5]})
    assert metric.compute() == agreement(votes, {"always-a": credit})


def test_item_falls_back_to_the_unordered_image_pair(tmp_path):
    records = [
        Record("p", ["x.png", "y.png"], chosen=0, user="u1"),
        Record("p", ["y.png", "x.png"], chosen=1, user="u2"),  # the same pair shown swapped, same pick
    ]
    save_dataset(records, tmp_path / "v")
    votes = votes_from_dataset(load_dataset(tmp_path / "v"))
    assert votes[0].item == votes[1].item
    assert agreement(votes, {}).human.mean == 1.0


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (Record("p", ["a", "b", "c"], chosen=0, user="u"), "exactly 2 images"),
        (Record("p", ["a", "b"], chosen=0), "participant id"),
        (Record("p", ["a", "b"], user="u"), "needs `chosen`"),
    ],
)
def test_records_that_are_not_votes_are_named(tmp_path, record, message):
    save_dataset([record], tmp_path / "bad")
    with pytest.raises(EvaluationError, match=message):
        votes_from_dataset(load_dataset(tmp_path / "bad"))
