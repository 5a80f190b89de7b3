"""Tiny Qwen2-VL models and tokenizers built in code, for HPSv3 tests (no downloads).

``write_tiny_hpsv3_release`` writes what the HPSv3 conversion reads: a base directory in the
shape of Qwen2-VL-7B-Instruct (``config.json`` + tokenizer, without ``<|Reward|>``) and a
checkpoint in the release's layout (transformers 4.4x keys ``visual.*``, ``model.*``,
``lm_head.weight``, ``rm_head.{0,3,5}.*``) with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def tiny_qwen_tokenizer():
    """A byte-level BPE tokenizer (256 byte tokens, no merges) with Qwen2-VL's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from prefalign.testing.clip import _bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIALS)})
    tok.pad_token = "<|endoftext|>"
    tok.eos_token = "<|im_end|>"
    return tok


def tiny_qwen2vl_config(vocab_size: int, tokenizer=None, *, hidden: int = 32, layers: int = 2) -> dict:
    """A Qwen2-VL ``config.json`` dict: ``layers`` text layers of width ``hidden``, a 2-block
    vision tower with Qwen2-VL's patching (14-px patches, 2x2 merge, 2 temporal slots)."""
    ids = (
        {}
        if tokenizer is None
        else {
            "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
            "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
            "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
            "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        }
    )
    head_dim = hidden // 4
    return {
        "model_type": "qwen2_vl",
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "vocab_size": vocab_size,
        **ids,
        "bos_token_id": None,
        "eos_token_id": None,
        "text_config": {
            "bos_token_id": None,
            "eos_token_id": None,
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 8192,
            # mrope_section sums to head_dim / 2, as Qwen2-VL-7B's [16, 24, 24] does to 64.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [head_dim // 8, head_dim // 8, head_dim // 2 - head_dim // 4],
            },
            **ids,
        },
        "vision_config": {
            "depth": 2,
            "embed_dim": 16,
            "hidden_size": hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
    }


def to_release_key(key: str) -> str:
    """transformers 5 ``Qwen2VLForConditionalGeneration`` key -> the HPSv3 release's (4.4x) key."""
    if key.startswith("model.visual."):
        return key[len("model.") :]
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model.") :]
    return key


def write_tiny_hpsv3_release(directory: str | Path, seed: int = 0, *, hidden: int = 32) -> tuple[Path, Path]:
    """Write ``base/`` (config + tokenizer) and ``HPSv3.safetensors`` (random weights) under
    ``directory``; return ``(checkpoint, base)``."""
    from safetensors.torch import save_file
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    directory = Path(directory)
    base = directory / "base"
    base.mkdir(parents=True, exist_ok=True)
    tok = tiny_qwen_tokenizer()
    tok.save_pretrained(base)
    rows = len(tok) + 1  # the release's embeddings were resized after adding <|Reward|>
    (base / "config.json").write_text(json.dumps(tiny_qwen2vl_config(len(tok), tok, hidden=hidden), indent=1))
    cfg = tiny_qwen2vl_config(rows, tok, hidden=hidden)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(
        Qwen2VLConfig(**{k: v for k, v in cfg.items() if k != "model_type"})
    )
    state = {}
    for k, v in model.state_dict().items():
        # random, not the init's zeros/ones, so every weight matters to the score
        state[to_release_key(k)] = (
            torch.randn_like(v) * (0.5 if v.ndim < 2 else 0.6 / v.shape[-1] ** 0.5)
        ).contiguous()
        if k.endswith("weight") and ("norm" in k or "ln_q" in k):  # RMSNorm / LayerNorm scales near 1
            state[to_release_key(k)] = (1.0 + 0.2 * torch.randn_like(v)).contiguous()
    for i, (n_in, n_out) in zip((0, 3, 5), ((hidden, 1024), (1024, 16), (16, 2)), strict=True):
        state[f"rm_head.{i}.weight"] = torch.randn(n_out, n_in) / n_in**0.5
        state[f"rm_head.{i}.bias"] = 0.1 * torch.randn(n_out)
    ckpt = directory / "HPSv3.safetensors"
    save_file(state, str(ckpt))
    return ckpt, base
