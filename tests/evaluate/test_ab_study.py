"""The statistics of an A/B study: Wilson interval, sign test, Fleiss' kappa, ties, position bias."""

from __future__ import annotations

import math

import pytest

from prefalign.data.dataset import Record
from prefalign.evaluate.ab_study import ab_study_result, fleiss_kappa, wilson_interval
from prefalign.evaluate.errors import EvaluationError


def vote(user: str, item: str, chosen: int | None, prompt: str = "p", shown=(0, 1), ranks=None) -> Record:
    meta = {"item": item, "shown_order": list(shown)}
    return Record(
        id=f"{item}/{user}",
        prompt=prompt,
        images=[f"{item}-a.png", f"{item}-b.png"],
        chosen=chosen,
        ranks=ranks,
        user=user,
        meta=meta,
    )


def test_wilson_interval_matches_the_closed_form_values():
    # Wilson (1927); the same values as statsmodels' proportion_confint(method="wilson").
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_fleiss_kappa_by_hand_and_its_edges():
    # P_i = 1, 1, 1/3 -> P = 7/9; p_A = 5/9 -> P_e = 41/81; kappa = (7/9 - 41/81) / (40/81) = 0.55
    assert fleiss_kappa([(3, 0), (0, 3), (2, 1)]) == pytest.approx(0.55)
    assert fleiss_kappa([(3, 0), (0, 3)]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([(1, 0), (0, 1)]))  # no item with two votes
    assert math.isnan(fleiss_kappa([(2, 0), (3, 0)]))  # every vote for A: chance agreement 1


def test_result_counts_votes_per_prompt_skips_ties_and_measures_the_left_side():
    votes = [
        vote("u1", "x", 1, "cat", shown=(1, 0)),  # B shown left, chosen: a left vote
        vote("u2", "x", 1, "cat"),
        vote("u3", "x", 0, "cat"),
        vote("u1", "y", 1, "dog"),
        vote("u2", "y", None, "dog", ranks=[0, 0]),  # a tie: counted, not in the share
    ]
    result = ab_study_result(votes)
    assert (result.overall.votes_a, result.overall.votes_b, result.ties) == (1, 3, 1)
    assert result.overall.share_b == pytest.approx(0.75)
    assert result.overall.sign_test_p == pytest.approx(0.625)  # binomtest(3, 4)
    assert (result.per_prompt["cat"].votes_b, result.per_prompt["dog"].votes_b) == (2, 1)
    assert result.shares_per_item == pytest.approx({"x": 2 / 3, "y": 1.0})
    assert result.agreement.items == 1 and result.agreement.pairwise == pytest.approx(1 / 3)
    assert result.left_share == pytest.approx(2 / 4)  # u1 on x (B left) and u3 on x (A left)


def test_a_record_that_is_not_a_pair_vote_is_named():
    bad = Record(id="r7", prompt="p", images=["a.png", "b.png", "c.png"], chosen=0, user="u")
    with pytest.raises(EvaluationError, match="vote r7: an A/B vote needs exactly 2 images"):
        ab_study_result([bad])
