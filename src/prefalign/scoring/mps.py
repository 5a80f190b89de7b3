"""MPS, Multi-dimensional Preference Score (Zhang et al., CVPR 2024; github.com/Kwai-Kolors/MPS).

The original (``trainer/models/clip_model.py``, ``cross_modeling.py``, ``eval_overall_mps_on_*.py``):

* a Hugging Face CLIP ViT-H/14 (``model.*``) whose image features are ``visual_projection`` of
  EVERY image token before the final LayerNorm (``vision_model(...)[0]``), whose prompt features
  are ``text_projection`` of every token of the prompt padded to 77 (no attention mask), and
  whose text embedding is ``text_projection`` of the pooled (end-of-text) token;
* a condition text (default: the overall-preference list below) encoded the same way; for each
  prompt token, its largest dot product with any condition token, divided by the largest such
  value, gives a mask: tokens above 0.3 are attended to, the others get -inf;
* ``Cross_model``: 4 layers of [cross-attention from image tokens to prompt tokens (16 query
  heads, one shared key/value head of 64, pre-LayerNorm without bias, parallel SwiGLU
  feed-forward), then a parallel self-attention + SwiGLU block with rotary positions], each with
  a residual; the image's first token after it is the image embedding;
* ``score = logit_scale.exp() * cos(text embedding, image embedding)``.

One deliberate difference: the original divides by the largest similarity over the whole batch
of prompts (``sim / sim.max()``), so a prompt's score depends on which other prompts share its
batch; its evaluation scripts score one prompt at a time. prefalign divides per prompt, which is
the same as the original's one-prompt-at-a-time scoring and makes scores batch-independent.

The release is ``torch.save(model)`` of the whole module: ``convert --from mps`` reads it with a
restricted unpickler (``restricted_pickle``), keeping tensors only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prefalign.errors import first_line
from prefalign.scoring.joint import JointScorer
from prefalign.scoring.model_format import ScorerSpec

# eval_overall_mps_on_hpdv2.py / eval_overall_mps_on_imagereward.py
OVERALL_CONDITION = (
    "light, color, clarity, tone, style, ambiance, artistry, shape, face, hair, hands, limbs, "
    "structure, instance, texture, quantity, attributes, position, number, location, word, things."
)
MASK_THRESHOLD = 0.3  # the evaluation scripts' threshold (training used 0.01)
CROSS_FILE = "cross_model.safetensors"
LAYERS, HEADS, DIM_HEAD, FF_MULT = 4, 16, 64, 4  # Cross_model(dim=1024, layer_num=4, heads=16)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], weight, bias)


def _swiglu(x: torch.Tensor) -> torch.Tensor:
    x, gate = x.chunk(2, dim=-1)
    return F.silu(gate) * x


class _Norm(nn.Module):
    """LayerNorm with a learned weight and a fixed zero bias (kept as a buffer, as released)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _layer_norm(x, self.weight, self.bias)


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.norm = _Norm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * ff_mult * dim, bias=False),
            nn.Identity(),
            nn.Linear(ff_mult * dim, dim, bias=False),
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, n, _ = h.shape
        q = self.to_q(h).view(b, n, self.heads, -1).transpose(1, 2) * self.scale
        k, v = self.to_kv(context).chunk(2, dim=-1)  # one key/value head shared by all queries
        sim = torch.einsum("bhid,bjd->bhij", q, k) + mask[:, None]
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = torch.einsum("bhij,bjd->bhid", attn, v).transpose(1, 2).reshape(b, n, -1)
        ff = self.ff[2](_swiglu(self.ff[0](h)))
        return x + self.to_out(out) + ff


class _ParallelBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.heads, self.dim_head, self.scale = heads, dim_head, dim_head**-0.5
        self.norm = _Norm(dim)
        self.fused_dims = (heads * dim_head, dim_head, dim_head, 2 * ff_mult * dim)
        self.fused_attn_ff_proj = nn.Linear(dim, sum(self.fused_dims), bias=False)
        self.attn_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.ff_out = nn.Sequential(nn.Identity(), nn.Linear(ff_mult * dim, dim, bias=False))
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim_head, 2).float() / dim_head))
        self.register_buffer("inv_freq", inv_freq)  # released as rotary_emb.inv_freq

    def _rotary(self, t: torch.Tensor, n: int) -> torch.Tensor:
        freqs = torch.outer(torch.arange(n, device=t.device, dtype=self.inv_freq.dtype), self.inv_freq)
        pos = torch.cat((freqs, freqs), dim=-1).to(t.dtype)
        x1, x2 = t.chunk(2, dim=-1)
        return t * pos.cos() + torch.cat((-x2, x1), dim=-1) * pos.sin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, n, _ = h.shape
        q, k, v, ff = self.fused_attn_ff_proj(h).split(self.fused_dims, dim=-1)
        q = self._rotary(q.view(b, n, self.heads, -1).transpose(1, 2), n) * self.scale
        k = self._rotary(k, n)
        sim = torch.einsum("bhid,bjd->bhij", q, k)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = torch.einsum("bhij,bjd->bhid", attn, v).transpose(1, 2).reshape(b, n, -1)
        return x + self.attn_out(out) + self.ff_out[1](_swiglu(ff))


class CrossModel(nn.Module):
    """MPS's condition-aware cross model; parameter names map 1:1 onto the release's."""

    def __init__(
        self,
        dim: int = 1024,
        layers: int = LAYERS,
        heads: int = HEADS,
        dim_head: int = DIM_HEAD,
        ff_mult: int = FF_MULT,
    ):
        super().__init__()
        self.dims = {"dim": dim, "layers": layers, "heads": heads, "dim_head": dim_head, "ff_mult": ff_mult}
        self.cross = nn.ModuleList(_CrossAttention(dim, heads, dim_head, ff_mult) for _ in range(layers))
        self.blocks = nn.ModuleList(_ParallelBlock(dim, heads, dim_head, ff_mult) for _ in range(layers))

    def forward(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = image_tokens
        for cross, block in zip(self.cross, self.blocks):
            x = block(cross(x, text_tokens, mask))
        return x


def original_to_cross_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``cross_model.layers.{i}.{0,1}.fn.*`` (the release) -> ``CrossModel`` names."""
    out = {}
    for key, value in state.items():
        if not key.startswith("cross_model.layers."):
            continue
        _, _, i, which, _fn, *rest = key.split(".")
        name = ".".join(rest)
        if which == "1" and name == "rotary_emb.inv_freq":
            name = "inv_freq"
        out[f"{'cross' if which == '0' else 'blocks'}.{i}.{name}"] = value.float()
    return out


def cross_dims(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Cross-model sizes read off the release (heads = query width / key width)."""
    to_q = state["cross_model.layers.0.0.fn.to_q.weight"]
    dim_head = state["cross_model.layers.0.0.fn.to_kv.weight"].shape[0] // 2
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("cross_model.layers."))
    ff_inner = state["cross_model.layers.0.0.fn.ff.2.weight"].shape[1]
    return {
        "dim": to_q.shape[1],
        "layers": layers,
        "heads": to_q.shape[0] // dim_head,
        "dim_head": dim_head,
        "ff_mult": ff_inner // to_q.shape[1],
    }


class MPSScorer(JointScorer):
    """MPS: ``logit_scale.exp() * cos(text, CrossModel(image tokens | prompt tokens, mask)[0])``."""

    def __init__(self, clip, tokenizer, cross: CrossModel, spec: ScorerSpec, **kwargs):
        super().__init__(spec, **kwargs)
        self.model = clip.to(self.device, self.dtype).eval().requires_grad_(False)
        self.cross = cross.to(self.device, self.dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.condition = (spec.head or {}).get("condition", OVERALL_CONDITION)
        self.threshold = float((spec.head or {}).get("threshold", MASK_THRESHOLD))
        self.context_length = int(clip.config.text_config.max_position_embeddings)

    def _text(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer(
            list(prompts),
            max_length=self.context_length,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        out = self.model.text_model(input_ids=ids)  # no attention mask, as the original
        return self.model.text_projection(out.last_hidden_state), self.model.text_projection(
            out.pooler_output
        )

    def forward(self, model_input: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        text_tokens, text_emb = self._text(prompts)
        condition_tokens, _ = self._text([self.condition])
        sim = torch.einsum("bid,jd->bji", text_tokens, condition_tokens[0]).amax(dim=1)  # (B, 77)
        sim = sim / sim.amax(dim=-1, keepdim=True)  # per prompt (the original: over the batch)
        mask = torch.where(sim > self.threshold, 0.0, float("-inf")).to(text_tokens.dtype)
        image_tokens = self.model.visual_projection(
            self.model.vision_model(pixel_values=model_input.to(self.device, self.dtype)).last_hidden_state
        )
        mask = mask[:, None, :].expand(-1, image_tokens.shape[1], -1)
        image = self.cross(image_tokens, text_tokens, mask)[:, 0].float()
        image = image / image.norm(dim=-1, keepdim=True)
        text = text_emb.float() / text_emb.float().norm(dim=-1, keepdim=True)
        return self.model.logit_scale.float().exp() * (image * text).sum(-1)


def read_release(src: Path) -> dict[str, torch.Tensor]:
    """Tensors of an MPS release: a pickled whole module (restricted) or a plain state dict."""
    from prefalign.scoring.convert import ConversionError, read_state_dict
    from prefalign.scoring.restricted_pickle import load_stubbed, module_state_dict

    try:
        return read_state_dict(src)
    except ConversionError as exc:
        if "refused to load" not in str(exc):
            raise
    try:
        state = module_state_dict(load_stubbed(src))
    except Exception as exc:
        raise ConversionError(f"{src}: not a readable MPS checkpoint ({first_line(exc)})") from None
    if not state:
        raise ConversionError(f"{src}: the pickled module holds no tensors")
    return state


def convert_mps(
    src: Path, out: Path, *, tokenizer, vision_heads, text_heads, provenance: dict, overwrite: bool
) -> Path:
    """``prefalign convert --from mps MPS_overall_checkpoint.pth``: see the module docstring."""
    from transformers import CLIPConfig, CLIPModel

    from prefalign.data.images import Preprocess
    from prefalign.scoring.convert import (
        ConversionError,
        _key_report,
        _sha256,
        load_tokenizer,
        save_model_dir,
    )

    state = read_release(src)
    provenance["sha256"] = _sha256(src)
    clip_state = {k[len("model.") :]: v.float() for k, v in state.items() if k.startswith("model.")}
    if (
        "cross_model.layers.0.0.fn.to_q.weight" not in state
        or "vision_model.embeddings.patch_embedding.weight" not in clip_state
    ):
        raise ConversionError(
            f"{src}: not the MPS layout (needs model.* CLIP weights and cross_model.layers.*)"
        )
    config = _clip_config(clip_state, vision_heads, text_heads)
    with torch.device("meta"):
        clip = CLIPModel(CLIPConfig(**config))
    result = clip.load_state_dict(clip_state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ConversionError(
            f"{src}: CLIP part does not match: {_key_report(missing, list(result.unexpected_keys))}"
        )
    for module in (clip.vision_model.embeddings, clip.text_model.embeddings):
        module.position_ids = torch.arange(module.position_ids.shape[-1]).expand((1, -1))
    cross = CrossModel(**cross_dims(state))
    result = cross.load_state_dict(original_to_cross_state(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConversionError(
            f"{src}: cross model does not match: {_key_report(result.missing_keys, result.unexpected_keys)}"
        )
    tok = load_tokenizer(tokenizer or "laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    spec = ScorerSpec(
        kind="mps",
        preprocess=Preprocess(mode="center-crop", size=config["vision_config"]["image_size"]),
        provenance=provenance,
    )

    class _Head:  # what save_model_dir writes beside the CLIP model
        head_type = "mps-cross-model"
        dims = cross.dims

        @staticmethod
        def state_dict():
            return cross.state_dict()

    saved = save_model_dir(out, clip.eval(), tok, spec, _Head, overwrite=overwrite)
    spec = ScorerSpec.load(saved)
    spec.head = {**(spec.head or {}), "condition": OVERALL_CONDITION, "threshold": MASK_THRESHOLD}
    spec.save(saved)
    return saved


def _clip_config(sd: dict[str, torch.Tensor], vision_heads: int | None, text_heads: int | None) -> dict:
    vis = sd["vision_model.embeddings.patch_embedding.weight"]
    width, patch = vis.shape[0], vis.shape[-1]
    positions = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    text_width = sd["text_model.final_layer_norm.weight"].shape[0]
    vocab = sd["text_model.embeddings.token_embedding.weight"].shape[0]

    def layers(prefix: str) -> int:
        return 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(prefix + ".encoder.layers."))

    return {
        "projection_dim": sd["visual_projection.weight"].shape[0],
        "vision_config": {
            "hidden_size": width,
            "intermediate_size": sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_hidden_layers": layers("vision_model"),
            "num_attention_heads": vision_heads or {1280: 16}.get(width, max(1, width // 64)),
            "image_size": round((positions - 1) ** 0.5) * patch,
            "patch_size": patch,
            "hidden_act": "gelu",
            "projection_dim": sd["visual_projection.weight"].shape[0],
        },
        "text_config": {
            "vocab_size": vocab,
            "hidden_size": text_width,
            "intermediate_size": sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_hidden_layers": layers("text_model"),
            "num_attention_heads": text_heads or max(1, text_width // 64),
            "max_position_embeddings": sd["text_model.embeddings.position_embedding.weight"].shape[0],
            "hidden_act": "gelu",
            "projection_dim": sd["text_projection.weight"].shape[0],
            "bos_token_id": vocab - 2,
            "eos_token_id": vocab - 1,
            "pad_token_id": vocab - 1,
        },
    }


def load_mps(path: Path, spec: ScorerSpec, **kwargs) -> MPSScorer:
    """Load a converted MPS directory (``load_scorer`` dispatches here by kind)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, CLIPModel

    from prefalign.scoring.load import ScorerLoadError

    try:
        clip = CLIPModel.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        head = spec.head or {}
        cross = CrossModel(**head.get("dims", {}))
        cross.load_state_dict(load_file(path / head.get("file", "head.safetensors")))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ScorerLoadError(f"{path}: cannot load the MPS model ({first_line(exc)})") from None
    return MPSScorer(clip.eval(), tokenizer, cross, spec, **kwargs)
