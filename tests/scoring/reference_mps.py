"""Independent float64 reference of the ORIGINAL MPS forward pass, for the conversion tests.

Written from Kwai-Kolors/MPS: ``trainer/models/clip_model.py`` (``XCLIPModel``: projected
tokens of ``vision_model(...)[0]`` — before ``post_layernorm`` — and of the text model's last
hidden state; the text embedding is the projected pooled token), ``cross_modeling.py``
(``Cross_model``: ``Residual(CrossAttention(parallel_ff=True))`` then
``Residual(ParallelTransformerBlock)`` per layer; LayerNorm without bias; multi-query attention
with one key/value head; rotary positions on queries and keys; SwiGLU) and
``eval_overall_mps_on_hpdv2.py`` (``infer_one_sample``: prompt and condition padded to 77
tokens, mask = sim / sim.max() > 0.3, score = logit_scale.exp() * text @ image).

The CLIP towers reuse ``reference_clip`` (OpenAI-layout float64 CLIP) on the HF weights renamed
by ``hf_clip_to_openai_layout``. Nothing here imports prefalign.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import reference_clip as rc

CONDITION = (
    "light, color, clarity, tone, style, ambiance, artistry, shape, face, hair, hands, limbs, "
    "structure, instance, texture, quantity, attributes, position, number, location, word, things."
)


def _ln(x, w, b=None):
    return F.layer_norm(x, x.shape[-1:], w, torch.zeros_like(w) if b is None else b)


def image_tokens(sd, pixels, heads):
    conv = sd["visual.conv1.weight"]
    x = F.conv2d(pixels, conv, stride=conv.shape[-1]).flatten(2).transpose(1, 2)
    x = (
        torch.cat([sd["visual.class_embedding"].expand(x.shape[0], 1, -1), x], 1)
        + sd["visual.positional_embedding"]
    )
    x = rc._transformer(
        rc._layer_norm(x, sd, "visual.ln_pre"), sd, "visual.", heads, rc.exact_gelu, causal=False
    )
    return x @ sd["visual.proj"]  # every token, no ln_post


def text_tokens(sd, ids, heads):
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"][: ids.shape[1]]
    x = rc._layer_norm(rc._transformer(x, sd, "", heads, rc.exact_gelu, causal=True), sd, "ln_final")
    pooled = x[torch.arange(x.shape[0]), ids.argmax(-1)]
    return x @ sd["text_projection"], pooled @ sd["text_projection"]


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), -1)


def cross_model(sd, x, ctx, mask, heads):
    i = 0
    while f"cross_model.layers.{i}.0.fn.to_q.weight" in sd:
        c = f"cross_model.layers.{i}.0.fn."
        h = _ln(x, sd[c + "norm.weight"], sd.get(c + "norm.bias"))
        b, n, _ = h.shape
        q = (h @ sd[c + "to_q.weight"].T).view(b, n, heads, -1).transpose(1, 2)
        q = q * q.shape[-1] ** -0.5
        k, v = (ctx @ sd[c + "to_kv.weight"].T).chunk(2, -1)
        sim = torch.einsum("bhid,bjd->bhij", q, k) + mask[:, None]
        out = torch.einsum("bhij,bjd->bhid", (sim - sim.amax(-1, keepdim=True)).softmax(-1), v)
        out = out.transpose(1, 2).reshape(b, n, -1) @ sd[c + "to_out.weight"].T
        f, g = (h @ sd[c + "ff.0.weight"].T).chunk(2, -1)
        x = x + out + (F.silu(g) * f) @ sd[c + "ff.2.weight"].T

        p = f"cross_model.layers.{i}.1.fn."
        h = _ln(x, sd[p + "norm.weight"], sd.get(p + "norm.bias"))
        dim_head = k.shape[-1]
        inner = sd[p + "attn_out.weight"].shape[1]
        fused = sd[p + "fused_attn_ff_proj.weight"]
        q, k, v, ff = (h @ fused.T).split(
            [inner, dim_head, dim_head, fused.shape[0] - inner - 2 * dim_head], -1
        )
        q = q.view(b, n, heads, -1).transpose(1, 2)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim_head, 2, dtype=torch.float64) / dim_head))
        freqs = torch.einsum("i,j->ij", torch.arange(n, dtype=torch.float64), inv_freq)
        pos = torch.cat((freqs, freqs), -1)
        q = q * pos.cos() + _rotate_half(q) * pos.sin()
        k = k * pos.cos() + _rotate_half(k) * pos.sin()
        sim = torch.einsum("bhid,bjd->bhij", q * dim_head**-0.5, k)
        out = torch.einsum("bhij,bjd->bhid", (sim - sim.amax(-1, keepdim=True)).softmax(-1), v)
        out = out.transpose(1, 2).reshape(b, n, -1) @ sd[p + "attn_out.weight"].T
        f, g = ff.chunk(2, -1)
        x = x + out + (F.silu(g) * f) @ sd[p + "ff_out.1.weight"].T
        i += 1
    return x


def scores(state, tokenizer, pixels, prompt, *, vision_heads, text_heads, cross_heads, context=77):
    """MPS scores (float64) of preprocessed ``pixels`` against one prompt, as ``infer_one_sample``."""
    hf = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    sd = {k: v.double() for k, v in rc.hf_clip_to_openai_layout(hf).items()}
    sd.update({k: v.double() for k, v in state.items() if k.startswith("cross_model.")})

    def tok(text):
        return tokenizer(
            text, max_length=context, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids

    text_f, text_emb = text_tokens(sd, tok(prompt), text_heads)
    cond_f, _ = text_tokens(sd, tok(CONDITION), text_heads)
    sim = torch.einsum("bid,bjd->bji", text_f, cond_f).amax(dim=1, keepdim=True)
    sim = sim / sim.max()
    mask = torch.where(sim > 0.3, 0.0, -math.inf).double()
    img = image_tokens(sd, pixels.double(), vision_heads)
    n = img.shape[0]
    mask = mask.repeat(n, img.shape[1], 1)
    feats = cross_model(sd, img, text_f.expand(n, -1, -1), mask, cross_heads)[:, 0]
    feats = feats / feats.norm(dim=-1, keepdim=True)
    text = text_emb / text_emb.norm(dim=-1, keepdim=True)
    return sd["logit_scale"].exp() * (feats @ text.T)[:, 0]


def random_cross_state(dim: int, *, layers=2, heads=2, dim_head=16, ff_mult=4, seed=0):
    """Random ``cross_model.*`` weights in the release's key layout."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) / math.sqrt(shape[-1])

    sd = {}
    for i in range(layers):
        c, p = f"cross_model.layers.{i}.0.fn.", f"cross_model.layers.{i}.1.fn."
        sd[c + "norm.weight"] = 1 + 0.1 * torch.randn(dim, generator=g)
        sd[c + "norm.bias"] = torch.zeros(dim)
        sd[c + "to_q.weight"] = r(heads * dim_head, dim)
        sd[c + "to_kv.weight"] = r(2 * dim_head, dim)
        sd[c + "to_out.weight"] = r(dim, heads * dim_head)
        sd[c + "ff.0.weight"] = r(2 * ff_mult * dim, dim)
        sd[c + "ff.2.weight"] = r(dim, ff_mult * dim)
        sd[p + "norm.weight"] = 1 + 0.1 * torch.randn(dim, generator=g)
        sd[p + "norm.bias"] = torch.zeros(dim)
        sd[p + "fused_attn_ff_proj.weight"] = r(heads * dim_head + 2 * dim_head + 2 * ff_mult * dim, dim)
        sd[p + "attn_out.weight"] = r(dim, heads * dim_head)
        sd[p + "ff_out.1.weight"] = r(dim, ff_mult * dim)
        sd[p + "rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, dim_head, 2).float() / dim_head))
    return sd
