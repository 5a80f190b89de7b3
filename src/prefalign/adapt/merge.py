"""Fusing a LoRA adapter into its base: a plain Stable Diffusion directory, no peft needed to use it."""

from __future__ import annotations

from pathlib import Path

from prefalign.adapt.adapter import load_adapter
from prefalign.adapt.base_model import load_pipeline
from prefalign.files import share_written


def merge_adapter(base: str | Path, adapter: str | Path, out: str | Path) -> Path:
    """Save ``base`` with ``adapter`` fused into its UNet weights as a diffusers directory (with the
    base's own scheduler: SDXL keeps its Euler config)."""
    pipe = load_pipeline(base, scheduler=None)
    load_adapter(pipe, adapter)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    pipe.save_pretrained(out)
    share_written(out)  # safetensors writes 0600
    return Path(out)
