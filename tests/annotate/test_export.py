"""Export: one record per vote, in the dataset format, loadable as it stands."""

from __future__ import annotations

import pytest

from prefalign.annotate import export_study
from prefalign.annotate.errors import StudyError
from prefalign.data.dataset import load_dataset


def vote_all(s, token, answers):
    """Answer every task ``token`` gets with ``answers(task)``; returns {task key: answer}."""
    given = {}
    while (task := s.next_task(token)["task"]) is not None:
        answer = answers(task)
        assert s.vote(token, task["id"], answer).status_code == 200
        given[task["id"]] = answer
    return given


def test_pair_votes_export_as_one_choice_record_per_annotator(served, tmp_path):
    s = served(kind="pair", n_records=6, per_task=2)
    for name in ("alice", "bob"):
        vote_all(s, s.token(name), lambda task: "0")  # always the image shown on the left
    out, n = export_study(s.store, s.study, s.study_dir, tmp_path / "votes")
    dataset = load_dataset(out)
    assert n == len(dataset) == 12
    assert {r.user for r in dataset} == {"alice", "bob"}
    for record in dataset:
        assert record.images == [
            f"images/{record.meta['record']}_0.png",
            f"images/{record.meta['record']}_1.png",
        ]
        # chosen indexes the dataset's order: the image that was on the left
        assert record.chosen == record.meta["shown_order"][0]
        assert record.meta["shown_position"] == 0
        assert record.meta["item"] == record.meta["record"]
        assert record.source == "annotate:study-pair" and record.split == "test"
        assert record.ratings is None and record.ranks is None
        assert (out / record.images[record.chosen]).read_bytes() == (
            s.study_dir / record.images[record.chosen]
        ).read_bytes()
    # Every item has both annotators' votes, so agreement can pair them up by meta["item"].
    by_item = {}
    for record in dataset:
        by_item.setdefault(record.meta["item"], set()).add(record.user)
    assert set(map(frozenset, by_item.values())) == {frozenset({"alice", "bob"})}


def test_rating_votes_export_as_ratings_and_skips_are_left_out(served, tmp_path):
    s = served(kind="rating", n_records=2, n_images=2, per_task=1)
    answers = iter(["good", "bad", "skip", "good"])
    given = vote_all(s, s.token("alice"), lambda task: next(answers))
    vote_all(s, s.token("bob"), lambda task: "bad")  # the skipped image goes to bob
    dataset = load_dataset(export_study(s.store, s.study, s.study_dir, tmp_path / "out")[0])
    assert len(given) == 4 and len(dataset) == 4
    alice = sorted((r.meta["item"], r.ratings) for r in dataset if r.user == "alice")
    assert [ratings for _, ratings in alice].count([1.0]) == 2
    assert [ratings for _, ratings in alice].count([0.0]) == 1
    assert all(len(r.images) == 1 and r.chosen is None for r in dataset)
    assert [r.ratings for r in dataset if r.user == "bob"] == [[0.0]]


def test_choice_export_and_no_overwrite_of_the_study(served, tmp_path):
    s = served(kind="choice", n_records=2, n_images=3)
    vote_all(s, s.token("alice"), lambda task: "2")
    dataset = load_dataset(export_study(s.store, s.study, s.study_dir, tmp_path / "o")[0])
    assert [len(r.images) for r in dataset] == [3, 3]
    assert all(r.chosen == r.meta["shown_order"][2] for r in dataset)
    with pytest.raises(StudyError, match="is the study directory"):
        export_study(s.store, s.study, s.study_dir, s.study_dir)
    assert len(load_dataset(s.study_dir)) == 2  # the study's records are untouched


def test_export_of_a_study_without_votes_is_an_empty_dataset(served, tmp_path):
    s = served(kind="pair")
    out, n = export_study(s.store, s.study, s.study_dir, tmp_path / "empty")
    assert n == 0 and len(load_dataset(out)) == 0
