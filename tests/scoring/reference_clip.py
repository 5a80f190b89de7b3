"""Independent reference forward passes of the ORIGINAL checkpoints, for the conversion tests.

Everything here reads a raw state dict in the original key layout and computes, in float64 with
plain tensor ops, what the original code computes:

* OpenAI CLIP (github.com/openai/CLIP, ``clip/model.py``): ``VisionTransformer``,
  ``Transformer``/``ResidualAttentionBlock`` (``nn.MultiheadAttention`` with packed
  ``in_proj_weight``), ``QuickGELU``, ``CLIP.encode_image`` / ``encode_text`` (EOT pooling at
  ``text.argmax(-1)``). Heads are ``width // 64`` on both towers (``build_model``).
* open_clip (mlfoundations/open_clip, ``transformer.py``, ``model.py``) as used by HPS v2: the
  same keys and blocks, exact (erf) GELU, heads ``width // head_width``; ViT-H-14 has a vision
  head width of 80 (1280 / 16) and text width 1024 with 16 heads.
* The LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor,
  ``simple_inference.py``): five ``Linear`` layers without activations on the L2-normalised
  CLIP image embedding.

Plus the original preprocessing arithmetic (open_clip ``ResizeMaxSize`` and torchvision
``Resize`` + ``CenterCrop`` as OpenAI CLIP uses them) and builders of random checkpoints in
the original layouts. Nothing here imports prefalign: it is the yardstick, not the thing
measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LN_EPS = 1e-5

StateDict = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's ``QuickGELU``."""
    return x * torch.sigmoid(1.702 * x)


def exact_gelu(x: torch.Tensor) -> torch.Tensor:
    """``nn.GELU()`` (open_clip's default): the erf form, no tanh approximation."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": exact_gelu}


# --------------------------------------------------------------------------------------------
# Building blocks, straight from the raw state dict
# --------------------------------------------------------------------------------------------


def _f64(sd: StateDict) -> StateDict:
    return {k: v.to(torch.float64) if v.is_floating_point() else v for k, v in sd.items()}


def _layer_norm(x: torch.Tensor, sd: StateDict, prefix: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=LN_EPS)


def _linear(x: torch.Tensor, sd: StateDict, prefix: str) -> torch.Tensor:
    # nn.Linear stores weight as (out, in)
    return x @ sd[f"{prefix}.weight"].T + sd[f"{prefix}.bias"]


def _attention(x: torch.Tensor, sd: StateDict, prefix: str, heads: int, causal: bool) -> torch.Tensor:
    """``nn.MultiheadAttention(x, x, x)`` with a packed ``in_proj``; ``x`` is (batch, seq, width)."""
    n, length, width = x.shape
    if width % heads:
        raise ValueError(f"width {width} is not divisible by {heads} heads")
    head_dim = width // heads
    qkv = x @ sd[f"{prefix}.in_proj_weight"].T + sd[f"{prefix}.in_proj_bias"]
    q, k, v = qkv.split(width, dim=-1)  # rows 0:w are q, w:2w are k, 2w:3w are v

    def split_heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n, length, heads, head_dim).transpose(1, 2)  # (n, heads, seq, head_dim)

    q, k, v = split_heads(q), split_heads(k), split_heads(v)
    logits = (q * head_dim**-0.5) @ k.transpose(-2, -1)
    if causal:
        # build_attention_mask: -inf strictly above the diagonal
        mask = torch.full((length, length), float("-inf"), dtype=x.dtype).triu_(1)
        logits = logits + mask
    out = logits.softmax(dim=-1) @ v
    out = out.transpose(1, 2).reshape(n, length, width)
    return _linear(out, sd, f"{prefix}.out_proj")


def _residual_block(x, sd, prefix, heads, act, causal):
    x = x + _attention(_layer_norm(x, sd, f"{prefix}.ln_1"), sd, f"{prefix}.attn", heads, causal)
    h = _linear(_layer_norm(x, sd, f"{prefix}.ln_2"), sd, f"{prefix}.mlp.c_fc")
    x = x + _linear(act(h), sd, f"{prefix}.mlp.c_proj")
    return x


def num_layers(sd: StateDict, prefix: str) -> int:
    """Number of residual blocks under ``{prefix}transformer.resblocks.``."""
    head = f"{prefix}transformer.resblocks."
    return len({k[len(head) :].split(".")[0] for k in sd if k.startswith(head)})


def _transformer(x, sd, prefix, heads, act, causal):
    for i in range(num_layers(sd, prefix)):
        x = _residual_block(x, sd, f"{prefix}transformer.resblocks.{i}", heads, act, causal)
    return x


# --------------------------------------------------------------------------------------------
# The two towers
# --------------------------------------------------------------------------------------------


def encode_image(sd: StateDict, pixels: torch.Tensor, *, heads: int, act: str) -> torch.Tensor:
    """``CLIP.encode_image`` of a ViT CLIP: (n, 3, H, W) normalised pixels -> (n, embed_dim)."""
    sd = _f64(sd)
    fn = ACTIVATIONS[act]
    pixels = pixels.to(torch.float64)
    conv = sd["visual.conv1.weight"]  # (width, 3, patch, patch), no bias
    patch = conv.shape[-1]
    x = F.conv2d(pixels, conv, stride=patch)  # (n, width, grid, grid)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (n, grid**2, width)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = _layer_norm(x, sd, "visual.ln_pre")
    x = _transformer(x, sd, "visual.", heads, fn, causal=False)
    x = _layer_norm(x[:, 0, :], sd, "visual.ln_post")
    return x @ sd["visual.proj"]


def encode_text(sd: StateDict, tokens: torch.Tensor, *, heads: int, act: str) -> torch.Tensor:
    """``CLIP.encode_text``: (n, context) token ids -> (n, embed_dim), pooled at argmax(ids)."""
    sd = _f64(sd)
    fn = ACTIVATIONS[act]
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    x = _transformer(x, sd, "", heads, fn, causal=True)
    x = _layer_norm(x, sd, "ln_final")
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    return x @ sd["text_projection"]


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def cosine(sd: StateDict, pixels: torch.Tensor, tokens: torch.Tensor, *, vision_heads, text_heads, act):
    """Cosine similarity of every image in ``pixels`` with the single prompt in ``tokens`` (1, ctx)."""
    img = l2_normalise(encode_image(sd, pixels, heads=vision_heads, act=act))
    txt = l2_normalise(encode_text(sd, tokens, heads=text_heads, act=act))
    return (img @ txt.T)[:, 0]


def aesthetic_mlp(sd: StateDict, embedding: torch.Tensor) -> torch.Tensor:
    """The LAION improved aesthetic predictor on (n, d) image embeddings -> (n,).

    ``simple_inference.py`` L2-normalises the CLIP image embedding first (``normalized``), then
    applies ``layers`` = Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear —
    dropout is the identity at inference and there is no activation anywhere.
    """
    sd = _f64(sd)
    x = l2_normalise(embedding.to(torch.float64))
    for i in (0, 2, 4, 6, 7):
        x = _linear(x, sd, f"layers.{i}")
    return x[:, 0]


def aesthetic_relu_mlp(sd: StateDict, embedding: torch.Tensor) -> torch.Tensor:
    """The ReLU variant of the aesthetic predictor (``ava+logos-l14-reluMSE.pth``) -> (n,).

    ``layers`` = Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear,
    ReLU, Linear (the released MLP with its commented ``nn.ReLU()`` lines active): a ReLU after
    every Linear but the last.
    """
    sd = _f64(sd)
    x = l2_normalise(embedding.to(torch.float64))
    linear = (0, 3, 6, 9, 11)
    for i in linear:
        x = _linear(x, sd, f"layers.{i}")
        if i != linear[-1]:
            x = torch.clamp(x, min=0.0)
    return x[:, 0]


# --------------------------------------------------------------------------------------------
# Tokens and pixels
# --------------------------------------------------------------------------------------------


def tokenize(tokenizer, prompt: str, context_length: int = 77) -> torch.Tensor:
    """``clip.tokenize``: [SOT] + BPE + [EOT], zero-padded to the context length -> (1, ctx)."""
    ids = tokenizer(prompt)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id, ids
    if len(ids) > context_length:
        raise ValueError(f"prompt {prompt!r} is too long for context length {context_length}")
    out = torch.zeros(1, context_length, dtype=torch.long)
    out[0, : len(ids)] = torch.tensor(ids)
    return out


def to_tensor(img: Image.Image, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """``ToTensor`` + ``Normalize`` of an RGB image -> (3, H, W) float64."""
    arr = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0).permute(2, 0, 1)
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.tensor(std, dtype=torch.float64)[:, None, None]
    return (arr - m) / s


def resize_max_pad(img: Image.Image, size: int) -> Image.Image:
    """open_clip ``ResizeMaxSize`` (HPS v2): longest side to ``size``, centred on black."""
    w, h = img.size
    scale = size / max(w, h)
    new_w, new_h = round(w * scale), round(h * scale)  # Python round: half to even
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size, BICUBIC)`` + ``CenterCrop(size)`` (OpenAI CLIP's ``_transform``)."""
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    resized = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = round((new_h - size) / 2.0)  # torchvision: int(round(x / 2.0))
    left = round((new_w - size) / 2.0)
    return resized.crop((left, top, left + size, top + size))


def pixels(images: Sequence[Image.Image], mode: str | None, size: int) -> torch.Tensor:
    """Preprocess like the original; ``mode=None`` requires images of exactly ``size``."""
    out = []
    for img in images:
        if mode == "pad":
            img = resize_max_pad(img, size)
        elif mode == "center-crop":
            img = resize_center_crop(img, size)
        else:
            assert img.size == (size, size), img.size
        out.append(to_tensor(img))
    return torch.stack(out)


def random_images(n: int, size: int | tuple[int, int], seed: int) -> list[Image.Image]:
    """Random uint8 RGB images; ``size`` is ``s`` (square) or ``(width, height)``."""
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Random checkpoints in the original layouts
# --------------------------------------------------------------------------------------------


def _block_params(g: torch.Generator, prefix: str, width: int, mlp: int) -> StateDict:
    def normal(*shape, std):
        return torch.randn(*shape, generator=g) * std

    return {
        f"{prefix}.attn.in_proj_weight": normal(3 * width, width, std=1.5 * width**-0.5),
        f"{prefix}.attn.in_proj_bias": normal(3 * width, std=0.05),
        f"{prefix}.attn.out_proj.weight": normal(width, width, std=width**-0.5),
        f"{prefix}.attn.out_proj.bias": normal(width, std=0.05),
        f"{prefix}.ln_1.weight": 1 + normal(width, std=0.1),
        f"{prefix}.ln_1.bias": normal(width, std=0.1),
        f"{prefix}.mlp.c_fc.weight": normal(mlp, width, std=2 * width**-0.5),
        f"{prefix}.mlp.c_fc.bias": normal(mlp, std=0.1),
        f"{prefix}.mlp.c_proj.weight": normal(width, mlp, std=mlp**-0.5),
        f"{prefix}.mlp.c_proj.bias": normal(width, std=0.05),
        f"{prefix}.ln_2.weight": 1 + normal(width, std=0.1),
        f"{prefix}.ln_2.bias": normal(width, std=0.1),
    }


def random_clip_state_dict(
    *,
    seed: int = 0,
    vocab_size: int,
    embed_dim: int = 64,
    image_size: int = 32,
    patch_size: int = 8,
    vision_width: int = 128,
    vision_layers: int = 2,
    vision_mlp: int | None = None,
    text_width: int = 128,
    text_layers: int = 2,
    text_mlp: int | None = None,
    context_length: int = 77,
) -> StateDict:
    """A random ViT CLIP in the OpenAI layout, which open_clip's ``CLIP`` shares key for key.

    Keys: ``visual.{conv1.weight, class_embedding, positional_embedding, ln_pre.*,
    transformer.resblocks.N.*, ln_post.*, proj}``, ``token_embedding.weight``,
    ``positional_embedding``, ``transformer.resblocks.N.*``, ``ln_final.*``,
    ``text_projection``, ``logit_scale``. No ``attn_mask`` (not a parameter or persistent
    buffer in either original).
    """
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, std):
        return torch.randn(*shape, generator=g) * std

    vision_mlp = vision_mlp or 4 * vision_width
    text_mlp = text_mlp or 4 * text_width
    grid = image_size // patch_size
    vw, tw = vision_width, text_width
    sd: StateDict = {
        "visual.conv1.weight": normal(vw, 3, patch_size, patch_size, std=(3 * patch_size**2) ** -0.5),
        "visual.class_embedding": normal(vw, std=0.5),
        "visual.positional_embedding": normal(grid**2 + 1, vw, std=0.5),
        "visual.ln_pre.weight": 1 + normal(vw, std=0.1),
        "visual.ln_pre.bias": normal(vw, std=0.1),
    }
    for i in range(vision_layers):
        sd.update(_block_params(g, f"visual.transformer.resblocks.{i}", vw, vision_mlp))
    sd.update(
        {
            "visual.ln_post.weight": 1 + normal(vw, std=0.1),
            "visual.ln_post.bias": normal(vw, std=0.1),
            "visual.proj": normal(vw, embed_dim, std=vw**-0.5),
            "token_embedding.weight": normal(vocab_size, tw, std=0.5),
            "positional_embedding": normal(context_length, tw, std=0.5),
        }
    )
    for i in range(text_layers):
        sd.update(_block_params(g, f"transformer.resblocks.{i}", tw, text_mlp))
    sd.update(
        {
            "ln_final.weight": 1 + normal(tw, std=0.1),
            "ln_final.bias": normal(tw, std=0.1),
            "text_projection": normal(tw, embed_dim, std=tw**-0.5),
            "logit_scale": torch.tensor(math.log(1 / 0.07)),
        }
    )
    return sd


def random_resnet_clip_state_dict(*, seed: int = 0, vocab_size: int) -> StateDict:
    """An OpenAI ``ModifiedResNet`` CLIP (RN50-style keys ``visual.layer1...``), tiny."""
    g = torch.Generator().manual_seed(seed)
    text = {
        k: v
        for k, v in random_clip_state_dict(seed=seed, vocab_size=vocab_size, text_layers=1).items()
        if not k.startswith("visual.")
    }
    sd: StateDict = {}
    for name, shape in {
        "visual.conv1.weight": (4, 3, 3, 3),
        "visual.conv2.weight": (4, 4, 3, 3),
        "visual.conv3.weight": (8, 4, 3, 3),
        "visual.layer1.0.conv1.weight": (8, 8, 1, 1),
        "visual.layer1.0.conv2.weight": (8, 8, 3, 3),
        "visual.layer1.0.conv3.weight": (32, 8, 1, 1),
        "visual.layer1.0.downsample.0.weight": (32, 8, 1, 1),
        "visual.attnpool.positional_embedding": (2, 32),
        "visual.attnpool.q_proj.weight": (32, 32),
        "visual.attnpool.k_proj.weight": (32, 32),
        "visual.attnpool.v_proj.weight": (32, 32),
        "visual.attnpool.c_proj.weight": (64, 32),
    }.items():
        sd[name] = torch.randn(*shape, generator=g) * 0.1
    for bn in ("visual.bn1", "visual.bn2", "visual.bn3", "visual.layer1.0.bn1"):
        sd[f"{bn}.weight"] = torch.ones(sd["visual.conv1.weight"].shape[0] if bn == "visual.bn1" else 8)
        sd[f"{bn}.bias"] = torch.zeros_like(sd[f"{bn}.weight"])
        sd[f"{bn}.running_mean"] = torch.zeros_like(sd[f"{bn}.weight"])
        sd[f"{bn}.running_var"] = torch.ones_like(sd[f"{bn}.weight"])
        sd[f"{bn}.num_batches_tracked"] = torch.tensor(0)
    sd.update(text)
    return sd


def random_aesthetic_state_dict(*, seed: int = 0, input_dim: int, relu: bool = False) -> StateDict:
    """The improved-aesthetic-predictor ``MLP.layers`` state dict (``layers.0/2/4/6/7``, or
    ``layers.0/3/6/9/11`` for the ReLU variant)."""
    g = torch.Generator().manual_seed(seed)
    indices = (0, 3, 6, 9, 11) if relu else (0, 2, 4, 6, 7)
    dims = ((input_dim, 1024), (1024, 128), (128, 64), (64, 16), (16, 1))
    shapes = dict(zip(indices, dims))
    sd: StateDict = {}
    for idx, (d_in, d_out) in shapes.items():
        sd[f"layers.{idx}.weight"] = torch.randn(d_out, d_in, generator=g) * d_in**-0.5
        sd[f"layers.{idx}.bias"] = torch.randn(d_out, generator=g) * 0.1
    return sd


def save_openai(sd: StateDict, path: Path, *, wrap: bool) -> Path:
    """HPS v1's ``hpc.pt``: ``torch.save({'state_dict': sd})``; or a bare state dict."""
    torch.save({"state_dict": sd} if wrap else sd, path)
    return path


def save_open_clip(sd: StateDict, path: Path, *, ddp: bool = True, extras: dict | None = None) -> Path:
    """An open_clip training checkpoint: ``{'state_dict': model.state_dict(), ...}``.

    With ``ddp`` every key carries the ``module.`` prefix of a ``DistributedDataParallel`` save.
    """
    state = {f"module.{k}" if ddp else k: v for k, v in sd.items()}
    torch.save({**(extras or {}), "state_dict": state}, path)
    return path


# --------------------------------------------------------------------------------------------
# Hugging Face CLIPModel -> OpenAI layout (only to check this reference against transformers)
# --------------------------------------------------------------------------------------------


def hf_clip_to_openai_layout(hf: StateDict) -> StateDict:
    """Rename a Hugging Face ``CLIPModel`` state dict into OpenAI CLIP's keys.

    The reverse of what ``convert`` does; used only to validate this reference against
    transformers' CLIP on the same weights, never to test prefalign.
    """
    out: StateDict = {}
    towers = (("vision_model", "visual."), ("text_model", ""))
    for tower, dst in towers:
        n = len({k.split(".")[3] for k in hf if k.startswith(f"{tower}.encoder.layers.")})
        for i in range(n):
            s, d = f"{tower}.encoder.layers.{i}", f"{dst}transformer.resblocks.{i}"
            for p in ("weight", "bias"):
                out[f"{d}.attn.in_proj_{p}"] = torch.cat(
                    [hf[f"{s}.self_attn.{x}_proj.{p}"] for x in ("q", "k", "v")], dim=0
                )
                out[f"{d}.attn.out_proj.{p}"] = hf[f"{s}.self_attn.out_proj.{p}"]
                out[f"{d}.ln_1.{p}"] = hf[f"{s}.layer_norm1.{p}"]
                out[f"{d}.ln_2.{p}"] = hf[f"{s}.layer_norm2.{p}"]
                out[f"{d}.mlp.c_fc.{p}"] = hf[f"{s}.mlp.fc1.{p}"]
                out[f"{d}.mlp.c_proj.{p}"] = hf[f"{s}.mlp.fc2.{p}"]
    for p in ("weight", "bias"):
        out[f"visual.ln_pre.{p}"] = hf[f"vision_model.pre_layrnorm.{p}"]
        out[f"visual.ln_post.{p}"] = hf[f"vision_model.post_layernorm.{p}"]
        out[f"ln_final.{p}"] = hf[f"text_model.final_layer_norm.{p}"]
    out["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"]
    out["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"]
    out["visual.proj"] = hf["visual_projection.weight"].T
    out["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    out["text_projection"] = hf["text_projection.weight"].T
    out["logit_scale"] = hf["logit_scale"]
    return out
