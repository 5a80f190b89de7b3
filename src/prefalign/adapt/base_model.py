"""Loading a Stable Diffusion 1.x base (a diffusers directory, a hub id, or a single
``.safetensors``/``.ckpt`` checkpoint as AUTOMATIC1111 and ComfyUI keep them) with clear errors,
and the pieces of the diffusion forward pass the trainers and generation share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefalign.adapt.errors import AdaptError
from prefalign.errors import first_line

# What a diffusers Stable Diffusion directory must hold for training and generation.
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# UNet config keys that fix the shapes of its attention layers: two bases that agree on all of
# them accept the same LoRA adapter.
ARCHITECTURE_KEYS = (
    "in_channels",
    "block_out_channels",
    "cross_attention_dim",
    "attention_head_dim",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
)


SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
# dtype names of --dtype -> torch dtypes (fp32 is diffusers' default when loading)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def is_single_file(base: str | Path) -> bool:
    """Whether ``base`` names one checkpoint file (``.safetensors``/``.ckpt``) rather than a directory."""
    return Path(base).suffix.lower() in SINGLE_FILE_SUFFIXES and not Path(base).is_dir()


def check_base(base: str | Path) -> str:
    """Return ``base`` as a string after checking a local directory has every component.

    A string that is not an existing path is taken as a hub id and left to diffusers (which
    honours HF_HUB_OFFLINE). A ``.safetensors``/``.ckpt`` file is a single-file checkpoint.

    Raises:
        AdaptError: a local directory without ``model_index.json`` or without some components,
            or a single-file checkpoint that does not exist.
    """
    path = Path(base)
    if is_single_file(base):
        if not path.is_file():
            raise AdaptError(f"{base}: no such checkpoint file")
        return str(path)
    if not path.exists():
        if str(base).count("/") == 1 and not str(base).startswith((".", "/")):
            return str(base)  # a hub id such as runwayml/stable-diffusion-v1-5
        raise AdaptError(f"{base}: no such Stable Diffusion directory")
    if not (path / "model_index.json").is_file():
        raise AdaptError(f"{base}: not a diffusers Stable Diffusion directory (no model_index.json)")
    missing = [c for c in REQUIRED_COMPONENTS if not (path / c).is_dir()]
    if missing:
        raise AdaptError(
            f"{base}: Stable Diffusion directory is missing {', '.join(f'{m}/' for m in missing)}"
        )
    return str(path)


def architecture_of(unet_config: Any) -> dict[str, Any]:
    """The shape-defining part of a UNet config, as plain JSON values."""
    get = unet_config.get if isinstance(unet_config, dict) else lambda k: getattr(unet_config, k, None)
    return {k: json.loads(json.dumps(get(k))) for k in ARCHITECTURE_KEYS}


@dataclass
class SDComponents:
    """The frozen parts of a Stable Diffusion base and its UNet (trainable or not)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any  # DDPM with the base's training schedule


def load_components(base: str | Path) -> SDComponents:
    """Load a base's UNet, VAE, text encoder, tokenizer and its DDPM training noise schedule.

    Everything is frozen and in eval mode; the trainer decides what to unfreeze.
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    source = check_base(base)
    if is_single_file(source):
        pipe = load_pipeline(source)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False).eval()
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return SDComponents(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, scheduler)
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        noise_scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise AdaptError(f"{base}: cannot load the Stable Diffusion components ({first_line(exc)})") from None
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval()
    return SDComponents(unet, vae, text_encoder, tokenizer, noise_scheduler)


def load_pipeline(base: str | Path, *, scheduler: str = "pndm", device: str = "cpu", dtype: str = "fp32"):
    """A ``StableDiffusionPipeline`` without safety checker, with the named sampler.

    Args:
        base: a diffusers directory, a hub id, or a single ``.safetensors``/``.ckpt`` checkpoint
            (diffusers' ``from_single_file``; it takes the component configs of the detected model
            type from the hub or the local cache).
        scheduler: pndm, ddim or dpm.
        device: where to put the pipeline.
        dtype: fp32, fp16 or bf16 weights (fp16 needs a GPU).

    Raises:
        AdaptError: bad scheduler or dtype, or a base that cannot be loaded (one line, naming it).
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler, StableDiffusionPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError
    from diffusers.utils import logging as dlogging

    schedulers = {"pndm": PNDMScheduler, "ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}
    if scheduler not in schedulers:
        raise AdaptError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(schedulers)}")
    if dtype not in DTYPES:
        raise AdaptError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "fp16" and not str(device).startswith("cuda"):
        raise AdaptError(f"fp16 needs a GPU (device is {device}); use bf16 or fp32 on a CPU")
    source = check_base(base)
    dlogging.disable_progress_bar()
    kwargs = {"safety_checker": None, "requires_safety_checker": False, "dtype": DTYPES[dtype]}
    try:
        if is_single_file(source):
            pipe = StableDiffusionPipeline.from_single_file(source, **kwargs)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(source, feature_extractor=None, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        hint = ""
        if is_single_file(source):
            hint = (
                "; a single-file checkpoint takes its component configs from the hub or the local "
                "cache: run once online, or convert it to a diffusers directory"
            )
        raise AdaptError(
            f"{base}: cannot load the Stable Diffusion pipeline ({first_line(exc)[:300]}){hint}"
        ) from None
    pipe.scheduler = schedulers[scheduler].from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def encode_prompts(components: SDComponents, prompts: list[str], device: torch.device) -> torch.Tensor:
    """The text encoder's last hidden states for prompts padded to the tokenizer's length."""
    ids = components.tokenizer(
        prompts,
        padding="max_length",
        max_length=components.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    with torch.no_grad():
        return components.text_encoder(ids)[0]


def images_to_latents(
    components: SDComponents, pixels: torch.Tensor, generators: list[torch.Generator]
) -> torch.Tensor:
    """VAE latents (sampled from the posterior, scaled) of images given in [-1, 1].

    Args:
        components: the base.
        pixels: images, NCHW in [-1, 1].
        generators: one CPU generator per image for its posterior sample.
    """
    with torch.no_grad():
        dist = components.vae.encode(pixels).latent_dist
        shape, dtype = dist.mean.shape[1:], dist.mean.dtype
        noise = torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in generators])
        latents = dist.mean + dist.std * noise.to(pixels.device)
    return latents * components.vae.config.scaling_factor
