"""LoRA adapters on disk: diffusers' LoRA format plus ``prefalign_adapter.json``.

The weights are ``pytorch_lora_weights.safetensors`` as written by
``StableDiffusionPipeline.save_lora_weights`` (``StableDiffusionXLPipeline.save_lora_weights``
for an SDXL base), so ``pipe.load_lora_weights(dir)`` loads them unchanged anywhere. ``prefalign_adapter.json`` adds what the weights do not say: the base
architecture (to refuse an adapter made for another UNet with a clear message), the identifier
the adapter was trained with (which generation uses as negative prompt), and provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefalign.adapt.base_model import SD1, SDXL, architecture_of
from prefalign.adapt.errors import AdaptError
from prefalign.errors import first_line
from prefalign.files import share_written

ADAPTER_INFO_FILE = "prefalign_adapter.json"
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
# The attention projections of every UNet transformer block (HPS section 6, diffusers' recipe).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def save_lora_adapter(unet, out: str | Path, info: dict[str, Any], *, family: str = SD1) -> Path:
    """Save ``unet``'s LoRA layers in diffusers' format and ``info`` beside them.

    Args:
        unet: a UNet with a peft adapter named ``default`` (``unet.add_adapter``).
        out: the adapter directory.
        info: provenance to record (method, identifier, steps...); the architecture is added.
        family: the base's family (``sd1``, ``sd2``, ``sdxl``): SDXL adapters are written by
            ``StableDiffusionXLPipeline.save_lora_weights``, as diffusers' SDXL LoRA scripts do.
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    config = unet.peft_config["default"]
    pipeline_class: Any = StableDiffusionXLPipeline if family == SDXL else StableDiffusionPipeline
    pipeline_class.save_lora_weights(
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
        "family": family,
        **info,
    }
    (out / ADAPTER_INFO_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    share_written(out / LORA_WEIGHTS_FILE)  # safetensors writes 0600: A1111/ComfyUI may run as another user
    return out


# What diffusers' load_lora_weights reads as LoRA weights.
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def resolve_adapter(adapter: str | Path, weight_name: str | None = None) -> tuple[Path, str]:
    """The directory and weight file of an adapter given as a file or a directory.

    diffusers' ``load_lora_weights`` takes a directory plus ``weight_name``, or a file path; a
    directory with several weight files makes it warn and take the first it lists. Here a
    directory must hold exactly one top-level weight file, or ``weight_name`` chooses.

    Raises:
        AdaptError: no such file or directory, no weights, several without ``weight_name``.
    """
    path = Path(adapter)
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise AdaptError(
                f"{adapter}: not a LoRA weights file (expected .safetensors or .bin, or a directory)"
            )
        if weight_name is not None and weight_name != path.name:
            raise AdaptError(
                f"{adapter}: a file was given, so --lora-weight-name {weight_name} does not apply"
            )
        return path.parent, path.name
    if not path.is_dir():
        raise AdaptError(f"{adapter}: no such adapter directory or LoRA weights file")
    files = sorted(f.name for f in path.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    if weight_name is not None:
        if weight_name not in files:
            raise AdaptError(
                f"{adapter}: no weight file {weight_name!r} here (found: {', '.join(files) or 'none'})"
            )
        return path, weight_name
    if not files:
        raise AdaptError(f"{adapter}: no LoRA weights (*.safetensors) in this directory")
    if len(files) > 1:
        raise AdaptError(
            f"{adapter}: {len(files)} weight files ({', '.join(files)}): choose one with --lora-weight-name NAME"
        )
    return path, files[0]


def read_adapter_info(adapter: str | Path, weight_name: str | None = None) -> dict[str, Any]:
    """The ``prefalign_adapter.json`` of an adapter ({} for a foreign diffusers LoRA, or when the
    info describes another weight file of the directory).

    Args:
        adapter: the adapter directory, or its weights file.
        weight_name: the weight file within a directory holding several.

    Raises:
        AdaptError: no such file or directory, or no (unambiguous) LoRA weights in it.
    """
    directory, name = resolve_adapter(adapter, weight_name)
    info_file = directory / ADAPTER_INFO_FILE
    if not info_file.is_file():
        return {}
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdaptError(f"{info_file}: not valid JSON ({exc})") from None
    return info if info.get("weights", LORA_WEIGHTS_FILE) == name else {}


def load_adapter(pipe, adapter: str | Path, weight_name: str | None = None) -> dict[str, Any]:
    """Load a LoRA adapter (a directory, or a weights file) into a pipeline after checking it
    was made for this UNet; ``weight_name`` chooses among several files of a directory.

    Returns:
        The adapter's info (``identifier`` is the negative prompt it was trained for, if any).

    Raises:
        AdaptError: the adapter was trained on a UNet of another architecture, or its weights do
            not fit this pipeline.
    """
    info = read_adapter_info(adapter, weight_name)
    directory, name = resolve_adapter(adapter, weight_name)
    from diffusers import StableDiffusionXLPipeline

    made_for = info.get("family")
    if made_for is not None and (made_for == SDXL) != isinstance(pipe, StableDiffusionXLPipeline):
        pipe_family = SDXL if isinstance(pipe, StableDiffusionXLPipeline) else "sd1/sd2"
        raise AdaptError(f"{adapter}: adapter was trained for a {made_for} base, not this {pipe_family} one")
    wanted = info.get("architecture")
    have = architecture_of(pipe.unet.config)
    if wanted is not None and wanted != have:
        diff = ", ".join(
            f"{k} {wanted.get(k)} vs {have.get(k)}" for k in have if wanted.get(k) != have.get(k)
        )
        raise AdaptError(
            f"{adapter}: adapter was trained for another UNet architecture (adapter vs base: {diff})"
        )
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers.utils import logging as dlogging

    # diffusers warns that an adapter has no text-encoder layers; ours never do by design.
    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        pipe.load_lora_weights(str(directory), weight_name=name)
    except (ValueError, RuntimeError, KeyError) as exc:
        first = first_line(exc)
        raise AdaptError(f"{adapter}: LoRA weights do not fit this base ({first[:300]})") from None
    finally:
        dlogging.set_verbosity(verbosity)
    return info
