"""ImageReward (Xu et al., NeurIPS 2023; github.com/THUDM/ImageReward) on transformers' BLIP.

The release ``ImageReward.pt`` is the state dict of ``ImageReward/ImageReward.py``'s module:

* ``blip.visual_encoder.*`` — BLIP's timm-style ViT-L/16 (``models/BLIP/vit.py``: ``cls_token``,
  ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
  ``norm``), LayerNorm eps 1e-6, exact GELU; the output is every token after the final norm.
* ``blip.text_encoder.*`` — BLIP's ``med.py`` BertModel (no pooler, no token types) with
  cross-attention to the image tokens in every layer; 12 heads at width 768 (``med_config.json``;
  transformers' BLIP text default of 8 is wrong for it), LayerNorm eps 1e-12.
* ``mlp.layers.{0,2,4,6,7}`` — Linear 768->1024->128->64->16->1 without activations (the LAION
  aesthetic MLP's layout), on the text encoder's first token.
* ``blip.vision_proj`` / ``blip.text_proj`` — BLIP pre-training leftovers that scoring never reads.

``score = (mlp(h[CLS]) - 0.16717362830052426) / 1.0333394966054072`` with the prompt tokenised by
BLIP's bert-base-uncased tokenizer (``[DEC]`` and ``[ENC]`` added, 30524 ids), padded to and
truncated at 35 tokens, ``[CLS]`` kept first (``ImageReward.score`` does not swap in ``[ENC]``
as BLIP's ITM head would). Images: Resize(224, bicubic) + CenterCrop(224) + CLIP mean/std.

The converted directory holds a ``BlipConfig`` and the vision/text weights under the names of
transformers' ``BlipForImageTextRetrieval`` (``vision_model.*``, ``text_encoder.*``), the MLP as
``head.safetensors`` and the mean/std in ``prefalign.json``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from prefalign.errors import first_line
from prefalign.scoring.heads import AestheticMLP
from prefalign.scoring.joint import JointScorer
from prefalign.scoring.model_format import ScorerSpec

# The released standardisation constants (ImageReward/ImageReward.py, ImageReward.__init__).
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
MAX_TOKENS = 35  # ImageReward.score: padding="max_length", truncation=True, max_length=35
VISION_LN_EPS = 1e-6  # BLIP vit.py: partial(nn.LayerNorm, eps=1e-6)
TEXT_LN_EPS = 1e-12  # med_config.json: layer_norm_eps
HEAD_TYPE = "imagereward-mlp"
# Keys the release carries that scoring never reads.
UNUSED = re.compile(r"^blip\.(vision_proj|text_proj)\.|position_ids$")

_VIT_BLOCK = {
    "norm1": "layer_norm1",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _conversion_error(msg: str):
    from prefalign.scoring.convert import ConversionError

    return ConversionError(msg)


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in state if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def blip_config_from_state_dict(
    state: dict[str, torch.Tensor],
    src: Path,
    *,
    vision_heads: int | None = None,
    text_heads: int | None = None,
):
    """A transformers ``BlipConfig`` whose dimensions are read off an ImageReward state dict.

    Heads default to width // 64 (ViT-L/16: 16, BERT-base: 12), as BLIP's configs have them.
    """
    from transformers import BlipConfig

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise _conversion_error(f"{src}: not the ImageReward layout: missing key {key!r}")
        return state[key]

    v = "blip.visual_encoder."
    t = "blip.text_encoder."
    vis_width = need(v + "cls_token").shape[-1]
    patch = need(v + "patch_embed.proj.weight").shape[-1]
    grid = round((need(v + "pos_embed").shape[1] - 1) ** 0.5)
    vis_layers = _count(state, r"^blip\.visual_encoder\.blocks\.(\d+)\.")
    words = need(t + "embeddings.word_embeddings.weight")
    text_layers = _count(state, r"^blip\.text_encoder\.encoder\.layer\.(\d+)\.")
    if not vis_layers or not text_layers:
        raise _conversion_error(
            f"{src}: no transformer blocks found (vision: {vis_layers}, text: {text_layers})"
        )
    cross = need(t + "encoder.layer.0.crossattention.self.key.weight")
    vision_heads = vision_heads or max(1, vis_width // 64)
    text_heads = text_heads or max(1, words.shape[1] // 64)
    for what, width, heads in (("vision", vis_width, vision_heads), ("text", words.shape[1], text_heads)):
        if width % heads:
            raise _conversion_error(f"{src}: {what} width {width} is not divisible by {heads} heads")
    vision = dict(
        hidden_size=vis_width,
        intermediate_size=need(v + "blocks.0.mlp.fc1.weight").shape[0],
        num_hidden_layers=vis_layers,
        num_attention_heads=vision_heads,
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="gelu",
        layer_norm_eps=VISION_LN_EPS,
    )
    text = dict(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        intermediate_size=need(t + "encoder.layer.0.intermediate.dense.weight").shape[0],
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        max_position_embeddings=need(t + "embeddings.position_embeddings.weight").shape[0],
        encoder_hidden_size=cross.shape[1],
        hidden_act="gelu",
        layer_norm_eps=TEXT_LN_EPS,
        is_decoder=True,  # builds the cross-attention layers; scoring runs them bidirectionally
    )
    config = BlipConfig(text_config=text, vision_config=vision)
    config.text_config.encoder_hidden_size = cross.shape[1]
    return config


def imagereward_to_hf_state_dict(state: dict[str, torch.Tensor], config, src: Path):
    """Split an ImageReward state dict into (BLIP vision+text weights in transformers' names, MLP).

    Raises ConversionError naming every missing and unexpected key.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []

    def put(dst: str, key: str, transform=None) -> None:
        if key not in state:
            missing.append(key)
            return
        used.add(key)
        tensor = state[key].float()
        out[dst] = transform(tensor) if transform else tensor

    v, hv = "blip.visual_encoder.", "vision_model."
    put(hv + "embeddings.class_embedding", v + "cls_token")
    put(hv + "embeddings.position_embedding", v + "pos_embed")
    for p in ("weight", "bias"):
        put(f"{hv}embeddings.patch_embedding.{p}", f"{v}patch_embed.proj.{p}")
        put(f"{hv}post_layernorm.{p}", f"{v}norm.{p}")
        for n in range(config.vision_config.num_hidden_layers):
            for src_name, dst_name in _VIT_BLOCK.items():
                put(f"{hv}encoder.layers.{n}.{dst_name}.{p}", f"{v}blocks.{n}.{src_name}.{p}")
    # BLIP's med.py and transformers' BlipTextModel share every parameter name.
    for key in state:
        if key.startswith("blip.text_encoder.") and not UNUSED.search(key):
            put(key[len("blip.") :], key)
    if "blip.text_encoder.embeddings.word_embeddings.weight" not in used:
        missing.append("blip.text_encoder.embeddings.word_embeddings.weight")
    mlp = {}
    for key in state:
        if key.startswith("mlp."):
            used.add(key)
            mlp[key[len("mlp.") :]] = state[key].float()
    from prefalign.scoring.heads import expected_aesthetic_keys

    missing += [f"mlp.{k}" for k in sorted(expected_aesthetic_keys() - set(mlp))]
    unexpected = sorted(k for k in set(state) - used if not UNUSED.search(k))
    if missing or unexpected:
        from prefalign.scoring.convert import _key_report

        raise _conversion_error(
            f"{src}: checkpoint does not match the ImageReward layout: " + _key_report(missing, unexpected)
        )
    return out, mlp


class ImageRewardModel(nn.Module):
    """BLIP's image tower and its image-grounded text encoder (transformers' implementations)."""

    def __init__(self, config):
        from transformers import BlipTextModel, BlipVisionModel

        super().__init__()
        self.config = config
        self.vision_model = BlipVisionModel(config.vision_config)
        self.text_encoder = BlipTextModel(config.text_config, add_pooling_layer=False)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """``(B, text_hidden)`` features: the first token of the text encoder attending to the image."""
        image = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        text = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image,
            encoder_attention_mask=image_mask,
            is_decoder=False,
        )
        return text.last_hidden_state[:, 0, :]


def blip_tokenizer(source: str | Path, vocab_size: int, src: Path):
    """BLIP's tokenizer (``models/blip.py`` ``init_tokenizer``): bert-base-uncased plus ``[DEC]``
    as bos and ``[ENC]`` as an additional special token; they must make up the checkpoint's vocab."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError, TypeError) as exc:
        hint = (
            ""
            if Path(str(source)).exists()
            else " (offline? pass --tokenizer DIR holding bert-base-uncased's vocab.txt)"
        )
        raise _conversion_error(f"{source}: cannot load a BERT tokenizer{hint}: {first_line(exc)}") from None
    if "[DEC]" not in tok.get_vocab():
        tok.add_special_tokens({"bos_token": "[DEC]"})
    if "[ENC]" not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    if len(tok) != vocab_size:
        raise _conversion_error(
            f"{source}: tokenizer has {len(tok)} tokens with [DEC] and [ENC] but {src} has {vocab_size} "
            "word embeddings: ImageReward needs bert-base-uncased (30522 + 2)"
        )
    return tok


def convert_imagereward(
    src: Path,
    out: Path,
    *,
    tokenizer: str | Path | None,
    vision_heads: int | None,
    text_heads: int | None,
    provenance: dict,
    overwrite: bool,
) -> Path:
    """``prefalign convert --from imagereward ImageReward.pt``: see the module docstring."""
    from prefalign.data.images import Preprocess
    from prefalign.scoring.convert import _sha256, read_state_dict, save_model_dir

    state = read_state_dict(src)
    provenance["sha256"] = _sha256(src)
    config = blip_config_from_state_dict(state, src, vision_heads=vision_heads, text_heads=text_heads)
    weights, mlp_state = imagereward_to_hf_state_dict(state, config, src)
    tok = blip_tokenizer(tokenizer or "bert-base-uncased", config.text_config.vocab_size, src)
    model = ImageRewardModel(config)
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        from prefalign.scoring.convert import _key_report

        raise _conversion_error(
            f"{src}: internal mapping error: {_key_report(missing, result.unexpected_keys)}"
        )
    head = AestheticMLP(AestheticMLP.dims_from_state_dict(mlp_state))
    if head.dims[0] != config.text_config.hidden_size or head.dims[-1] != 1:
        raise _conversion_error(
            f"{src}: the MLP takes {head.dims[0]} features but the text encoder gives {config.text_config.hidden_size}"
        )
    head.load_state_dict(mlp_state)
    head.head_type = HEAD_TYPE
    spec = ScorerSpec(
        kind="imagereward",
        preprocess=Preprocess(mode="center-crop", size=config.vision_config.image_size),
        provenance=provenance,
    )
    saved = save_model_dir(out, _Saveable(model), tok, spec, head, overwrite=overwrite)
    spec = ScorerSpec.load(saved)
    spec.head = {**(spec.head or {}), "mean": REWARD_MEAN, "std": REWARD_STD, "max_tokens": MAX_TOKENS}
    spec.save(saved)
    return saved


class _Saveable:
    """``save_pretrained`` for the plain module: BlipConfig + model.safetensors."""

    def __init__(self, model: ImageRewardModel):
        self.model = model

    def save_pretrained(self, directory: Path) -> None:
        from safetensors.torch import save_file

        self.model.config.save_pretrained(directory)
        state = {
            k: v.contiguous() for k, v in self.model.state_dict().items() if not k.endswith("position_ids")
        }
        save_file(state, Path(directory) / "model.safetensors", metadata={"format": "pt"})


class ImageRewardScorer(JointScorer):
    """ImageReward: ``(MLP(BLIP text encoder's [CLS] attending to the image) - mean) / std``.

    Scores are standardised (mean 0, std 1 over the ImageReward training comparisons; higher is
    more preferred). ``score`` reads files with PIL (the original path, exact to <= 1e-4);
    ``score_pixels`` is the differentiable path.
    """

    def __init__(self, model: ImageRewardModel, tokenizer, head: nn.Module, spec: ScorerSpec, **kwargs):
        super().__init__(spec, **kwargs)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.head = head.to(self.device).float().eval().requires_grad_(False)
        self.tokenizer = tokenizer
        head_spec = spec.head or {}
        self.mean = float(head_spec.get("mean", REWARD_MEAN))
        self.std = float(head_spec.get("std", REWARD_STD))
        self.max_tokens = int(head_spec.get("max_tokens", MAX_TOKENS))

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """As ``ImageReward.score``: ``[CLS] ... [SEP]``, truncated and padded to 35 tokens."""
        enc = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
        }

    def forward(self, model_input: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenize(prompts)
        feats = self.model(model_input.to(self.device, self.dtype), enc["input_ids"], enc["attention_mask"])
        return (self.head(feats.float()).float() - self.mean) / self.std


def load_imagereward(path: Path, spec: ScorerSpec, **kwargs) -> ImageRewardScorer:
    """Load a converted ImageReward directory (``load_scorer`` dispatches here by kind)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BlipConfig

    from prefalign.scoring.load import ScorerLoadError

    try:
        config = BlipConfig.from_pretrained(path)
        model = ImageRewardModel(config)
        result = model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
        tokenizer = AutoTokenizer.from_pretrained(path)
        head_state = load_file(path / (spec.head or {}).get("file", "head.safetensors"))
    except (OSError, ValueError) as exc:
        raise ScorerLoadError(f"{path}: cannot load the ImageReward model ({first_line(exc)})") from None
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ScorerLoadError(f"{path}: model.safetensors does not match config.json (missing {missing[:5]})")
    head = AestheticMLP(AestheticMLP.dims_from_state_dict(head_state))
    head.load_state_dict(head_state)
    return ImageRewardScorer(model.eval(), tokenizer, head, spec, **kwargs)
