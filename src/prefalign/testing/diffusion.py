"""A tiny random Stable Diffusion 1.x pipeline built in code, saved as a diffusers directory.

Like diffusers' ``get_dummy_components``: a seeded UNet2DConditionModel with two blocks, a
two-block AutoencoderKL (latents at half the image size), a two-layer CLIP text encoder over
``tiny_clip_tokenizer`` and SD's PNDM scheduler config. It generates a 32 px image in well under
a second on a CPU, so tests and the demo run the real training and generation code paths.

``save_brightness_sd`` builds a variant on which a learnt preference can be seen: a VAE whose
weights carry brightness through latent channel 0 and a UNet pretrained briefly to denoise grey
images of random brightness (the Diffusion-DPO learning test).
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


def tiny_sd_components(
    seed: int = 0,
    *,
    cross_attention_dim: int = 32,
    block_out_channels=(8, 16),
    vae: str = "random",
) -> dict:
    """Seeded tiny ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler``.

    Args:
        seed: seeds every random weight, so two calls build bit-identical models.
        cross_attention_dim: the text encoder's width, which the UNet's cross-attention reads.
            Two bases with different values are different architectures (adapters do not transfer).
        block_out_channels: the UNet's channel widths.
        vae: ``random`` (seeded random weights, as diffusers' dummy components) or ``brightness``
            (the same architecture with weights set by :func:`make_brightness_vae`: latent channel 0
            carries the image's brightness both ways, so a preference for brighter images is
            learnable and measurable on decoded pixels).

    Raises:
        ValueError: an unknown ``vae``.
    """
    if vae not in ("random", "brightness"):
        raise ValueError(f"vae must be 'random' or 'brightness', got {vae!r}")
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import PNDMScheduler, UNet2DConditionModel
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
    autoencoder = _tiny_vae(seed)
    autoencoder = make_brightness_vae(autoencoder) if vae == "brightness" else autoencoder
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
        "vae": autoencoder.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tiny_clip_tokenizer(),
        "scheduler": PNDMScheduler(**SD_SCHEDULE),
    }


# Gain of the brightness VAE: a luminance L in [-1, 1] encodes to the scaled latent value
# BRIGHTNESS_GAIN * L (about the spread of the tiny UNet's samples, so they rarely clip).
BRIGHTNESS_GAIN = 4.0
_SMALL = 1e-6  # activations this small stay in GroupNorm's linear regime (its eps is 1e-6)


def make_brightness_vae(vae):
    """Set a tiny two-block ``AutoencoderKL``'s weights so brightness survives encode and decode.

    A random VAE decodes nearly one brightness whatever the latent (the GroupNorm before each
    output convolution removes the mean), so a preference for brighter images is neither visible
    nor learnable. Here every ResNet and attention block is the identity (its residual branch
    zeroed), the up/down samplers copy or average, and the luminance L = mean(R, G, B) in [-1, 1]
    travels as the pair (s·L, −s·L) with s tiny: the pair keeps each GroupNorm group's mean at 0,
    its values are far below √eps, so the norm only scales them, and SiLU(a) − SiLU(−a) = a undoes
    the activation exactly. The result: scaled latent channel 0 = ``BRIGHTNESS_GAIN`` x the 2x2
    average of L (channels 1-3 zero, posterior std e^-10), and decoding maps channel 0 back to a
    grey image of luminance latent / ``BRIGHTNESS_GAIN`` (the other channels are ignored). Encode
    then decode reproduces a 2x2-pooled grey version of the image; decoded brightness is linear in
    the mean of latent channel 0.

    Args:
        vae: an ``AutoencoderKL`` built as in :func:`tiny_sd_components` (blocks [4, 8],
            2 groups, 4 latent channels, one resolution step); changed in place.

    Returns:
        The same VAE.
    """
    enc, dec = vae.encoder, vae.decoder
    scale = vae.config.scaling_factor
    eps = enc.conv_norm_out.eps
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        for norm in [m for m in vae.modules() if isinstance(m, torch.nn.GroupNorm)]:
            norm.weight.fill_(1.0)
        # Encoder: RGB -> (s·L, -s·L) in channels 0 and 1.
        enc.conv_in.weight[0, :, 1, 1] = _SMALL / 3
        enc.conv_in.weight[1, :, 1, 1] = -_SMALL / 3
        enc.down_blocks[0].downsamplers[0].conv.weight[[0, 1], [0, 1], 0:2, 0:2] = 0.25  # 2x2 mean
        enc.down_blocks[1].resnets[0].conv_shortcut.weight[[0, 1], [0, 1], 0, 0] = 1.0
        # GroupNorm divides by √eps (the values are far smaller); its weight undoes that.
        enc.conv_norm_out.weight[[0, 1]] = eps**0.5 / _SMALL
        # SiLU(L) - SiLU(-L) = L, times the gain, into the posterior mean's channel 0.
        gain = BRIGHTNESS_GAIN / scale
        enc.conv_out.weight[0, 0, 1, 1] = gain
        enc.conv_out.weight[0, 1, 1, 1] = -gain
        enc.conv_out.bias[4:] = -20.0  # log-variance: std e^-10, a practically fixed encoding
        vae.quant_conv.weight[range(8), range(8), 0, 0] = 1.0
        # Decoder: latent channel 0 -> (s·z, -s·z) -> grey pixels of luminance z·scale / gain.
        vae.post_quant_conv.weight[range(4), range(4), 0, 0] = 1.0
        dec.conv_in.weight[0, 0, 1, 1] = _SMALL
        dec.conv_in.weight[1, 0, 1, 1] = -_SMALL
        dec.up_blocks[0].upsamplers[0].conv.weight[[0, 1], [0, 1], 1, 1] = 1.0
        dec.up_blocks[1].resnets[0].conv_shortcut.weight[[0, 1], [0, 1], 0, 0] = 1.0
        dec.conv_norm_out.weight[[0, 1]] = eps**0.5 / _SMALL
        dec.conv_out.weight[:, 0, 1, 1] = scale / BRIGHTNESS_GAIN
        dec.conv_out.weight[:, 1, 1, 1] = -scale / BRIGHTNESS_GAIN
    return vae


def pretrain_brightness_world(
    components: dict,
    *,
    steps: int = 60,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    latent_size: int = 8,
    prompts: tuple[str, ...] = ("a cat", "a dog", "a red car", "a tree"),
    seed: int = 0,
) -> list[float]:
    """Teach a tiny UNet to denoise a world of grey images of random brightness, in place.

    A preference method such as Diffusion-DPO moves a model relative to its reference; a random
    UNet is no denoiser, so which way it moves is arbitrary. A few dozen steps of the ordinary
    ε-prediction loss (SD's noise schedule) on latents of this world make the base a rough
    denoiser whose samples vary in brightness from seed to seed, as a real base varies in content.
    The world, in the latents of :func:`make_brightness_vae`: luminance L = b + 0.1·n with one
    b ~ U(−0.5, 0.5) per image and white noise n per latent pixel; channel 0 = gain x L, the
    other channels 0; prompts drawn uniformly from ``prompts`` (they carry no information).

    Args:
        components: from :func:`tiny_sd_components` with ``vae="brightness"``; the UNet is trained.
        steps, batch_size, learning_rate: AdamW steps, latents per step, learning rate (ours).
        latent_size: latent height and width (8: 16 px images).
        seed: seeds the data, noise and timesteps.

    Returns:
        The loss of each step.
    """
    from diffusers import DDPMScheduler

    unet, tokenizer, text_encoder = components["unet"], components["tokenizer"], components["text_encoder"]
    schedule = DDPMScheduler(
        **{
            k: v
            for k, v in SD_SCHEDULE.items()
            if k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")
        }
    )
    ids = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        text = text_encoder(ids)[0]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(unet.parameters(), lr=learning_rate, weight_decay=0.0)
    losses = []
    unet.train()
    for _ in range(steps):
        brightness = torch.rand(batch_size, 1, 1, 1, generator=g) - 0.5
        luminance = brightness + 0.1 * torch.randn(batch_size, 1, latent_size, latent_size, generator=g)
        latents = torch.zeros(batch_size, 4, latent_size, latent_size)
        latents[:, :1] = BRIGHTNESS_GAIN * luminance
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, schedule.config.num_train_timesteps, (batch_size,), generator=g)
        cond = text[torch.randint(0, len(prompts), (batch_size,), generator=g)]
        loss = (unet(schedule.add_noise(latents, noise, t), t, cond).sample - noise).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    unet.eval()
    return losses


def save_brightness_sd(directory: str | Path, seed: int = 0, *, steps: int = 60) -> Path:
    """Save a tiny SD whose VAE carries brightness and whose UNet is pretrained on the brightness
    world (:func:`pretrain_brightness_world`): the base on which a learnt preference for brighter
    (or darker) images shows in decoded pixels. Generate at 16 px (8 x 8 latents)."""
    components = tiny_sd_components(seed, vae="brightness")
    pretrain_brightness_world(components, steps=steps, seed=seed)
    return _save_pipeline(components, directory)


def save_tiny_sd(directory: str | Path, seed: int = 0, **kwargs) -> Path:
    """Save a tiny StableDiffusionPipeline directory (no safety checker) and return its path.

    The directory has the layout of a real SD 1.x checkpoint (``model_index.json``, ``unet/``,
    ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), so every command that takes
    ``--base SD_MODEL`` accepts it. ``kwargs`` go to :func:`tiny_sd_components`.
    """
    return _save_pipeline(tiny_sd_components(seed, **kwargs), directory)


def _save_pipeline(components: dict, directory: str | Path) -> Path:
    from prefalign.adapt.diffusers_import import bind_pil_image_processors

    bind_pil_image_processors()  # no torchvision warning for processors we never use
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlogging

    dlogging.disable_progress_bar()
    pipe = StableDiffusionPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    directory = Path(directory)
    pipe.save_pretrained(directory)
    from prefalign.files import share_written

    share_written(directory)  # safetensors writes 0600 (the demo's models are user-facing)
    return directory


# Stable Diffusion XL's noise schedule as its base checkpoint's scheduler config holds it (an
# EulerDiscreteScheduler over the same scaled-linear betas as SD 1.x; the trainers read it as DDPM).
SDXL_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    timestep_spacing="leading",
)
# The micro-conditioning width of each of the six time ids (SDXL: 256; tiny here).
TINY_SDXL_TIME_EMBED_DIM = 8


def tiny_sdxl_components(seed: int = 0, *, text_width: int = 16, block_out_channels=(8, 16)) -> dict:
    """Seeded tiny Stable Diffusion XL components, as diffusers' SDXL pipeline tests build them.

    The UNet has SDXL's conditioning: ``addition_embed_type="text_time"`` (the pooled text
    embedding of the second encoder plus six Fourier-embedded time ids: original size, crop
    top-left, target size) and cross-attention over both encoders' penultimate hidden states
    concatenated (``2 * text_width`` wide). The second encoder is a ``CLIPTextModelWithProjection``.

    Args:
        seed: seeds every random weight, so two calls build bit-identical models.
        text_width: each text encoder's width (and the second one's projection width).
        block_out_channels: the UNet's channel widths.
    """
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

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
        attention_head_dim=2,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TINY_SDXL_TIME_EMBED_DIM + text_width,
        cross_attention_dim=2 * text_width,
        norm_num_groups=4,
    )
    vae = _tiny_vae(seed, scaling_factor=0.13025)  # SDXL's VAE scaling factor
    text_config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=text_width,
        intermediate_size=2 * text_width,
        projection_dim=text_width,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "text_encoder_2": text_encoder_2.eval(),
        "tokenizer": tiny_clip_tokenizer(),
        "tokenizer_2": tiny_clip_tokenizer(),
        "scheduler": EulerDiscreteScheduler(**SDXL_SCHEDULE),
    }


def save_tiny_sdxl(directory: str | Path, seed: int = 0, **kwargs) -> Path:
    """Save a tiny StableDiffusionXLPipeline directory and return its path.

    The layout is a real SDXL base's (``model_index.json``, ``unet/``, ``vae/``,
    ``text_encoder/``, ``text_encoder_2/``, ``tokenizer/``, ``tokenizer_2/``, ``scheduler/``), so
    ``StableDiffusionXLPipeline.from_pretrained`` and every ``--base`` option load it. 32 px
    images, 16 px latents. ``kwargs`` go to :func:`tiny_sdxl_components`.
    """
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import logging as dlogging

    dlogging.disable_progress_bar()
    pipe = StableDiffusionXLPipeline(**tiny_sdxl_components(seed, **kwargs), add_watermarker=False)
    directory = Path(directory)
    pipe.save_pretrained(directory)
    from prefalign.files import share_written

    share_written(directory)  # safetensors writes 0600 (the demo's models are user-facing)
    return directory


def _tiny_vae(seed: int, **extra):
    """The tiny 2-block VAE (4 latent channels, 32 px) of every tiny base, seeded; ``extra`` goes
    to ``AutoencoderKL`` (SDXL's scaling factor)."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
        **extra,
    )
