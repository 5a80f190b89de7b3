"""HPS-guided selection: the α test on hand-computed groups, the degenerate filter, the output set."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from prefalign.adapt.errors import AdaptError
from prefalign.adapt.identifier import DEFAULT_IDENTIFIER
from prefalign.adapt.selection import (
    NON_PREFERRED,
    PREFERRED,
    REGULARIZATION,
    is_blurry,
    is_degenerate,
    scorer_score_fn,
    select_from_group,
    select_training_set,
    softmax,
)
from prefalign.data import Record, load_dataset, save_dataset


def test_softmax_is_in_hps_units():
    # A 1-point HPS gap is a factor e in p: p = e / (1 + e) for the better of two images.
    assert softmax([20.0, 21.0])[1] == pytest.approx(math.e / (1 + math.e))


def test_clear_winner_is_preferred_and_loser_is_not_non_preferred():
    # p(best) = 8 / (1 + 1 + 8) = 0.8 > 2/3; p(worst of -s) = 1 / (1 + 1 + 1/8) = 0.47 < 2/3.
    choice = select_from_group([10.0, 10.0, 10.0 + math.log(8)], alpha=2.0)
    assert choice.preferred == 2 and choice.p_preferred == pytest.approx(0.8)
    assert choice.non_preferred is None and choice.p_non_preferred == pytest.approx(1 / 2.125)


def test_clear_loser_is_non_preferred():
    choice = select_from_group([30.0, 30.0, 30.0 - math.log(8)], alpha=2.0)
    assert choice.non_preferred == 2 and choice.preferred is None


def test_alpha_boundary_is_strict():
    # n = 3, α = 2: the threshold is 2/3, reached exactly when the best is 4x each other image.
    just_above = select_from_group([0.0, 0.0, math.log(4) + 1e-6], alpha=2.0)
    just_below = select_from_group([0.0, 0.0, math.log(4) - 1e-6], alpha=2.0)
    assert just_above.preferred == 2
    assert just_below.preferred is None
    # n = 2, α = 1: p = 0.5 for a tie is exactly α/n and does not qualify.
    assert select_from_group([5.0, 5.0], alpha=1.0).preferred is None


def test_two_images_never_qualify_at_alpha_two():
    # α/n = 1 and p < 1, whatever the gap: both directions stay empty.
    choice = select_from_group([0.0, 50.0], alpha=2.0)
    assert choice.preferred is None and choice.non_preferred is None
    # With a lower α the same pair selects both images.
    choice = select_from_group([0.0, 50.0], alpha=1.5)
    assert (choice.preferred, choice.non_preferred) == (1, 0)


def _flat(value=128, size=16):
    return Image.new("RGB", (size, size), (value, value, value))


def test_degenerate_filter_checks_both_directions():
    assert is_degenerate(_flat())
    ramp = np.tile(np.arange(0, 16 * 9, 9, dtype=np.uint8), (16, 1))  # steps of 9 horizontally
    assert is_degenerate(Image.fromarray(np.stack([ramp] * 3, -1)))
    stripes = np.zeros((16, 16, 3), np.uint8)
    stripes[:, 8:] = 10  # one jump of 10 horizontally, flat vertically: kept
    assert not is_degenerate(Image.fromarray(stripes))
    assert not is_degenerate(Image.fromarray(stripes.transpose(1, 0, 2).copy()))


def _group_dataset(tmp_path):
    """Three groups whose images' brightness the fake scorer reads as HPS."""
    images = tmp_path / "src"
    images.mkdir(parents=True)

    def img(name, value, flat=False):
        arr = np.full((16, 16, 3), value, np.uint8)
        if not flat:
            arr[:, ::2] = (value + 40) % 256  # vertical stripes, bright then dark: kept by both filters
        Image.fromarray(arr).save(images / name)
        return f"src/{name}"

    records = [
        # HPS 10, 10, 10+ln 8 -> preferred c; and 30, 30, 30-ln 8 below
        Record(id="g1", prompt="a red circle", images=[img("a.png", 10), img("b.png", 11), img("c.png", 12)]),
        # one flat image dropped -> 1 usable image < min group size 2 (these tests use 2)
        Record(id="g2", prompt="a blue square", images=[img("d.png", 50, flat=True), img("e.png", 60)]),
        # n = 2 at α = 2: nothing
        Record(id="g3", prompt="a green triangle", images=[img("f.png", 70), img("g.png", 90)]),
        # clear loser -> non-preferred
        Record(
            id="g4", prompt="a white cat", images=[img("h.png", 100), img("i.png", 101), img("j.png", 102)]
        ),
    ]
    save_dataset(records, tmp_path)
    hps = {
        "a.png": 10.0,
        "b.png": 10.0,
        "c.png": 10.0 + math.log(8),
        "e.png": 1.0,
        "f.png": 0.0,
        "g.png": 40.0,
        "h.png": 30.0,
        "i.png": 30.0,
        "j.png": 30.0 - math.log(8),
    }
    calls = []

    def score_fn(recs):
        calls.append(recs)
        return [np.array([hps[p.rsplit("/", 1)[-1]] for p in paths]) for _, paths in recs]

    return load_dataset(tmp_path), score_fn, calls


def test_select_training_set_writes_captions_and_counts(tmp_path):
    data, score_fn, calls = _group_dataset(tmp_path / "in")
    report = select_training_set(data, score_fn, tmp_path / "out", alpha=2.0, min_group_size=2)
    assert (report.groups, report.groups_too_small, report.degenerate) == (4, 1, 1)
    assert (report.preferred, report.non_preferred) == (1, 1)
    assert len(calls) == 1 and [p for p, _ in calls[0]] == ["a red circle", "a green triangle", "a white cat"]

    out = load_dataset(tmp_path / "out")
    by_kind = {r.meta["kind"]: r for r in out}
    assert by_kind[PREFERRED].prompt == "a red circle"
    assert by_kind[PREFERRED].meta["source_index"] == 2
    assert by_kind[PREFERRED].meta["p"] == pytest.approx(0.8)
    assert by_kind[NON_PREFERRED].prompt == DEFAULT_IDENTIFIER + "a white cat"
    assert by_kind[NON_PREFERRED].meta["identifier"] == DEFAULT_IDENTIFIER
    # images are copied into the output set and are the selected files
    copied = np.asarray(Image.open(out.image_path(by_kind[NON_PREFERRED].images[0])))
    assert copied[0, 1, 0] == 102


def test_identifier_is_configurable_and_alpha_changes_the_result(tmp_path):
    data, score_fn, _ = _group_dataset(tmp_path / "in")
    report = select_training_set(
        data, score_fn, tmp_path / "out", alpha=1.5, identifier="Ugly. ", min_group_size=2
    )
    # α = 1.5 lets the n = 2 group (gap 40) through in both directions
    assert (report.preferred, report.non_preferred) == (2, 2)
    prompts = sorted(r.prompt for r in load_dataset(tmp_path / "out"))
    assert "Ugly. a green triangle" in prompts and "Ugly. a white cat" in prompts


def test_keeping_degenerate_images_changes_group_sizes(tmp_path):
    data, score_fn, _ = _group_dataset(tmp_path / "in")
    with pytest.raises(KeyError):  # the flat image is now scored (the fake scorer has no value for it)
        select_training_set(data, score_fn, tmp_path / "out", image_filter="none", min_group_size=2)
    with pytest.raises(KeyError):  # the former switch still means the same
        select_training_set(data, score_fn, tmp_path / "out2", drop_degenerate=False, min_group_size=2)


def test_regularization_pairs_filtered_by_aesthetic_threshold(tmp_path):
    data, score_fn, _ = _group_dataset(tmp_path / "in")
    reg_dir = tmp_path / "reg"
    (reg_dir / "img").mkdir(parents=True)
    for i in range(3):
        _flat(60 * i).save(reg_dir / "img" / f"{i}.png")
    save_dataset([Record(prompt=f"photo {i}", images=[f"img/{i}.png"]) for i in range(3)], reg_dir)
    aesthetic = {"0.png": 4.0, "1.png": 6.0, "2.png": 7.5}

    def aesthetic_fn(recs):
        return [np.array([aesthetic[p.rsplit("/", 1)[-1]]]) for _, p in ((r[0], r[1][0]) for r in recs)]

    report = select_training_set(
        data,
        score_fn,
        tmp_path / "out",
        regularization=load_dataset(reg_dir),
        aesthetic_fn=aesthetic_fn,
        aesthetic_threshold=6.0,
        min_group_size=2,
    )
    assert (report.regularization, report.regularization_below_threshold) == (2, 1)
    reg = [r for r in load_dataset(tmp_path / "out") if r.meta["kind"] == REGULARIZATION]
    assert sorted(r.prompt for r in reg) == ["photo 1", "photo 2"]


def test_bad_settings(tmp_path):
    data, score_fn, _ = _group_dataset(tmp_path / "in")
    with pytest.raises(AdaptError, match="alpha"):
        select_training_set(data, score_fn, tmp_path / "out", alpha=0)


def test_selection_with_a_real_tiny_hps_scorer(tmp_path, shapes_data, tiny_hps):
    from prefalign.scoring import load_scorer

    scorer = load_scorer(tiny_hps, device="cpu")
    data = load_dataset(shapes_data)
    report = select_training_set(
        data,
        scorer_score_fn(scorer, progress=False),
        tmp_path / "out",
        alpha=1.0,
        min_group_size=2,
        image_filter="symmetric",
    )
    prompts = {r.prompt for r in data}
    # α = 1: every group with a unique maximum has p(best) > 1/n, so every prompt selects one
    assert report.groups == len(prompts) and report.preferred == len(prompts)
    for rec in load_dataset(tmp_path / "out"):
        if rec.meta["kind"] == PREFERRED:
            group = [
                (r.id, i, data.image_path(img))
                for r in data
                if r.prompt == rec.prompt
                for i, img in enumerate(r.images)
            ]
            scores = scorer.score([path for _, _, path in group], rec.prompt)
            assert group[int(scores.argmax())][:2] == (rec.meta["source_id"], rec.meta["source_index"])


def test_records_with_the_same_prompt_form_one_group(tmp_path):
    """``prefalign generate`` writes one record per image; selection groups them by prompt."""
    (tmp_path / "in").mkdir()
    records = []
    for i, value in enumerate((10, 11, 12)):
        arr = np.full((8, 8, 3), value, np.uint8)
        arr[:, ::2] = 200
        Image.fromarray(arr).save(tmp_path / "in" / f"{i}.png")
        records.append(Record(id=f"r{i}", prompt="a red circle", images=[f"{i}.png"]))
    save_dataset(records, tmp_path / "in")
    hps = [10.0, 10.0, 10.0 + math.log(8)]

    def score_fn(recs):
        assert [len(paths) for _, paths in recs] == [3]
        return [np.array(hps)]

    report = select_training_set(load_dataset(tmp_path / "in"), score_fn, tmp_path / "out", min_group_size=3)
    assert report.groups == 1 and report.preferred == 1
    assert load_dataset(tmp_path / "out")[0].meta["source_id"] == "r2"


# ---------------------------------------------------------------------- the authors' rules
def _authors_is_blurry(image: Image.Image) -> bool:
    """align_sd's process_diffusion_db.is_blurry, transcribed: the horizontal signed difference,
    computed twice (the authors' expression), below 10."""
    a = np.array(image).astype(float)
    return max((a[:, :-1] - a[:, 1:]).max(), (a[:, :-1] - a[:, 1:]).max()) < 10.0


def _crafted_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    step = np.zeros((16, 16, 3), np.uint8)
    step[:, 8:] = 200  # dark left half, bright right half
    stripes = np.zeros((16, 16, 3), np.uint8)
    stripes[::2] = 200  # horizontal stripes: rows differ, columns do not
    ramp = np.tile(np.arange(0, 16 * 12, 12, dtype=np.uint8), (16, 1))  # brighter to the right
    return {
        "dark-to-bright step": Image.fromarray(step),
        "bright-to-dark step": Image.fromarray(step[:, ::-1].copy()),
        "horizontal stripes": Image.fromarray(stripes),
        "vertical stripes": Image.fromarray(stripes.transpose(1, 0, 2).copy()),
        "flat": _flat(),
        "rising ramp": Image.fromarray(np.stack([ramp] * 3, -1)),
        "noise": Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)),
        "faint noise": Image.fromarray(rng.integers(100, 105, (16, 16, 3), dtype=np.uint8)),
    }


def test_default_filter_is_the_authors_is_blurry_exactly():
    images = _crafted_images()
    for name, image in images.items():
        assert is_blurry(image) == _authors_is_blurry(image), name
    # What the signed, horizontal-only rule drops that the symmetric one keeps.
    dropped = {name for name, image in images.items() if is_blurry(image)}
    assert dropped == {"dark-to-bright step", "horizontal stripes", "flat", "rising ramp", "faint noise"}
    kept_by_symmetric = {name for name, image in images.items() if not is_degenerate(image)}
    assert {"dark-to-bright step", "horizontal stripes", "rising ramp"} <= kept_by_symmetric


def test_filter_and_group_size_defaults_match_the_authors_script(tmp_path):
    """select_training_set with its defaults picks what a transcription of the authors' scripts
    (is_blurry, prompts with >= 4 kept images, mean-subtracted softmax, p > 2/n) picks."""
    rng = np.random.default_rng(1)
    images = list(_crafted_images().values())
    (tmp_path / "in").mkdir()
    records, meta = [], []
    for g in range(12):
        paths = []
        for i in range(int(rng.integers(3, 7))):
            image = images[int(rng.integers(len(images)))]
            name = f"{g}-{i}.png"
            image.save(tmp_path / "in" / name)
            paths.append(name)
            meta.append({"prompt": f"prompt {g}", "file": name, "score": float(rng.normal(25, 1.5))})
        records.append(Record(id=f"g{g}", prompt=f"prompt {g}", images=paths))
    save_dataset(records, tmp_path / "in")
    score_of = {m["file"]: m["score"] for m in meta}

    # The authors' selection, transcribed from select_training_images.py.
    groups: dict[str, list[dict]] = {}
    for m in meta:
        if not _authors_is_blurry(Image.open(tmp_path / "in" / m["file"])):
            groups.setdefault(m["prompt"], []).append(m)
    groups = {k: v for k, v in groups.items() if len(v) >= 4}

    def authors_softmax(scores):
        mean = sum(scores) / len(scores)
        exp = [np.exp(s - mean) for s in scores]
        return [e / sum(exp) for e in exp]

    expected = set()
    for members in groups.values():
        scores = [m["score"] for m in members]
        probs, neg = authors_softmax(scores), authors_softmax([-s for s in scores])
        if max(probs) > 2 / len(probs):
            expected.add((PREFERRED, members[probs.index(max(probs))]["file"]))
        if max(neg) > 2 / len(probs):
            expected.add((NON_PREFERRED, members[neg.index(max(neg))]["file"]))
    assert expected, "the crafted groups should select something"

    def score_fn(recs):
        return [np.array([score_of[p.rsplit("/", 1)[-1]] for p in paths]) for _, paths in recs]

    data = load_dataset(tmp_path / "in")
    select_training_set(data, score_fn, tmp_path / "out")
    got = set()
    for rec in load_dataset(tmp_path / "out"):
        source = next(r for r in data if r.id == rec.meta["source_id"]).images[rec.meta["source_index"]]
        got.add((rec.meta["kind"], source))
    assert got == expected


def test_select_cli_defaults_are_the_authors(monkeypatch):
    import argparse

    from prefalign.cli import adapt as cli_adapt

    parser = argparse.ArgumentParser()
    cli_adapt.register(parser.add_subparsers())
    args = parser.parse_args(["adapt", "select", "--data", "d", "--model", "m", "--out", "o"])
    assert (args.alpha, args.min_group_size, args.image_filter) == (2.0, 4, "authors")
    assert args.aesthetic_threshold is None  # 6.5 applies when --aesthetic-model is given
    assert parser.parse_args(["adapt", "select", "--data", "d", "--model", "m", "--out", "o",
                              "--keep-degenerate"]).image_filter == "none"  # fmt: skip
    with pytest.raises(AdaptError, match="image filter"):
        select_training_set(None, None, "o", image_filter="sideways")  # type: ignore[arg-type]
