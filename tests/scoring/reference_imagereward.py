"""Independent float64 reference of the ORIGINAL ImageReward forward pass, for the conversion tests.

Written from THUDM/ImageReward's code, reading the raw ``ImageReward.pt`` key layout:

* ``models/BLIP/vit.py`` ``VisionTransformer``: patch conv, ``cls_token`` prepended,
  ``pos_embed`` added, pre-norm ``Block``s (``qkv`` packed as (3, heads, head_dim) along the
  output, softmax(q k^T * head_dim^-0.5) v, ``proj``; ``Mlp`` fc1 -> GELU -> fc2), final ``norm``,
  every LayerNorm with eps 1e-6; all tokens are returned.
* ``models/BLIP/med.py`` ``BertModel`` in ``multimodal`` mode: word + absolute position
  embeddings -> LayerNorm (no token types); post-norm layers of self-attention (padding masked
  with -10000 added to the scores, as ``get_extended_attention_mask``), cross-attention to the
  image tokens, GELU feed-forward; LayerNorm eps 1e-12; heads from ``med_config.json`` (12).
* ``ImageReward.py``: ``mlp`` (Linear at Sequential indices 0, 2, 4, 6, 7, no activations) on
  ``last_hidden_state[:, 0]``, then ``(r - 0.16717362830052426) / 1.0333394966054072``; prompts
  tokenised with ``padding="max_length", truncation=True, max_length=35``.

Nothing here imports prefalign.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

MEAN, STD = 0.16717362830052426, 1.0333394966054072
StateDict = dict[str, torch.Tensor]


def _ln(x, sd, prefix, eps):
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd[prefix + ".bias"], eps=eps)


def _lin(x, sd, prefix):
    return x @ sd[prefix + ".weight"].T + sd[prefix + ".bias"]


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _heads(x, heads):  # (b, n, d) -> (b, h, n, d/h)
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def _attend(q, k, v, heads, bias=None):
    q, k, v = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    out = torch.softmax(scores, -1) @ v
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def vit(sd: StateDict, pixels: torch.Tensor, heads: int) -> torch.Tensor:
    p = "blip.visual_encoder."
    w = sd[p + "patch_embed.proj.weight"]
    x = F.conv2d(pixels, w, sd[p + "patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    x = torch.cat([sd[p + "cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd[p + "pos_embed"]
    n = 0
    while f"{p}blocks.{n}.norm1.weight" in sd:
        b = f"{p}blocks.{n}."
        h = _ln(x, sd, b + "norm1", 1e-6)
        qkv = _lin(h, sd, b + "attn.qkv")
        bsz, tokens, _ = qkv.shape
        d = x.shape[-1]
        q, k, v = qkv.view(bsz, tokens, 3, d).unbind(2)
        x = x + _lin(_attend(q, k, v, heads), sd, b + "attn.proj")
        x = x + _lin(_gelu(_lin(_ln(x, sd, b + "norm2", 1e-6), sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
        n += 1
    return _ln(x, sd, p + "norm", 1e-6)


def text_encoder(sd: StateDict, ids, mask, image, heads: int) -> torch.Tensor:
    p = "blip.text_encoder."
    x = (
        sd[p + "embeddings.word_embeddings.weight"][ids]
        + sd[p + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    )
    x = _ln(x, sd, p + "embeddings.LayerNorm", 1e-12)
    bias = ((1.0 - mask.double()) * -10000.0)[:, None, None, :]
    n = 0
    while f"{p}encoder.layer.{n}.attention.self.query.weight" in sd:
        layer = f"{p}encoder.layer.{n}."
        for part, keys, b in (("attention", x, bias), ("crossattention", image, None)):
            a = layer + part
            ctx = _attend(
                _lin(x, sd, a + ".self.query"),
                _lin(keys, sd, a + ".self.key"),
                _lin(keys, sd, a + ".self.value"),
                heads,
                b,
            )
            x = _ln(_lin(ctx, sd, a + ".output.dense") + x, sd, a + ".output.LayerNorm", 1e-12)
        inter = _gelu(_lin(x, sd, layer + "intermediate.dense"))
        x = _ln(_lin(inter, sd, layer + "output.dense") + x, sd, layer + "output.LayerNorm", 1e-12)
        n += 1
    return x


def mlp(sd: StateDict, x: torch.Tensor) -> torch.Tensor:
    for i in (0, 2, 4, 6, 7):
        x = _lin(x, sd, f"mlp.layers.{i}")
    return x.squeeze(-1)


def scores(
    sd: StateDict, tokenizer, pixels: torch.Tensor, prompt: str, *, vision_heads: int, text_heads: int
):
    """ImageReward scores (float64) of preprocessed ``pixels`` against one prompt."""
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    enc = tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    image = vit(sd, pixels.double(), vision_heads)
    n = image.shape[0]
    out = text_encoder(sd, enc.input_ids.expand(n, -1), enc.attention_mask.expand(n, -1), image, text_heads)
    return (mlp(sd, out[:, 0]) - MEAN) / STD


# --------------------------------------------------------------------------------------------
# Random checkpoints in the original layout and a tiny BERT WordPiece tokenizer
# --------------------------------------------------------------------------------------------

WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "red",
    "blue",
    "green",
    "cat",
    "cats",
    "dog",
    "two",
    "three",
    "on",
    "and",
    "with",
    "image",
    "weird",
    "circle",
    "square",
]


def write_bert_tokenizer(directory: Path):
    """A tiny bert-base-uncased-like WordPiece tokenizer, plus BLIP's [DEC] and [ENC] tokens."""
    from transformers import BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *(f"##{c}" for c in chars)]
    (directory / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizer(str(directory / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(directory)
    blip = BertTokenizer.from_pretrained(directory)
    blip.add_special_tokens({"bos_token": "[DEC]"})
    blip.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return blip


def random_checkpoint(
    vocab_size: int,
    *,
    width: int = 128,
    text_width: int = 128,
    layers: int = 2,
    patch: int = 8,
    image_size: int = 32,
    max_positions: int = 40,
    seed: int = 0,
) -> StateDict:
    """A random ``ImageReward.pt`` state dict in the released key layout (with BLIP's leftovers)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    def ln(prefix, d):
        sd[prefix + ".weight"] = 1.0 + r(d, scale=0.1)
        sd[prefix + ".bias"] = r(d, scale=0.1)

    def lin(prefix, i, o):
        sd[prefix + ".weight"] = r(o, i, scale=1.0 / math.sqrt(i))
        sd[prefix + ".bias"] = r(o, scale=0.1)

    sd: StateDict = {}
    v = "blip.visual_encoder."
    # Small embeddings (variance ~1e-5), so that LayerNorm's eps (1e-6 here, not torch's 1e-5) shows.
    sd[v + "cls_token"] = r(1, 1, width, scale=0.003)
    sd[v + "pos_embed"] = r(1, (image_size // patch) ** 2 + 1, width, scale=0.003)
    sd[v + "patch_embed.proj.weight"] = r(width, 3, patch, patch, scale=0.001)
    sd[v + "patch_embed.proj.bias"] = r(width, scale=0.003)
    for n in range(layers):
        b = f"{v}blocks.{n}."
        ln(b + "norm1", width)
        lin(b + "attn.qkv", width, 3 * width)
        lin(b + "attn.proj", width, width)
        ln(b + "norm2", width)
        lin(b + "mlp.fc1", width, 4 * width)
        lin(b + "mlp.fc2", 4 * width, width)
    ln(v + "norm", width)
    t = "blip.text_encoder."
    sd[t + "embeddings.word_embeddings.weight"] = r(vocab_size, text_width, scale=0.5)
    sd[t + "embeddings.position_embeddings.weight"] = r(max_positions, text_width, scale=0.5)
    sd[t + "embeddings.position_ids"] = torch.arange(max_positions).expand(1, -1)
    ln(t + "embeddings.LayerNorm", text_width)
    for n in range(layers):
        layer = f"{t}encoder.layer.{n}."
        for part, kv in (("attention", text_width), ("crossattention", width)):
            lin(f"{layer}{part}.self.query", text_width, text_width)
            lin(f"{layer}{part}.self.key", kv, text_width)
            lin(f"{layer}{part}.self.value", kv, text_width)
            lin(f"{layer}{part}.output.dense", text_width, text_width)
            ln(f"{layer}{part}.output.LayerNorm", text_width)
        lin(layer + "intermediate.dense", text_width, 4 * text_width)
        lin(layer + "output.dense", 4 * text_width, text_width)
        ln(layer + "output.LayerNorm", text_width)
    lin("blip.vision_proj", width, 64)
    lin("blip.text_proj", text_width, 64)
    dims = [text_width, 1024, 128, 64, 16, 1]
    for i, (a, b) in zip((0, 2, 4, 6, 7), zip(dims[:-1], dims[1:])):
        lin(f"mlp.layers.{i}", a, b)
    return sd
