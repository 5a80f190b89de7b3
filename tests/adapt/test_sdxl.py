"""Stable Diffusion XL: family detection, the conditioning (both encoders, pooled embeddings, time
ids) against diffusers' own pipeline, generation and best-of, and the three trainers, whose LoRA
loads in a plain diffusers SDXL pipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.adapt.adapter import ADAPTER_INFO_FILE, LORA_WEIGHTS_FILE
from prefalign.adapt.base_model import (
    ImageGeometry,
    detect_family,
    encode_prompts,
    load_components,
    predict_noise,
    sdxl_time_ids,
)
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.generate import GenerationSettings, generate
from prefalign.data import load_dataset

from .conftest import copy_without, lora_config

FAST = GenerationSettings(steps=3, scheduler="euler")


def _plain_pipe(base):
    """diffusers' own SDXL pipeline, nothing of ours."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(base, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _plain_image(pipe, seed=0, prompt="a red circle") -> np.ndarray:
    """What ``generate`` draws for (prompt, seed) with FAST settings, as uint8 HWC."""
    image = pipe(
        [prompt],
        num_inference_steps=FAST.steps,
        guidance_scale=FAST.guidance,
        height=32,
        width=32,
        generator=[torch.Generator().manual_seed(seed)],
    ).images[0]
    return np.asarray(image, dtype=np.int16)


def _pixels(ds, rec) -> np.ndarray:
    return np.asarray(Image.open(ds.image_path(rec.images[0])), dtype=np.int16)


# ---------------------------------------------------------------------- families
def test_family_is_read_from_the_pipeline(tmp_path, tiny_sd, tiny_sdxl):
    assert detect_family(tiny_sd) == "sd1" and detect_family(tiny_sdxl) == "sdxl"
    sd2 = tmp_path / "sd2"
    (sd2 / "unet").mkdir(parents=True)
    shutil.copy(tiny_sd / "model_index.json", sd2)
    unet = json.loads((tiny_sd / "unet" / "config.json").read_text())
    (sd2 / "unet" / "config.json").write_text(json.dumps({**unet, "cross_attention_dim": 1024}))
    assert detect_family(sd2) == "sd2"


@pytest.mark.parametrize(
    ("class_name", "named"),
    [("StableDiffusion3Pipeline", "Stable Diffusion 3"), ("FluxPipeline", "Flux"), ("MyOwnPipeline", None)],
)
def test_unsupported_family_is_one_clear_error(tmp_path, tiny_sdxl, class_name, named):
    base = tmp_path / "other"
    shutil.copytree(tiny_sdxl, base)
    index = json.loads((base / "model_index.json").read_text())
    (base / "model_index.json").write_text(json.dumps({**index, "_class_name": class_name}))
    for call in (lambda: load_components(base), lambda: generate(base, ["a cat"], [0], tmp_path / "g")):
        with pytest.raises(AdaptError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and str(base) in message and class_name in message
        assert "sd1 and sd2 (StableDiffusionPipeline), sdxl (StableDiffusionXLPipeline)" in message
        assert named is None or named in message


def test_sdxl_base_without_its_second_encoder_is_a_clear_error(tmp_path, tiny_sdxl):
    base = copy_without(tiny_sdxl, tmp_path / "broken", "text_encoder_2")
    with pytest.raises(AdaptError, match="missing text_encoder_2/"):
        load_components(base)


# ---------------------------------------------------------------------- conditioning
@pytest.mark.parametrize(
    ("original", "crop", "target"),
    [
        ((1024, 1024), (0, 0), (1024, 1024)),
        ((768, 1360), (0, 168), (1024, 1024)),
        ((40, 48), (0, 3), (32, 32)),
    ],
)
def test_time_ids_equal_diffusers_get_add_time_ids(tiny_sdxl, original, crop, target):
    pipe = _plain_pipe(tiny_sdxl)
    want = pipe._get_add_time_ids(
        original,
        crop,
        target,
        dtype=torch.float32,
        text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim,
    )
    got = sdxl_time_ids([ImageGeometry(original, crop)], target)
    assert got.shape == (1, 6) and torch.equal(got, want)


def test_training_images_record_their_size_and_crop(tmp_path):
    from prefalign.adapt.trainer import load_pixels_and_geometry

    path = tmp_path / "wide.png"
    Image.new("RGB", (48, 40), "red").save(path)  # width 48, height 40
    # shorter side 40 -> 32: 38 x 32; the centre crop starts at left round(6 / 2) = 3, top 0
    pixels, geometry = load_pixels_and_geometry([str(path)], 32)
    assert pixels.shape == (1, 3, 32, 32)
    assert geometry == [ImageGeometry(original_size=(40, 48), crop_top_left=(0, 3))]
    _, drawn = load_pixels_and_geometry([str(path)], 32, [torch.Generator().manual_seed(1)])
    assert drawn[0].original_size == (40, 48) and drawn[0].crop_top_left[0] == 0
    assert 0 <= drawn[0].crop_top_left[1] <= 6


def test_conditioning_equals_the_pipelines_encode_prompt(tiny_sdxl):
    sd = load_components(tiny_sdxl)
    prompts = ["a red circle", "two blue squares on a white background"]
    cond = encode_prompts(sd, prompts, torch.device("cpu"), resolution=32)
    embeds, _, pooled, _ = _plain_pipe(tiny_sdxl).encode_prompt(
        prompts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    assert cond.encoder_hidden_states.shape == (2, 77, 32)  # 16 + 16: both encoders concatenated
    assert torch.equal(cond.encoder_hidden_states, embeds) and torch.equal(cond.text_embeds, pooled)
    assert cond.time_ids.tolist() == [[32, 32, 0, 0, 32, 32]] * 2
    # the UNet call takes them; without the pooled embeddings and time ids it cannot run
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([10, 500])
    with torch.no_grad():
        want = sd.unet(
            x, t, embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": cond.time_ids}
        ).sample
        assert torch.equal(predict_noise(sd.unet, x, t, cond), want)
        with pytest.raises((TypeError, ValueError)):
            sd.unet(x, t, embeds)
    # another crop is another conditioning
    other = encode_prompts(
        sd, prompts, torch.device("cpu"), geometry=[ImageGeometry((40, 48), (0, 3))] * 2, resolution=32
    )
    assert other.time_ids.tolist() == [[40, 48, 0, 3, 32, 32]] * 2
    assert not torch.equal(predict_noise(sd.unet, x, t, other), want)


# ---------------------------------------------------------------------- generation
def test_generate_is_deterministic_by_seed_and_is_diffusers_sdxl(tmp_path, tiny_sdxl):
    generate(tiny_sdxl, ["a red circle"], [0, 1], tmp_path / "a", settings=FAST)
    generate(tiny_sdxl, ["a red circle"], [0, 1], tmp_path / "b", settings=FAST)
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert a[0].meta["family"] == "sdxl" and Image.open(a.image_path(a[0].images[0])).size == (32, 32)
    assert np.array_equal(_pixels(a, a[0]), _pixels(b, b[0])) and np.array_equal(
        _pixels(a, a[1]), _pixels(b, b[1])
    )
    assert np.abs(_pixels(a, a[0]) - _pixels(a, a[1])).max() > 0
    assert np.array_equal(_pixels(a, a[1]), _plain_image(_plain_pipe(tiny_sdxl), seed=1))


def test_best_of_on_sdxl(tmp_path, tiny_sdxl):
    def brightness(images, prompts):
        return torch.tensor([float(np.asarray(im, dtype=np.float64).mean()) for im in images])

    generate(tiny_sdxl, ["a red circle"], [0, 1, 2], tmp_path / "all", settings=FAST)
    everything = load_dataset(tmp_path / "all")
    brightest = max(everything, key=lambda r: _pixels(everything, r).mean()).meta["seed"]
    report = generate(
        tiny_sdxl, ["a red circle"], [0], tmp_path / "best", settings=FAST, best_of=3, reward=brightness
    )
    best = load_dataset(tmp_path / "best")
    assert report.candidates == 3 and [r.meta["seed"] for r in best] == [brightest]


# ---------------------------------------------------------------------- trainers
@pytest.fixture(scope="module")
def sdxl_lora(tmp_path_factory, shapes_data, tiny_sdxl):
    from prefalign.adapt.lora import train_lora

    out = tmp_path_factory.mktemp("sdxl-lora") / "adapter"
    return train_lora(lora_config(shapes_data, tiny_sdxl, out, max_steps=3, identifier=""))


def test_sdxl_lora_loads_in_plain_diffusers_and_equals_our_generation(
    tmp_path, sdxl_lora, tiny_sdxl, tiny_sd
):
    info = json.loads((sdxl_lora / ADAPTER_INFO_FILE).read_text())
    assert info["family"] == "sdxl" and (sdxl_lora / LORA_WEIGHTS_FILE).is_file()
    pipe = _plain_pipe(tiny_sdxl)
    before = _plain_image(pipe)
    pipe.load_lora_weights(sdxl_lora)  # diffusers' own loader
    after = _plain_image(pipe)
    assert np.abs(after - before).max() > 2
    generate(tiny_sdxl, ["a red circle"], [0], tmp_path / "ours", lora=sdxl_lora, settings=FAST)
    ours = load_dataset(tmp_path / "ours")
    assert np.array_equal(_pixels(ours, ours[0]), after)
    # fused into the base (--merge): a plain SDXL directory that draws the same image
    from prefalign.adapt.merge import merge_adapter

    merged = _plain_pipe(merge_adapter(tiny_sdxl, sdxl_lora, tmp_path / "merged"))
    assert not getattr(merged.unet, "peft_config", None)
    assert type(merged.scheduler).__name__ == "EulerDiscreteScheduler"  # the base's own
    assert np.abs(_plain_image(merged) - after).max() <= 1
    # an SDXL adapter on an SD 1.x base: refused by name, not a shape error deep in peft
    with pytest.raises(AdaptError, match="trained for a sdxl base"):
        generate(tiny_sd, ["a red circle"], [0], tmp_path / "wrong", lora=sdxl_lora, settings=FAST)


def test_sdxl_lora_exported_in_kohya_layout_draws_the_same_image(tmp_path, sdxl_lora, tiny_sdxl):
    from prefalign.adapt.export import export_lora

    export_lora(sdxl_lora, tmp_path / "xl.safetensors", "kohya")
    ours, kohya = _plain_pipe(tiny_sdxl), _plain_pipe(tiny_sdxl)
    ours.load_lora_weights(sdxl_lora)
    kohya.load_lora_weights(str(tmp_path), weight_name="xl.safetensors")
    assert np.array_equal(_plain_image(kohya), _plain_image(ours))


def _assert_resume_exact(train, config_for, weights_file):
    from safetensors.torch import load_file

    straight = train(config_for("straight", max_steps=4, save_steps=2, gradient_accumulation_steps=2))
    interrupted = straight.parent / "interrupted"
    shutil.copytree(straight / "checkpoints", interrupted / "checkpoints")
    resumed = train(
        config_for(
            "interrupted",
            max_steps=4,
            save_steps=2,
            gradient_accumulation_steps=2,
            resume_from_checkpoint="latest",
        )
    )
    a, b = load_file(straight / weights_file), load_file(resumed / weights_file)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return straight


def test_train_rwr_on_sdxl_full_unet_resumes_exactly(tmp_path, shapes_data, tiny_sdxl):
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from prefalign.adapt.config import RewardWeightedConfig
    from prefalign.adapt.reward_weighted import train_reward_weighted

    def config_for(name, **overrides):
        settings = dict(
            data=str(shapes_data),
            prior_data=str(shapes_data),
            base=str(tiny_sdxl),
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=1,
            resolution=32,
            learning_rate=1e-3,
            logging_steps=1,
            beta=0.5,
            cpu=True,
        )
        return RewardWeightedConfig(**{**settings, **overrides})

    def reward(images, prompts):
        return torch.linspace(0.2, 0.9, len(images))

    out = _assert_resume_exact(
        lambda c: train_reward_weighted(c, reward), config_for, "unet/diffusion_pytorch_model.safetensors"
    )
    pipe = StableDiffusionXLPipeline.from_pretrained(out, add_watermarker=False)  # a whole SDXL directory
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"  # the base's own, not our sampler
    base = UNet2DConditionModel.from_pretrained(tiny_sdxl, subfolder="unet").state_dict()
    assert any(not torch.equal(v, base[k]) for k, v in pipe.unet.state_dict().items())
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(np.isfinite(r["loss"]) and "prior_mse" in r for r in log)


def test_train_dpo_on_sdxl(tmp_path, shapes_data, tiny_sdxl):
    from diffusers import UNet2DConditionModel

    from prefalign.adapt.dpo import DPOConfig, train_dpo

    def config_for(name, **overrides):
        settings = dict(
            data=str(shapes_data),
            base=str(tiny_sdxl),
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=2,
            resolution=32,
            rank=4,
            learning_rate=1e-3,
            logging_steps=1,
            cpu=True,
        )
        return DPOConfig(**{**settings, **overrides})

    out = _assert_resume_exact(train_dpo, config_for, LORA_WEIGHTS_FILE)
    info = json.loads((out / ADAPTER_INFO_FILE).read_text())
    assert info["family"] == "sdxl" and info["method"] == "diffusion-dpo"
    assert info["beta"] == 5000.0  # the authors' launchers/sdxl.sh
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    # step 1 starts at the reference (the base, adapter disabled): margin 0, loss log 2
    assert log[0]["loss"] == pytest.approx(np.log(2.0), abs=1e-6) and log[0]["reward_margin"] == 0.0
    assert all(np.isfinite(r["loss"]) for r in log) and log[-1]["reward_margin"] != 0.0
    # the adapter loads in plain diffusers SDXL and its base weights were never touched
    pipe = _plain_pipe(tiny_sdxl)
    pipe.load_lora_weights(out)
    base = UNet2DConditionModel.from_pretrained(tiny_sdxl, subfolder="unet").state_dict()
    for name, value in pipe.unet.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(value, base[name.replace(".base_layer", "")]), name


# ---------------------------------------------------------------------- the commands
def test_commands_on_sdxl_and_the_unsupported_family_line(tmp_path, shapes_data, tiny_sdxl, capsys):
    from prefalign.cli.main import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    lora = tmp_path / "lora"
    assert main(["adapt", "train-lora", "--data", str(shapes_data), "--base", str(tiny_sdxl), "--output_dir", str(lora),
                 "--max_steps", "1", "--per_device_train_batch_size", "2", "--resolution", "32", "--rank", "4", "--cpu"]) == 0  # fmt: skip
    assert main(["generate", "--base", str(tiny_sdxl), "--lora", str(lora), "--prompts", str(prompts), "--seeds", "0",
                 "--steps", "2", "--scheduler", "euler", "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0  # fmt: skip
    assert load_dataset(tmp_path / "g")[0].meta["family"] == "sdxl"
    capsys.readouterr()
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert (
        main(["generate", "--base", str(flux), "--prompts", str(prompts), "--out", str(tmp_path / "f")]) == 2
    )
    err = capsys.readouterr().err
    assert "FluxPipeline model (Flux) is not supported" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "f" / "records.parquet").exists()
