"""A tiny Stable Diffusion 1.x pipeline as ONE checkpoint file in the original (CompVis/LDM) layout.

AUTOMATIC1111 and ComfyUI keep Stable Diffusion as a single ``.safetensors``/``.ckpt`` with the
original key names (``model.diffusion_model.input_blocks...``, ``first_stage_model.encoder.down...``,
``cond_stage_model.transformer.text_model...``); diffusers reads it with ``from_single_file``.
:func:`save_single_file_checkpoint` writes a saved diffusers directory in that layout, and checks
itself against diffusers' own converters (``diffusers.loaders.single_file_utils``): converting the
written file back must give every tensor of the directory, bit for bit, or it raises.

``from_single_file`` takes the component configs of the detected model type (SD 1.x:
``stable-diffusion-v1-5/stable-diffusion-v1-5``) from the hub or its cache;
:func:`cache_configs_as_hub_repo` puts the tiny directory's configs into a hub cache under that id,
as a first online run leaves the real ones, so the offline path is the user's path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

SD1_CONFIG_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # diffusers' default for SD 1.x files
UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX = (
    "model.diffusion_model.",
    "first_stage_model.",
    "cond_stage_model.transformer.",
)
# diffusers resnet names -> LDM ResBlock names (the inverse of diffusers' update_unet_resnet_ldm_to_diffusers)
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_first(rest: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict under LDM names (without the prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    per = config["layers_per_block"] + 1  # LDM blocks per level: the resnets, then the down/upsampler
    with_attention = {("up", i) for i, t in enumerate(config["up_block_types"]) if "CrossAttn" in t}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key in top:
            new = top[key]
        elif parts[0] in ("down_blocks", "up_blocks"):
            block, kind = int(parts[1]), parts[2]
            down = parts[0] == "down_blocks"
            if kind in ("resnets", "attentions"):
                layer = int(parts[3])
                index = block * per + layer + 1 if down else block * per + layer
                slot = "0" if kind == "resnets" else "1"
                rest = ".".join(parts[4:])
                if kind == "resnets":
                    rest = _rename_first(rest, _UNET_RESNET)
                new = f"{'input' if down else 'output'}_blocks.{index}.{slot}.{rest}"
            else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                tail = ".".join(parts[5:])
                if down:
                    new = f"input_blocks.{block * per + per}.0.op.{tail}"
                else:
                    up_slot = 2 if ("up", block) in with_attention else 1
                    new = f"output_blocks.{block * per + per - 1}.{up_slot}.conv.{tail}"
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{2 * index}.{_rename_first(rest, _UNET_RESNET)}"
            else:
                new = f"middle_block.1.{rest}"
        else:
            raise ValueError(f"no LDM name for UNet key {key}")
        out[new] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict under LDM names (without the prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n_up = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]
        if key in top:
            new = top[key]
        elif parts[1] in ("down_blocks", "up_blocks"):
            block = int(parts[2])
            level = block if parts[1] == "down_blocks" else n_up - 1 - block
            name = "down" if parts[1] == "down_blocks" else "up"
            if parts[3] == "resnets":
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{name}.{level}.block.{parts[4]}.{rest}"
            else:
                sampler = "downsample" if name == "down" else "upsample"
                new = f"{side}.{name}.{level}.{sampler}.{'.'.join(parts[5:])}"
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
            else:
                rest = _rename_first(".".join(parts[4:]), _VAE_ATTENTION)
                new = f"{side}.mid.attn_1.{rest}"
                if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                    value = value[:, :, None, None]
        else:
            raise ValueError(f"no LDM name for VAE key {key}")
        out[new] = value
    return out


def _with_text_model(key: str) -> str:
    return key if key.startswith("text_model.") else "text_model." + key


def save_single_file_checkpoint(sd_dir: str | Path, path: str | Path) -> Path:
    """Write the diffusers SD 1.x directory ``sd_dir`` as one LDM-layout ``.safetensors`` file.

    Raises:
        AssertionError: diffusers' own converters do not read the file back into the same tensors.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    sd_dir = Path(sd_dir)
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae")
    text = CLIPTextModel.from_pretrained(sd_dir, subfolder="text_encoder")
    parts = {
        "unet": (UNET_PREFIX, unet.state_dict(), unet_to_ldm(unet.state_dict(), unet.config)),
        "vae": (VAE_PREFIX, vae.state_dict(), vae_to_ldm(vae.state_dict(), vae.config)),
        # original checkpoints say text_model.*; transformers >= 5.6 flattens CLIPTextModel's own names
        "text": (
            TEXT_PREFIX,
            text.state_dict(),
            {_with_text_model(k): v for k, v in text.state_dict().items()},
        ),
    }
    checkpoint = {
        prefix + k: v.detach().contiguous() for prefix, _, ldm in parts.values() for k, v in ldm.items()
    }
    # the round trip through diffusers' own converters must give back every tensor
    back = {
        "unet": convert_ldm_unet_checkpoint(checkpoint, dict(unet.config)),
        "vae": convert_ldm_vae_checkpoint(checkpoint, dict(vae.config)),
        "text": {
            k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(checkpoint).items()
        },
    }
    for name, (_, original, _) in parts.items():
        got = back[name]
        if name == "text":
            original = {k.removeprefix("text_model."): v for k, v in original.items()}
        assert set(got) == set(original), f"{name}: {sorted(set(got) ^ set(original))[:5]}"
        for k, v in original.items():
            assert torch.equal(got[k].reshape(v.shape), v), f"{name}: {k} differs after the round trip"
    path = Path(path)
    save_file(checkpoint, path)
    return path


def cache_configs_as_hub_repo(
    sd_dir: str | Path, cache_dir: str | Path, repo_id: str = SD1_CONFIG_REPO
) -> Path:
    """Put ``sd_dir``'s configs and tokenizer (no weights) into a hub cache as ``repo_id``'s snapshot.

    The layout huggingface_hub writes (``models--ORG--NAME/refs/main`` naming a snapshot), holding
    what ``from_single_file`` fetches (``*.json``, ``*.txt``). Returns the snapshot directory.
    """
    sd_dir = Path(sd_dir)
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    for f in sd_dir.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".txt"):
            target = snapshot / f.relative_to(sd_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
