"""LoRA training: only adapter weights move, the adapter loads with diffusers unchanged and changes
the output, exact resume, merging, and the errors a user can cause."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

from prefalign.adapt.adapter import ADAPTER_INFO_FILE, LORA_WEIGHTS_FILE
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.trainer import DiffusionFineTuner, examples_from_dataset
from prefalign.data import load_dataset

from .conftest import copy_without, lora_config


def _image(pipe, seed=0, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        "a red circle",
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kwargs,
    ).images[0]


def test_training_moves_only_adapter_weights(tmp_path, shapes_data, tiny_sd):
    config = lora_config(shapes_data, tiny_sd, tmp_path / "out", max_steps=2)
    trainer = DiffusionFineTuner(config, examples_from_dataset(load_dataset(shapes_data)))
    trainer.train()
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    base = UNet2DConditionModel.from_pretrained(tiny_sd, subfolder="unet").state_dict()
    lora_b, frozen = {}, 0
    for name, value in unet.state_dict().items():
        if "lora_" in name:
            if "lora_B" in name:
                lora_b[name] = value
            continue
        assert torch.equal(value, base[name.replace(".base_layer", "")]), name  # bit-identical
        frozen += 1
    assert frozen == len(base)
    # lora_B starts at zero; every one of them trained
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())
    targets = {n.split(".lora_B")[0].rsplit(".", 1)[-1] for n in lora_b}
    assert targets == {"to_q", "to_k", "to_v", "0"}  # to_out.0
    assert all(not p.requires_grad for p in trainer.sd.vae.parameters())
    assert all(not p.requires_grad for p in trainer.sd.text_encoder.parameters())
    log = [json.loads(line) for line in (tmp_path / "out" / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)


def test_adapter_loads_with_diffusers_and_changes_the_output(trained_lora, tiny_sd):
    assert (trained_lora / LORA_WEIGHTS_FILE).is_file()
    info = json.loads((trained_lora / ADAPTER_INFO_FILE).read_text())
    assert info["identifier"] == "Weird image. " and info["rank"] == 4 and info["method"] == "hps-lora"
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_sd, safety_checker=None, requires_safety_checker=False
    )
    before = _image(pipe)
    pipe.load_lora_weights(trained_lora)  # diffusers' own loader, nothing of ours
    after = _image(pipe)
    assert np.abs(after - before).max() > 1e-3


def test_lora_alpha_round_trips(tmp_path, shapes_data, tiny_sd):
    from prefalign.adapt.lora import train_lora

    out = train_lora(lora_config(shapes_data, tiny_sd, tmp_path / "a", max_steps=1, rank=2, lora_alpha=8.0))
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_sd, safety_checker=None, requires_safety_checker=False
    )
    pipe.load_lora_weights(out)
    config = next(iter(pipe.unet.peft_config.values()))
    assert (config.r, config.lora_alpha) == (2, 8.0)


def test_resume_is_exact(tmp_path, shapes_data, tiny_sd):
    from safetensors.torch import load_file

    from prefalign.adapt.lora import train_lora

    straight = train_lora(
        lora_config(
            shapes_data,
            tiny_sd,
            tmp_path / "straight",
            max_steps=4,
            save_steps=2,
            gradient_accumulation_steps=2,
        )
    )
    # an interrupted run: only its step-2 checkpoint survives
    interrupted = tmp_path / "interrupted"
    shutil.copytree(straight / "checkpoints", interrupted / "checkpoints")
    assert [p.name for p in (interrupted / "checkpoints").iterdir()] == ["step-0000002"]
    resumed = train_lora(
        lora_config(
            shapes_data,
            tiny_sd,
            interrupted,
            max_steps=4,
            save_steps=2,
            gradient_accumulation_steps=2,
            resume_from_checkpoint="latest",
        )
    )
    a, b = load_file(straight / LORA_WEIGHTS_FILE), load_file(resumed / LORA_WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_new_run_refuses_old_checkpoints_and_resume_needs_one(tmp_path, shapes_data, tiny_sd):
    from prefalign.adapt.lora import train_lora

    with pytest.raises(AdaptError, match="no checkpoint"):
        train_lora(
            lora_config(shapes_data, tiny_sd, tmp_path / "x", max_steps=1, resume_from_checkpoint="latest")
        )
    (tmp_path / "y" / "checkpoints" / "step-0000001").mkdir(parents=True)
    with pytest.raises(AdaptError, match="--resume"):
        train_lora(lora_config(shapes_data, tiny_sd, tmp_path / "y", max_steps=1))


def test_merge_saves_a_plain_pipeline_equal_to_base_plus_adapter(tmp_path, trained_lora, tiny_sd):
    from prefalign.adapt.merge import merge_adapter

    merged = merge_adapter(tiny_sd, trained_lora, tmp_path / "merged")
    kwargs = dict(safety_checker=None, requires_safety_checker=False)
    plain = StableDiffusionPipeline.from_pretrained(merged, **kwargs)
    assert not getattr(plain.unet, "peft_config", None)
    with_lora = StableDiffusionPipeline.from_pretrained(tiny_sd, **kwargs)
    with_lora.load_lora_weights(trained_lora)
    np.testing.assert_allclose(_image(plain), _image(with_lora), atol=1e-4)


def test_base_missing_a_component_is_a_clear_error(tmp_path, shapes_data, tiny_sd):
    from prefalign.adapt.lora import train_lora

    broken = copy_without(tiny_sd, tmp_path / "broken", "vae")
    with pytest.raises(AdaptError, match=r"missing vae/"):
        train_lora(lora_config(shapes_data, broken, tmp_path / "out"))
    with pytest.raises(AdaptError, match=r"no model_index\.json"):
        train_lora(lora_config(shapes_data, shapes_data, tmp_path / "out2"))  # a dataset, not a model


def test_gradient_checkpointing_gives_the_same_adapter(tmp_path, shapes_data, tiny_sd):
    from safetensors.torch import load_file

    from prefalign.adapt.lora import train_lora

    plain = train_lora(lora_config(shapes_data, tiny_sd, tmp_path / "plain", max_steps=2))
    checkpointed = train_lora(
        lora_config(shapes_data, tiny_sd, tmp_path / "gc", max_steps=2, gradient_checkpointing=True)
    )
    a, b = load_file(plain / LORA_WEIGHTS_FILE), load_file(checkpointed / LORA_WEIGHTS_FILE)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_gradient_accumulation_equals_the_whole_batch(tmp_path, shapes_data, tiny_sd):
    """Samples are seeded by their position in the run, so splitting a step's batch into passes
    changes nothing but the float summation order."""
    from safetensors.torch import load_file

    from prefalign.adapt.lora import train_lora

    whole = train_lora(
        lora_config(
            shapes_data,
            tiny_sd,
            tmp_path / "whole",
            max_steps=2,
            per_device_train_batch_size=4,
            max_grad_norm=0,
        )
    )
    split = train_lora(
        lora_config(
            shapes_data,
            tiny_sd,
            tmp_path / "split",
            max_steps=2,
            per_device_train_batch_size=2,  # 2 per pass x 2 passes: the same 4 pairs per step
            gradient_accumulation_steps=2,
            max_grad_norm=0,
        )
    )
    a, b = load_file(whole / LORA_WEIGHTS_FILE), load_file(split / LORA_WEIGHTS_FILE)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
