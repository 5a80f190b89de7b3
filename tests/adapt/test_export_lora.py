"""`adapt export-lora`: kohya / diffusers / PEFT layouts that reproduce the trained adapter's images."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from prefalign.adapt.errors import AdaptError
from prefalign.adapt.export import export_lora


def _random_adapter(base, out, *, r=4, alpha=8, use_rslora=False):
    """An adapter whose LoRA is far from a no-op (random A and B), with lora_alpha != r."""
    from peft import LoraConfig

    from prefalign.adapt.adapter import LORA_TARGET_MODULES, save_lora_adapter
    from prefalign.adapt.base_model import load_components

    unet = load_components(base).unet
    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=list(LORA_TARGET_MODULES), use_rslora=use_rslora
    )
    unet.add_adapter(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return save_lora_adapter(unet, out, {"method": "test"})


def _images(base, lora=None):
    from prefalign.adapt.base_model import load_pipeline

    pipe = load_pipeline(base)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    out = pipe(
        ["a red circle"], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    )
    return np.asarray(out.images)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_kohya_export_loads_in_diffusers_and_reproduces_the_images(tmp_path, tiny_sd, use_rslora):
    adapter = _random_adapter(tiny_sd, tmp_path / "adapter", use_rslora=use_rslora)
    out = export_lora(adapter, tmp_path / "mine.safetensors", "kohya")
    state = load_file(out)
    # every layer name is one AUTOMATIC1111's Lora extension maps to its compvis name
    # (networks.py convert_diffusers_name_to_compvis: down/mid/up block attentions)
    a1111 = re.compile(
        r"lora_unet_(down_blocks_\d+_attentions_\d+|mid_block_attentions_\d+|up_blocks_\d+_attentions_\d+)_.+"
    )
    assert all(a1111.fullmatch(k.split(".")[0]) for k in state)
    assert {k.split(".", 1)[1] for k in state} == {"lora_down.weight", "lora_up.weight", "alpha"}
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0"  # the tiny UNet's first
    assert {f"{key}.lora_down.weight", f"{key}.lora_up.weight", f"{key}.alpha"} <= set(state)
    # kohya scale alpha / rank equals PEFT's lora_alpha / r (or / sqrt(r) with rsLoRA)
    assert float(state[f"{key}.alpha"]) == pytest.approx(8.0 * (2.0 if use_rslora else 1.0))
    plain, trained, kohya = _images(tiny_sd), _images(tiny_sd, adapter), _images(tiny_sd, out)
    assert np.abs(trained - plain).max() > 1e-2  # the adapter changes the images
    np.testing.assert_allclose(kohya, trained, atol=1e-5)
    if not use_rslora:  # diffusers' converter alone writes alpha = rank: half the scale, other images
        for k in [k for k in state if k.endswith(".alpha")]:
            state[k] = torch.tensor(4.0)
        from safetensors.torch import save_file

        save_file(state, tmp_path / "rank-alpha.safetensors")
        assert np.abs(_images(tiny_sd, tmp_path / "rank-alpha.safetensors") - trained).max() > 1e-3


def test_diffusers_and_peft_exports_and_overwrite(tmp_path, tiny_sd):
    from peft import PeftModel

    from prefalign.adapt.base_model import load_components

    adapter = _random_adapter(tiny_sd, tmp_path / "adapter")
    again = export_lora(adapter, tmp_path / "diffusers", "diffusers")
    np.testing.assert_allclose(_images(tiny_sd, again), _images(tiny_sd, adapter), atol=1e-6)
    with pytest.raises(AdaptError, match="exists; pass --overwrite"):
        export_lora(adapter, tmp_path / "diffusers", "diffusers")
    peft_dir = export_lora(adapter, tmp_path / "peft", "peft")
    assert (peft_dir / "adapter_config.json").is_file()
    # the PEFT adapter on a bare UNet gives the UNet output of the diffusers-loaded one
    from prefalign.adapt.base_model import load_pipeline

    pipe = load_pipeline(tiny_sd)
    pipe.load_lora_weights(str(adapter))
    unet = load_components(tiny_sd).unet
    peft_unet = PeftModel.from_pretrained(unet, str(peft_dir))
    x, t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([10])
    cond = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = pipe.unet(x, t, cond).sample
        got = peft_unet(sample=x, timestep=t, encoder_hidden_states=cond).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(AdaptError, match=r"NAME\.safetensors"):
        export_lora(adapter, tmp_path / "k", "kohya")
