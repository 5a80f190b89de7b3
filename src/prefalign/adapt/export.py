"""Export a LoRA adapter in the layouts other tools load: kohya (AUTOMATIC1111, ComfyUI), diffusers, PEFT.

- ``kohya``: one ``.safetensors`` file with ``lora_unet_<module>.lora_down.weight``,
  ``.lora_up.weight`` and ``.alpha`` per layer, the layout kohya-ss/sd-scripts writes and
  AUTOMATIC1111, ComfyUI, SD.Next and diffusers' ``load_lora_weights`` read. Keys come from
  diffusers' own converters (``convert_unet_state_dict_to_peft`` then
  ``convert_state_dict_to_kohya``). Those converters write ``alpha = rank`` for every layer,
  which is right only when the adapter was trained with ``lora_alpha == r``; a kohya loader
  scales by ``alpha / rank``, PEFT by ``lora_alpha / r`` (``lora_alpha / sqrt(r)`` with rsLoRA),
  so the alpha written here is the one that gives the same scale as the trained adapter.
- ``diffusers``: a directory with ``pytorch_lora_weights.safetensors`` (and
  ``prefalign_adapter.json``), for ``pipe.load_lora_weights(dir)``.
- ``peft``: a directory with ``adapter_config.json`` and ``adapter_model.safetensors`` (keys
  ``base_model.model.<module>.lora_A.weight``), for ``PeftModel.from_pretrained(unet, dir)``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

from prefalign.adapt.adapter import ADAPTER_INFO_FILE, LORA_WEIGHTS_FILE, read_adapter_info
from prefalign.adapt.errors import AdaptError
from prefalign.files import write_atomic

EXPORT_FORMATS = ("kohya", "diffusers", "peft")


def _lora_config(adapter: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """The adapter's LoRA settings: diffusers' safetensors metadata, else prefalign_adapter.json."""
    raw = metadata.get("lora_adapter_metadata")
    if raw:
        config = json.loads(raw)
        return {k.removeprefix("unet."): v for k, v in config.items() if k.startswith("unet.")}
    info = read_adapter_info(adapter)
    if "rank" in info and "lora_alpha" in info:
        return {
            "r": info["rank"],
            "lora_alpha": info["lora_alpha"],
            "target_modules": info.get("target_modules"),
        }
    raise AdaptError(
        f"{adapter}: the weights do not record lora_alpha (no lora_adapter_metadata, no {ADAPTER_INFO_FILE}); "
        "without it the exported scale could be wrong"
    )


def read_unet_lora(adapter: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The UNet LoRA weights of a diffusers adapter directory in PEFT key layout, and its config.

    Returns:
        ``({"down_blocks.0....to_q.lora_A.weight": tensor (r, in), ...}, {"r": .., "lora_alpha": .., ...})``.

    Raises:
        AdaptError: no weights, text-encoder or DoRA layers (not exported), or unknown alpha.
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    from safetensors import safe_open

    adapter = Path(adapter)
    weights = adapter / LORA_WEIGHTS_FILE
    if not weights.is_file():
        raise AdaptError(f"{adapter}: no {LORA_WEIGHTS_FILE}; expected a diffusers LoRA adapter directory")
    with safe_open(str(weights), "pt") as fh:
        metadata = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
    others = sorted({k.split(".")[0] for k in state if not k.startswith("unet.")})
    if others:
        raise AdaptError(f"{weights}: holds {', '.join(others)} LoRA layers; only UNet adapters are exported")
    config = _lora_config(adapter, metadata)
    if config.get("use_dora"):
        raise AdaptError(f"{adapter}: a DoRA adapter; kohya and PEFT LoRA layouts cannot hold its magnitudes")
    peft_state = convert_unet_state_dict_to_peft({k.removeprefix("unet."): v for k, v in state.items()})
    return peft_state, config


def _alpha_for(module: str, rank: int, config: dict[str, Any]) -> float:
    """The kohya alpha giving ``module`` the scale PEFT gives it (kohya scale = alpha / rank)."""
    alpha = float(config["lora_alpha"])
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            alpha = float(value)
    if config.get("use_rslora"):
        return alpha / math.sqrt(rank) * rank  # PEFT scales by alpha / sqrt(r)
    return alpha


def kohya_state_dict(adapter: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The adapter as a kohya state dict (``lora_unet_...``) with the alpha that keeps its scale."""
    import torch

    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    peft_state, config = read_unet_lora(adapter)
    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()})
    alphas = {}
    for key, value in peft_state.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight")
            name = "lora_unet_" + module.replace(".", "_")
            alphas[f"{name}.alpha"] = _alpha_for(module, value.shape[0], config)
    missing = set(alphas) - set(kohya)
    if missing:  # the converter's naming changed under us: never write a file with default scales
        raise AdaptError(f"diffusers' kohya converter named layers unexpectedly (e.g. {sorted(missing)[0]})")
    for key, alpha in alphas.items():
        kohya[key] = torch.tensor(alpha, dtype=torch.float32)
    kohya = {k: v.contiguous() for k, v in kohya.items()}
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.get("r")),
        "ss_network_alpha": str(config.get("lora_alpha")),
        "ss_base_model_version": "sd_v1",
        "prefalign_exported_from": str(adapter),
    }
    return kohya, metadata


def export_lora(adapter: str | Path, out: str | Path, fmt: str, *, overwrite: bool = False) -> Path:
    """Write ``adapter`` (a diffusers LoRA directory, e.g. ``adapt train-lora`` output) as ``fmt``.

    Args:
        adapter: the adapter directory.
        out: kohya: the ``.safetensors`` file to write; diffusers and peft: a directory.
        fmt: ``kohya``, ``diffusers`` or ``peft``.
        overwrite: replace an existing ``out`` (refused otherwise).

    Returns:
        The path written.

    Raises:
        AdaptError: unknown format, ``out`` exists, or an adapter that cannot be exported.
    """
    from safetensors.torch import save as save_bytes

    if fmt not in EXPORT_FORMATS:
        raise AdaptError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    adapter, out = Path(adapter), Path(out)
    read_adapter_info(adapter)  # a clear error for a missing directory or one without weights
    if fmt == "kohya" and out.suffix != ".safetensors":
        raise AdaptError(f"{out}: a kohya LoRA is one file; name it NAME.safetensors")
    if out.exists() and not overwrite:
        raise AdaptError(f"{out} exists; pass --overwrite to replace it")
    if fmt == "kohya":
        state, metadata = kohya_state_dict(adapter)
        write_atomic(out, save_bytes(state, metadata=metadata))
        return out
    if fmt == "diffusers":
        read_unet_lora(adapter)  # the same checks as the other formats
        files = [LORA_WEIGHTS_FILE] + ([ADAPTER_INFO_FILE] if (adapter / ADAPTER_INFO_FILE).is_file() else [])
        for name in files:
            write_atomic(out / name, (adapter / name).read_bytes())
        return out
    from peft import LoraConfig

    peft_state, config = read_unet_lora(adapter)
    keep = {k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__}
    lora_config = LoraConfig(**keep)
    tmp = out.with_name(f".{out.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    lora_config.save_pretrained(str(tmp))
    write_atomic(
        tmp / "adapter_model.safetensors",
        save_bytes(
            {f"base_model.model.{k}": v.contiguous() for k, v in peft_state.items()},
            metadata={"format": "pt"},
        ),
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
