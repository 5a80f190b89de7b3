"""Bad input stops with a clear error before training, or is skipped, counted and summarised."""

from __future__ import annotations

import shutil

import pytest

from prefalign.data import Record, save_dataset
from prefalign.scoring import ScorerLoadError
from prefalign.testing import draw_shape
from prefalign.train import PreferenceTrainer, TrainConfigError, TrainingDataError

from .conftest import tiny_preference_config


@pytest.fixture
def make_data(tmp_path):
    """Write records whose images are ``ok*.png`` (drawn), ``corrupt.png`` or anything missing."""

    def make(records, name="data"):
        root = tmp_path / name
        (root / "img").mkdir(parents=True)
        for i, (shape, colour) in enumerate([("circle", "red"), ("square", "blue"), ("triangle", "green")]):
            draw_shape(shape, colour, size=32).save(root / "img" / f"ok{i}.png")
        good = (root / "img" / "ok0.png").read_bytes()
        (root / "img" / "corrupt.png").write_bytes(good[: len(good) // 2])  # header fine, data truncated
        (root / "img" / "garbage.png").write_bytes(b"not an image at all")
        return save_dataset(records, root)

    return make


def ok_records(n):
    return [
        Record(f"a red circle {i}", ["img/ok0.png", "img/ok1.png", "img/ok2.png"], id=f"ok{i}", chosen=0)
        for i in range(n)
    ]


def test_empty_dataset(make_data, tiny_clip32, tmp_path):
    data = make_data([])
    with pytest.raises(TrainingDataError, match="has no records"):
        PreferenceTrainer(tiny_preference_config(data, tiny_clip32, tmp_path / "out")).train()


def test_nothing_usable_names_every_reason(make_data, tiny_clip32, tmp_path):
    data = make_data(
        [
            Record("one image", ["img/ok0.png"], id="single", chosen=0),
            Record("out of range", ["img/ok0.png", "img/ok1.png"], id="range", chosen=2),
            Record("missing", ["img/ok0.png", "img/nope.png"], id="missing", chosen=0),
            Record("not an image", ["img/ok0.png", "img/garbage.png"], id="garbage", chosen=0),
        ]
    )
    with pytest.raises(TrainingDataError) as err:
        PreferenceTrainer(
            tiny_preference_config(data, tiny_clip32, tmp_path / "out", eval_fraction=0)
        ).train()
    message = str(err.value)
    for reason, rid in [
        ("fewer than two images", "single"),
        ("chosen index out of range", "range"),
        ("image file not found", "missing"),
        ("image cannot be read", "garbage"),
    ]:
        assert reason in message and rid in message
    assert not (tmp_path / "out").exists()


def test_bad_records_are_skipped_and_counted(make_data, tiny_clip32, tmp_path):
    bad = [
        Record("single", ["img/ok0.png"], id="single", chosen=0),
        Record("range", ["img/ok0.png", "img/ok1.png"], id="range", chosen=-1),
        Record("truncated", ["img/ok0.png", "img/corrupt.png"], id="truncated", chosen=0),
    ]
    data = make_data(ok_records(6) + bad)
    config = tiny_preference_config(
        data, tiny_clip32, tmp_path / "out", per_device_train_batch_size=9, max_steps=2, eval_fraction=0
    )
    result = PreferenceTrainer(config).train()
    skipped = result.skipped
    assert skipped["fewer than two images (a choice needs at least two)"] == 1
    assert skipped["chosen index out of range"] == 1
    # The truncated file passes the header check and fails when decoded: dropped from its batch, once per epoch.
    assert sum(n for reason, n in skipped.items() if reason.startswith("at load time")) == 2
    assert result.state.step == 2 and all(r["loss"] == r["loss"] for r in result.state.train_log)  # no NaN


def test_a_base_that_is_not_clip(make_data, tmp_path):
    from transformers import BertConfig

    BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(tmp_path / "bert")
    data = make_data(ok_records(4))
    with pytest.raises(ScorerLoadError, match="not a CLIP model"):
        PreferenceTrainer(tiny_preference_config(data, tmp_path / "bert", tmp_path / "out")).train()
    with pytest.raises(ScorerLoadError):
        PreferenceTrainer(tiny_preference_config(data, tmp_path / "no-such-model", tmp_path / "out")).train()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.checkpoints").exists()


def test_existing_output_and_bad_settings_fail_before_anything_loads(make_data, tiny_clip32, tmp_path):
    data = make_data(ok_records(4))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(TrainConfigError, match="already exists"):
        PreferenceTrainer(tiny_preference_config(data, tiny_clip32, tmp_path / "out")).train()
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    for bad in (
        {"per_device_train_batch_size": 0},
        {"eval_fraction": 1.5},
        {"vision_blocks": -2},
        {"data": ""},
    ):
        config = tiny_preference_config(data, tiny_clip32, tmp_path / "x")
        for name, value in bad.items():
            setattr(config, name, value)
        with pytest.raises(TrainConfigError):
            PreferenceTrainer(config)
    shutil.rmtree(tmp_path / "out")


def test_yaml_config_refuses_unknown_options(tmp_path):
    from prefalign.train import PreferenceConfig

    path = tmp_path / "recipe.yaml"
    path.write_text("data: d\noutput_dir: o\nlearning_rate: 0.001\nlearnig_rate: 0.1\n")
    with pytest.raises(TrainConfigError, match="learnig_rate"):
        PreferenceConfig.from_yaml(path)
    path.write_text(
        "data: d\noutput_dir: o\nlearning-rate: 1e-3\nmax_steps: 5\n"
    )  # YAML reads 1e-3 as a string
    config = PreferenceConfig.from_yaml(path, max_steps=7)
    assert config.learning_rate == 0.001 and config.max_steps == 7
    path.write_text("data: d\noutput_dir: o\nper_device_train_batch_size: many\n")
    with pytest.raises(TrainConfigError, match="per_device_train_batch_size must be a whole number"):
        PreferenceConfig.from_yaml(path)
