"""Loading a Stable Diffusion base (a diffusers directory, a hub id, or a single
``.safetensors``/``.ckpt`` checkpoint as AUTOMATIC1111 and ComfyUI keep them) with clear errors,
and the pieces of the diffusion forward pass the trainers and generation share.

Families: ``sd1`` and ``sd2`` (``StableDiffusionPipeline``: one CLIP text encoder, the UNet reads
its last hidden states) and ``sdxl`` (``StableDiffusionXLPipeline``: two text encoders whose
penultimate hidden states are concatenated, plus the second encoder's pooled projection and six
micro-conditioning time ids, as diffusers' SDXL pipeline and training scripts build them). The
family is read from the pipeline (``model_index.json``); any other pipeline is refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prefalign.adapt.errors import AdaptError
from prefalign.errors import first_line

# What a diffusers Stable Diffusion directory must hold for training and generation.
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILY_COMPONENTS = {
    SD1: REQUIRED_COMPONENTS,
    SD2: REQUIRED_COMPONENTS,
    SDXL: (*REQUIRED_COMPONENTS, "text_encoder_2", "tokenizer_2"),
}
# model_index.json's _class_name -> family; StableDiffusionPipeline is sd1 or sd2 by its UNet.
PIPELINE_FAMILIES = {"StableDiffusionPipeline": SD1, "StableDiffusionXLPipeline": SDXL}
SUPPORTED_FAMILIES_TEXT = "sd1 and sd2 (StableDiffusionPipeline), sdxl (StableDiffusionXLPipeline)"
# Pipelines people pass by mistake, named in the refusal (everything else is named by its class).
_KNOWN_UNSUPPORTED = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3",
    "FluxPipeline": "Flux",
    "StableDiffusionXLImg2ImgPipeline": "the SDXL refiner / img2img",
    "PixArtAlphaPipeline": "PixArt-α",
    "PixArtSigmaPipeline": "PixArt-Σ",
    "KandinskyV22Pipeline": "Kandinsky 2.2",
    "StableCascadePriorPipeline": "Stable Cascade",
}
# SD 2.x's OpenCLIP ViT-H text encoder is 1024 wide (SD 1.x's CLIP ViT-L: 768).
SD2_CROSS_ATTENTION_DIM = 1024
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


def _unsupported(base: str | Path, class_name: str) -> AdaptError:
    what = _KNOWN_UNSUPPORTED.get(class_name)
    named = f"a {class_name} model ({what})" if what else f"a {class_name} model"
    return AdaptError(f"{base}: {named} is not supported; prefalign adapt supports {SUPPORTED_FAMILIES_TEXT}")


def _single_file_family(path: Path) -> str:
    """The family of a single-file checkpoint, from its tensor names (``.safetensors``; a
    ``.ckpt`` is a pickle that is not opened to look, and is taken as SD 1.x/2.x)."""
    if path.suffix.lower() != ".safetensors":
        return SD1
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise AdaptError(f"{path}: not a readable .safetensors checkpoint ({first_line(exc)})") from None
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return SDXL
    if any(".joint_blocks." in k for k in keys):
        raise _unsupported(path, "StableDiffusion3Pipeline")
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in keys):
        raise _unsupported(path, "FluxPipeline")
    return SD2 if any(k.startswith("cond_stage_model.model.") for k in keys) else SD1


def detect_family(base: str | Path) -> str:
    """``sd1``, ``sd2`` or ``sdxl``: the family of a base, from its pipeline class
    (``model_index.json``'s ``_class_name``) and, for ``StableDiffusionPipeline``, its UNet's
    cross-attention width (1024: SD 2.x). A hub id is read from the hub or the local cache
    (honouring HF_HUB_OFFLINE).

    Raises:
        AdaptError: another pipeline (SD3, Flux, the SDXL refiner...): one line naming it and the
            supported families; or a base whose configs cannot be read.
    """
    path = Path(base)
    if is_single_file(base):
        return _single_file_family(path)
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    try:
        if path.is_dir():
            index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        else:
            index = dict(DiffusionPipeline.load_config(str(base)))
    except (OSError, ValueError) as exc:
        raise AdaptError(
            f"{base}: cannot read the pipeline's model_index.json ({first_line(exc)[:200]})"
        ) from None
    class_name = str(index.get("_class_name", ""))
    if class_name not in PIPELINE_FAMILIES:
        raise _unsupported(base, class_name or "unnamed")
    family = PIPELINE_FAMILIES[class_name]
    if family == SD1:
        try:
            if path.is_dir():
                unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
            else:
                unet = dict(UNet2DConditionModel.load_config(str(base), subfolder="unet"))
        except (OSError, ValueError):
            return SD1  # check_base or the loader reports the missing UNet
        if unet.get("cross_attention_dim") == SD2_CROSS_ATTENTION_DIM:
            return SD2
    return family


def check_base(base: str | Path) -> str:
    """Return ``base`` as a string after checking a local directory has every component.

    A string that is not an existing path is taken as a hub id and left to diffusers (which
    honours HF_HUB_OFFLINE). A ``.safetensors``/``.ckpt`` file is a single-file checkpoint.

    Raises:
        AdaptError: a local directory without ``model_index.json``, of an unsupported family, or
            without some components of its family; or a single-file checkpoint that does not exist.
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
    family = detect_family(path)
    missing = [c for c in FAMILY_COMPONENTS[family] if not (path / c).is_dir()]
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
    """The frozen parts of a Stable Diffusion base and its UNet (trainable or not).

    ``text_encoder_2`` and ``tokenizer_2`` are SDXL's second encoder (a
    ``CLIPTextModelWithProjection``) and its tokenizer; None for SD 1.x/2.x.
    """

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any  # DDPM with the base's training schedule
    family: str = SD1
    text_encoder_2: Any = None
    tokenizer_2: Any = None

    def text_encoders(self) -> list[Any]:
        """The text encoders the family uses (one, or SDXL's two)."""
        return [m for m in (self.text_encoder, self.text_encoder_2) if m is not None]


def load_components(base: str | Path) -> SDComponents:
    """Load a base's UNet, VAE, text encoder, tokenizer and its DDPM training noise schedule.

    Everything is frozen and in eval mode; the trainer decides what to unfreeze. For SDXL the
    second text encoder and tokenizer are loaded too; the noise schedule is read as DDPM from
    the base's scheduler config (SDXL ships an Euler config over the same betas), as diffusers'
    SDXL training scripts do.
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    source = check_base(base)
    family = detect_family(source)
    if is_single_file(source):
        pipe = load_pipeline(source)
        encoder_2 = getattr(pipe, "text_encoder_2", None)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder, encoder_2):
            if module is not None:
                module.requires_grad_(False).eval()
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return SDComponents(
            pipe.unet,
            pipe.vae,
            pipe.text_encoder,
            pipe.tokenizer,
            scheduler,
            family,
            encoder_2,
            getattr(pipe, "tokenizer_2", None),
        )
    text_encoder_2 = tokenizer_2 = None
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        noise_scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
        if family == SDXL:
            text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2")
            tokenizer_2 = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2")
    except (OSError, ValueError) as exc:
        raise AdaptError(f"{base}: cannot load the Stable Diffusion components ({first_line(exc)})") from None
    for module in (unet, vae, text_encoder, text_encoder_2):
        if module is not None:
            module.requires_grad_(False).eval()
    return SDComponents(
        unet, vae, text_encoder, tokenizer, noise_scheduler, family, text_encoder_2, tokenizer_2
    )


def load_pipeline(
    base: str | Path, *, scheduler: str | None = "pndm", device: str = "cpu", dtype: str = "fp32"
):
    """A ``StableDiffusionPipeline`` without safety checker (SD 1.x/2.x) or a
    ``StableDiffusionXLPipeline`` without invisible watermark (SDXL; ours, so that pixels are the
    model's own), with the named sampler.

    Args:
        base: a diffusers directory, a hub id, or a single ``.safetensors``/``.ckpt`` checkpoint
            (diffusers' ``from_single_file``; it takes the component configs of the detected model
            type from the hub or the local cache).
        scheduler: pndm, ddim, dpm or euler (SDXL's own sampler); None keeps the base's own (what
            a saved pipeline must keep).
        device: where to put the pipeline.
        dtype: fp32, fp16 or bf16 weights (fp16 needs a GPU).

    Raises:
        AdaptError: bad scheduler or dtype, or a base that cannot be loaded (one line, naming it).
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from diffusers.loaders.single_file_utils import SingleFileComponentError
    from diffusers.utils import logging as dlogging

    schedulers = {
        "pndm": PNDMScheduler,
        "ddim": DDIMScheduler,
        "dpm": DPMSolverMultistepScheduler,
        "euler": EulerDiscreteScheduler,
    }
    if scheduler is not None and scheduler not in schedulers:
        raise AdaptError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(schedulers)}")
    if dtype not in DTYPES:
        raise AdaptError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "fp16" and not str(device).startswith("cuda"):
        raise AdaptError(f"fp16 needs a GPU (device is {device}); use bf16 or fp32 on a CPU")
    source = check_base(base)
    family = detect_family(source)
    dlogging.disable_progress_bar()
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
    pipeline_class: Any = StableDiffusionPipeline
    if family == SDXL:
        pipeline_class = StableDiffusionXLPipeline
        kwargs["add_watermarker"] = False
    else:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        if is_single_file(source):
            pipe = pipeline_class.from_single_file(source, **kwargs)
        else:
            pipe = pipeline_class.from_pretrained(source, feature_extractor=None, **kwargs)
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
    if scheduler is not None:
        pipe.scheduler = schedulers[scheduler].from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass(frozen=True)
class ImageGeometry:
    """Where a training image came from, for SDXL's micro-conditioning.

    Attributes:
        original_size: ``(height, width)`` in pixels of the image as loaded, before any resize.
        crop_top_left: ``(top, left)`` in pixels of the crop in the resized image.
    """

    original_size: tuple[int, int]
    crop_top_left: tuple[int, int] = (0, 0)


def sdxl_time_ids(
    geometry: Sequence[ImageGeometry], target_size: tuple[int, int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """SDXL's micro-conditioning: per image ``original_size + crop_top_left + target_size``.

    The six numbers diffusers' ``StableDiffusionXLPipeline._get_add_time_ids`` builds for
    generation and its SDXL training scripts (``compute_time_ids``) build per training image
    from the size it was loaded at and where it was cropped.

    Args:
        geometry: one entry per image.
        target_size: ``(height, width)`` of the image the UNet sees (the training resolution).
        dtype: of the result.

    Returns:
        ``(n, 6)``: original height, width, crop top, left, target height, width, in pixels.
    """
    rows = [list(g.original_size + g.crop_top_left + tuple(target_size)) for g in geometry]
    return torch.tensor(rows, dtype=dtype).reshape(len(rows), 6)


@dataclass
class Conditioning:
    """What a family's UNet reads besides the noisy latents and the timestep.

    Attributes:
        encoder_hidden_states: ``(n, tokens, width)``: SD 1.x/2.x the text encoder's last hidden
            states; SDXL both encoders' penultimate hidden states concatenated on the width.
        text_embeds: SDXL only: ``(n, projection)``, the second encoder's pooled projection.
        time_ids: SDXL only: ``(n, 6)``, see :func:`sdxl_time_ids`.
    """

    encoder_hidden_states: torch.Tensor
    text_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = field(default=None)

    def repeat(self, times: int) -> Conditioning:
        """The batch repeated ``times`` (as ``tensor.repeat(times, ...)``: [c, c] for 2)."""

        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat(times, *([1] * (t.dim() - 1)))

        return Conditioning(
            self.encoder_hidden_states.repeat(times, 1, 1), rep(self.text_embeds), rep(self.time_ids)
        )

    def unet_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``UNet2DConditionModel.forward`` after sample and timestep."""
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.encoder_hidden_states}
        if self.text_embeds is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.text_embeds, "time_ids": self.time_ids}
        return kwargs


def predict_noise(
    unet: Any, noisy: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning | torch.Tensor
) -> torch.Tensor:
    """The UNet's prediction (ε or v, as the scheduler's ``prediction_type``) for any family.

    ``cond`` is a :class:`Conditioning`, or for SD 1.x/2.x its bare ``encoder_hidden_states``.
    """
    if isinstance(cond, torch.Tensor):
        cond = Conditioning(cond)
    return unet(noisy, timesteps, **cond.unet_kwargs()).sample


def default_resolution(components: SDComponents) -> int:
    """The base's native image size: the UNet's sample size times the VAE's downsampling."""
    return int(components.unet.config.sample_size) * 2 ** (len(components.vae.config.block_out_channels) - 1)


def _tokenize(tokenizer: Any, prompts: list[str], device: torch.device) -> torch.Tensor:
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def encode_prompts(
    components: SDComponents,
    prompts: list[str],
    device: torch.device,
    *,
    geometry: Sequence[ImageGeometry] | None = None,
    resolution: int | None = None,
) -> Conditioning:
    """The UNet's text conditioning for prompts padded to the tokenizer's length, without gradients.

    SD 1.x/2.x: the text encoder's last hidden states. SDXL (as diffusers' SDXL pipeline and its
    ``train_text_to_image_lora_sdxl.py``): each encoder's penultimate hidden states concatenated
    on the width, the second encoder's pooled projection as ``text_embeds``, and ``time_ids``.

    Args:
        components: the base.
        prompts: one per image.
        device: where the result goes.
        geometry: SDXL: one entry per image (the size it was loaded at, where it was cropped);
            None: the generation default, each image at ``resolution`` uncropped.
        resolution: the square size the UNet sees (default: the base's native size).

    Raises:
        AdaptError: ``geometry`` does not have one entry per prompt.
    """
    if geometry is not None and len(geometry) != len(prompts):
        raise AdaptError(f"{len(geometry)} image sizes for {len(prompts)} prompts")
    with torch.no_grad():
        if components.family != SDXL:
            ids = _tokenize(components.tokenizer, prompts, device)
            return Conditioning(components.text_encoder(ids)[0])
        hidden, pooled = [], None
        for tokenizer, encoder in (
            (components.tokenizer, components.text_encoder),
            (components.tokenizer_2, components.text_encoder_2),
        ):
            out = encoder(_tokenize(tokenizer, prompts, device), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # the last encoder's: CLIPTextModelWithProjection's text_embeds
    size = resolution or default_resolution(components)
    if geometry is None:
        geometry = [ImageGeometry((size, size))] * len(prompts)
    time_ids = sdxl_time_ids(geometry, (size, size)).to(device)
    return Conditioning(torch.cat(hidden, dim=-1), pooled, time_ids)


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
        # A VAE cast to fp16/bf16 under mixed precision takes its pixels in its dtype; the
        # posterior sample and the latents are fp32 either way.
        dist = components.vae.encode(pixels.to(components.vae.dtype)).latent_dist
        mean, std = dist.mean.float(), dist.std.float()
        noise = torch.stack([torch.randn(mean.shape[1:], generator=g) for g in generators])
        latents = mean + std * noise.to(pixels.device)
    return latents * components.vae.config.scaling_factor
