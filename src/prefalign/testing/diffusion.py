"""A tiny random Stable Diffusion 1.x pipeline built in code, saved as a diffusers directory.

Like diffusers' ``get_dummy_components``: a seeded UNet2DConditionModel with two blocks, a
two-block AutoencoderKL (latents at half the image size), a two-layer CLIP text encoder over
``tiny_clip_tokenizer`` and SD's PNDM scheduler config. It generates a 32 px image in well under
a second on a CPU, so tests and the demo run the real training and generation code paths.
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefalign.testing.clip import TINY_WORDS, _tiny_vocab_and_merges, tiny_clip_tokenizer

# Stable Diffusion 1.x's noise schedule: the scheduler config of every SD 1.x checkpoint.
SD_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
)


def tiny_sd_components(seed: int = 0, *, cross_attention_dim: int = 32, block_out_channels=(8, 16)) -> dict:
    """Seeded tiny ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler``.

    Args:
        seed: seeds every random weight, so two calls build bit-identical models.
        cross_attention_dim: the text encoder's width, which the UNet's cross-attention reads.
            Two bases with different values are different architectures (adapters do not transfer).
        block_out_channels: the UNet's channel widths.
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab_size = len(_tiny_vocab_and_merges(TINY_WORDS)[0])
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=cross_attention_dim,
            intermediate_size=2 * cross_attention_dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tiny_clip_tokenizer(),
        "scheduler": PNDMScheduler(**SD_SCHEDULE),
    }


def save_tiny_sd(directory: str | Path, seed: int = 0, **kwargs) -> Path:
    """Save a tiny StableDiffusionPipeline directory (no safety checker) and return its path.

    The directory has the layout of a real SD 1.x checkpoint (``model_index.json``, ``unet/``,
    ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), so every command that takes
    ``--base SD_MODEL`` accepts it. ``kwargs`` go to :func:`tiny_sd_components`.
    """
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlogging

    dlogging.disable_progress_bar()
    pipe = StableDiffusionPipeline(
        **tiny_sd_components(seed, **kwargs),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    directory = Path(directory)
    pipe.save_pretrained(directory)
    return directory
