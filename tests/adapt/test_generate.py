"""Generation into a dataset, the identifier as negative prompt, best-of-K, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.adapt.adapter import ADAPTER_INFO_FILE
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.generate import GenerationSettings, candidate_seeds, generate, read_prompts
from prefalign.data import load_dataset

FAST = GenerationSettings(steps=3)


def _pixels(ds, rec):
    return np.asarray(Image.open(ds.image_path(rec.images[0])), dtype=np.float64)


def test_one_record_per_prompt_and_seed_with_settings(tmp_path, tiny_sd):
    generate(tiny_sd, ["a red circle", "a blue square"], [0, 1], tmp_path / "gen", settings=FAST)
    ds = load_dataset(tmp_path / "gen")
    assert [(r.prompt, r.meta["seed"]) for r in ds] == [
        ("a red circle", 0),
        ("a red circle", 1),
        ("a blue square", 0),
        ("a blue square", 1),
    ]
    meta = ds[0].meta
    assert meta["model"] == str(tiny_sd) and meta["lora"] is None and meta["negative_prompt"] is None
    assert (meta["steps"], meta["guidance"], meta["scheduler"]) == (3, 7.5, "pndm")
    assert Image.open(ds.image_path(ds[0].images[0])).size == (32, 32)


def test_defaults_follow_stable_diffusion():
    settings = GenerationSettings()
    assert (settings.steps, settings.guidance, settings.scheduler) == (50, 7.5, "pndm")


def test_an_image_depends_on_its_seed_not_its_batch(tmp_path, tiny_sd):
    generate(
        tiny_sd,
        ["a red circle"],
        [0, 1],
        tmp_path / "both",
        settings=GenerationSettings(steps=3, batch_size=2),
    )
    generate(tiny_sd, ["a red circle"], [1], tmp_path / "one", settings=FAST)
    both, one = load_dataset(tmp_path / "both"), load_dataset(tmp_path / "one")
    np.testing.assert_allclose(_pixels(both, both[1]), _pixels(one, one[0]), atol=1)
    assert np.abs(_pixels(both, both[0]) - _pixels(both, both[1])).max() > 0


def test_adapter_identifier_is_the_negative_prompt(tmp_path, tiny_sd, trained_lora):
    report = generate(tiny_sd, ["a red circle"], [0], tmp_path / "neg", lora=trained_lora, settings=FAST)
    assert report.negative_prompt == "Weird image."
    ds = load_dataset(tmp_path / "neg")
    assert ds[0].meta["negative_prompt"] == "Weird image." and ds[0].meta["lora"] == str(trained_lora)
    # "" turns it off, and the image differs: the negative prompt really reached the sampler
    generate(
        tiny_sd,
        ["a red circle"],
        [0],
        tmp_path / "none",
        lora=trained_lora,
        settings=GenerationSettings(steps=3, negative_prompt=""),
    )
    none = load_dataset(tmp_path / "none")
    assert none[0].meta["negative_prompt"] is None
    assert np.abs(_pixels(ds, ds[0]) - _pixels(none, none[0])).max() > 0


def test_best_of_keeps_the_top_m(tmp_path, tiny_sd):
    def brightness(images, prompts):
        return torch.tensor([float(np.asarray(im, dtype=np.float64).mean()) for im in images])

    # every candidate of group seed 0 with K = 4 (seeds 0..3), scored by hand
    assert candidate_seeds(0, 4) == [0, 1, 2, 3] and candidate_seeds(2, 4) == [8, 9, 10, 11]
    generate(tiny_sd, ["a red circle"], [0, 1, 2, 3], tmp_path / "all", settings=FAST)
    everything = load_dataset(tmp_path / "all")
    by_seed = {r.meta["seed"]: _pixels(everything, r).mean() for r in everything}
    top2 = sorted(by_seed, key=lambda s: -by_seed[s])[:2]

    report = generate(
        tiny_sd, ["a red circle"], [0], tmp_path / "best", settings=FAST, best_of=4, keep=2, reward=brightness
    )
    best = load_dataset(tmp_path / "best")
    assert report.candidates == 4 and report.images == 2
    assert [r.meta["seed"] for r in best] == top2
    assert [r.meta["rank"] for r in best] == [0, 1]
    assert best[0].meta["score"] >= best[1].meta["score"]
    assert {r.meta["best_of"] for r in best} == {4}


def test_best_of_with_a_tiny_hps_scorer(tmp_path, tiny_sd, tiny_hps):
    from prefalign.adapt.rewards import as_reward_fn

    report = generate(
        tiny_sd,
        ["a red circle"],
        [0],
        tmp_path / "b",
        settings=FAST,
        best_of=3,
        keep=1,
        reward=as_reward_fn(str(tiny_hps)),
    )
    assert report.images == 1 and len(report.scores) == 1


def test_best_of_settings_are_checked(tmp_path, tiny_sd):
    with pytest.raises(AdaptError, match="scorer"):
        generate(tiny_sd, ["a"], [0], tmp_path / "x", settings=FAST, best_of=4)
    with pytest.raises(AdaptError, match="--keep"):
        generate(
            tiny_sd, ["a"], [0], tmp_path / "x", settings=FAST, best_of=2, keep=3, reward=lambda i, p: None
        )


def test_adapter_for_another_architecture_is_refused(tmp_path, tiny_sd, other_sd, shapes_data):
    from prefalign.adapt.lora import train_lora

    from .conftest import lora_config

    foreign = train_lora(lora_config(shapes_data, other_sd, tmp_path / "foreign", max_steps=1))
    with pytest.raises(AdaptError, match="another UNet architecture"):
        generate(tiny_sd, ["a red circle"], [0], tmp_path / "x", lora=foreign, settings=FAST)
    # without our metadata, diffusers' own shape check is reported as one clear line
    (foreign / ADAPTER_INFO_FILE).unlink()
    with pytest.raises(AdaptError, match="do not fit this base"):
        generate(tiny_sd, ["a red circle"], [0], tmp_path / "y", lora=foreign, settings=FAST)


def test_lora_as_a_file_or_a_directory_with_a_weight_name(tmp_path, tiny_sd, trained_lora):
    """diffusers' load_lora_weights takes a file path; `--lora FILE.safetensors` was refused."""
    import shutil

    from prefalign.adapt.adapter import LORA_WEIGHTS_FILE

    generate(tiny_sd, ["a red circle"], [0], tmp_path / "dir", lora=trained_lora, settings=FAST)
    file = trained_lora / LORA_WEIGHTS_FILE
    report = generate(tiny_sd, ["a red circle"], [0], tmp_path / "file", lora=file, settings=FAST)
    assert report.negative_prompt == "Weird image."  # the info beside the file still applies
    by_dir, by_file = load_dataset(tmp_path / "dir"), load_dataset(tmp_path / "file")
    np.testing.assert_array_equal(_pixels(by_dir, by_dir[0]), _pixels(by_file, by_file[0]))
    # a directory with several weight files: an error naming them, or --lora-weight-name
    several = shutil.copytree(trained_lora, tmp_path / "several")
    shutil.copy(file, several / "other.safetensors")
    with pytest.raises(
        AdaptError, match=r"2 weight files \(other.safetensors, pytorch_lora_weights.safetensors\)"
    ):
        generate(tiny_sd, ["a"], [0], tmp_path / "x", lora=several, settings=FAST)
    generate(
        tiny_sd, ["a red circle"], [0], tmp_path / "named", lora=several, lora_weight_name="other.safetensors",
        settings=GenerationSettings(steps=3, negative_prompt="Weird image."),
    )  # fmt: skip
    named = load_dataset(tmp_path / "named")
    np.testing.assert_array_equal(_pixels(by_dir, by_dir[0]), _pixels(named, named[0]))


def test_missing_adapter_and_missing_base_components(tmp_path, tiny_sd):
    from .conftest import copy_without

    with pytest.raises(AdaptError, match="no such adapter"):
        generate(tiny_sd, ["a"], [0], tmp_path / "x", lora=tmp_path / "nope", settings=FAST)
    broken = copy_without(tiny_sd, tmp_path / "broken", "text_encoder")
    with pytest.raises(AdaptError, match="missing text_encoder/"):
        generate(broken, ["a"], [0], tmp_path / "x", settings=FAST)


def test_prompt_files(tmp_path, shapes_data):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n# only a comment\n")
    with pytest.raises(AdaptError, match="no prompts"):
        read_prompts(empty)
    with pytest.raises(AdaptError, match="no such prompt file"):
        read_prompts(tmp_path / "missing.txt")
    good = tmp_path / "p.txt"
    good.write_text("a red circle\n\n a blue square \n")
    assert read_prompts(good) == ["a red circle", "a blue square"]
    assert len(read_prompts(shapes_data)) == len({r.prompt for r in load_dataset(shapes_data)})


def test_adapter_info_is_json(trained_lora):
    info = json.loads((trained_lora / ADAPTER_INFO_FILE).read_text())
    assert info["architecture"]["cross_attention_dim"] == 32
    assert info["target_modules"] == ["to_k", "to_out.0", "to_q", "to_v"]
