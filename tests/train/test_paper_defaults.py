"""The HPS classifier's paper details: the logit-scale clamp, what "the last 10 vision layers"
unlocks under each reading, where the weight-decay exclusions come from, and the parsed defaults."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from prefalign.train.freezing import parameter_groups, unfreeze_last_blocks

from .conftest import tiny_preference_config

LN_100 = math.log(100.0)


def _vit_l14_on_meta() -> CLIPModel:
    """CLIP ViT-L/14's shapes (OpenAI's config), built on the meta device: no memory, no time."""
    config = CLIPConfig(
        text_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                     "num_hidden_layers": 12, "projection_dim": 768},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                       "num_hidden_layers": 24, "patch_size": 14, "image_size": 224, "projection_dim": 768},
        projection_dim=768,
    )  # fmt: skip
    with torch.device("meta"):
        return CLIPModel(config)


def _vision_trainable(model: CLIPModel) -> int:
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.requires_grad and (n.startswith("vision_model.") or n.startswith("visual_projection."))
    )


def test_last_10_vision_layers_under_each_reading_on_vit_l14():
    model = _vit_l14_on_meta()
    width, mlp = 1024, 4096
    # One ViT-L/14 block: q, k, v, out projections with biases, the MLP, two LayerNorms.
    block = 4 * (width * width + width) + (width * mlp + mlp) + (mlp * width + width) + 2 * 2 * width
    final_norm, projection = 2 * width, width * 768  # HF's visual_projection has no bias
    assert block == 12_596_224

    unfreeze_last_blocks(model, 10, 6, semantics="paper")
    assert _vision_trainable(model) == 10 * block + final_norm + projection == 126_750_720
    # The paper reading: blocks 14..23 train, block 13 does not.
    assert model.vision_model.encoder.layers[14].mlp.fc1.weight.requires_grad
    assert not model.vision_model.encoder.layers[13].mlp.fc1.weight.requires_grad

    unfreeze_last_blocks(model, 10, 6, semantics="open_clip")
    assert _vision_trainable(model) == 9 * block + final_norm + projection == 114_154_496
    assert not model.vision_model.encoder.layers[14].mlp.fc1.weight.requires_grad
    assert not model.vision_model.embeddings.class_embedding.requires_grad
    # The text tower counts blocks either way: 6 blocks + final norm + projection.
    text_block = 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    text = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n.startswith("text_"))
    assert text == 6 * text_block + 2 * 768 + 768 * 768
    # open_clip's groups: everything = 24 blocks + [embeddings, pre-norm] group + projection group.
    unfreeze_last_blocks(model, 26, 0, semantics="open_clip")
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("vision_model."))
    with pytest.raises(ValueError, match="unlock semantics"):
        unfreeze_last_blocks(model, 10, 6, semantics="layers")


def test_weight_decay_exclusions_follow_open_clip():
    """open_clip's rule: no decay when p.ndim < 2 or the name has bn/ln/bias/logit_scale."""
    model = _vit_l14_on_meta()
    unfreeze_last_blocks(model, -1, -1)
    groups = parameter_groups(model, 0.1)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for name, p in model.named_parameters():
        open_clip_excludes = p.ndim < 2 or "norm" in name or "bias" in name or "logit_scale" in name
        assert (id(p) in no_decay) == open_clip_excludes, name


def _scale_run(tiny_clip32, small_choice_data, out, **overrides):
    """A run at a learning rate large enough to move logit_scale by about 1 per step, whose callback
    records logit_scale after each step and then pushes it to ln 1000 (a temperature of 1000)."""
    from prefalign.train import PreferenceTrainer

    seen: list[float] = []

    def push(trainer, state):
        clip = trainer.accelerator.unwrap_model(trainer.model).clip
        seen.append(float(clip.logit_scale.detach()))
        with torch.no_grad():
            clip.logit_scale.fill_(math.log(1000.0))

    config = tiny_preference_config(
        small_choice_data,
        tiny_clip32,
        out,
        learning_rate=1.0,
        max_steps=4,
        per_device_train_batch_size=4,
        **overrides,
    )
    PreferenceTrainer(config, callbacks=[push]).train()
    return seen


def test_logit_scale_never_exceeds_100(tiny_clip32, small_choice_data, tmp_path):
    seen = _scale_run(tiny_clip32, small_choice_data, tmp_path / "clamped")
    assert len(seen) == 4 and max(seen) <= LN_100 + 1e-6
    # Without the clamp the same run goes past it: the bound is the clamp's doing.
    unclamped = _scale_run(tiny_clip32, small_choice_data, tmp_path / "free", max_logit_scale=0.0)
    assert max(unclamped) > LN_100 + 0.5


def test_parsed_cli_defaults_are_the_papers():
    from prefalign.cli import train as cli_train

    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers())
    args = parser.parse_args(["train", "scorer", "--data", "d", "--output_dir", "o"])
    config = cli_train.config_from_args(args.config_cls, args)
    assert (config.learning_rate, config.weight_decay) == (1.7e-5, 3.1e-3)
    assert (config.vision_blocks, config.text_blocks, config.unlock_semantics) == (10, 6, "paper")
    assert (config.per_device_train_batch_size, config.num_train_epochs, config.preprocess) == (5, 1, "pad")
    assert config.max_logit_scale == 100.0
