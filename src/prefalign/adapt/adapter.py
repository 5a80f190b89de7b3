"""LoRA adapters on disk: diffusers' LoRA format plus ``prefalign_adapter.json``.

The weights are ``pytorch_lora_weights.safetensors`` as written by
``StableDiffusionPipeline.save_lora_weights``, so ``pipe.load_lora_weights(dir)`` loads them
unchanged anywhere. ``prefalign_adapter.json`` adds what the weights do not say: the base
architecture (to refuse an adapter made for another UNet with a clear message), the identifier
the adapter was trained with (which generation uses as negative prompt), and provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefalign.adapt.base_model import architecture_of
from prefalign.adapt.errors import AdaptError

ADAPTER_INFO_FILE = "prefalign_adapter.json"
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
# The attention projections of every UNet transformer block (HPS section 6, diffusers' recipe).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def save_lora_adapter(unet, out: str | Path, info: dict[str, Any]) -> Path:
    """Save ``unet``'s LoRA layers in diffusers' format and ``info`` beside them.

    Args:
        unet: a UNet with a peft adapter named ``default`` (``unet.add_adapter``).
        out: the adapter directory.
        info: provenance to record (method, identifier, steps...); the architecture is added.
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    config = unet.peft_config["default"]
    StableDiffusionPipeline.save_lora_weights(
        out,
        unet_lora_layers={k: v.detach().cpu().contiguous() for k, v in state.items()},
        safe_serialization=True,
        # diffusers reads rank and alpha back from this metadata, so alpha != rank round-trips.
        unet_lora_adapter_metadata=config.to_dict(),
    )
    full = {
        "format": "diffusers-lora",
        "weights": LORA_WEIGHTS_FILE,
        "rank": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": sorted(config.target_modules),
        "architecture": architecture_of(unet.config),
        **info,
    }
    (out / ADAPTER_INFO_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def read_adapter_info(adapter: str | Path) -> dict[str, Any]:
    """The ``prefalign_adapter.json`` of an adapter directory ({} for a foreign diffusers LoRA).

    Raises:
        AdaptError: no such directory, or no LoRA weights in it.
    """
    path = Path(adapter)
    if not path.is_dir():
        raise AdaptError(f"{adapter}: no such adapter directory")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise AdaptError(f"{adapter}: no LoRA weights (*.safetensors) in this directory")
    info_file = path / ADAPTER_INFO_FILE
    if not info_file.is_file():
        return {}
    try:
        return json.loads(info_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdaptError(f"{info_file}: not valid JSON ({exc})") from None


def load_adapter(pipe, adapter: str | Path) -> dict[str, Any]:
    """Load a LoRA adapter into a pipeline after checking it was made for this UNet.

    Returns:
        The adapter's info (``identifier`` is the negative prompt it was trained for, if any).

    Raises:
        AdaptError: the adapter was trained on a UNet of another architecture, or its weights do
            not fit this pipeline.
    """
    info = read_adapter_info(adapter)
    wanted = info.get("architecture")
    have = architecture_of(pipe.unet.config)
    if wanted is not None and wanted != have:
        diff = ", ".join(
            f"{k} {wanted.get(k)} vs {have.get(k)}" for k in have if wanted.get(k) != have.get(k)
        )
        raise AdaptError(
            f"{adapter}: adapter was trained for another UNet architecture (adapter vs base: {diff})"
        )
    from diffusers.utils import logging as dlogging

    # diffusers warns that an adapter has no text-encoder layers; ours never do by design.
    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        pipe.load_lora_weights(str(adapter))
    except (ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdaptError(f"{adapter}: LoRA weights do not fit this base ({first[:300]})") from None
    finally:
        dlogging.set_verbosity(verbosity)
    return info
