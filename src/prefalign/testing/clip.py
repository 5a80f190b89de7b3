"""A tiny CLIP tokenizer (real byte-level BPE files) and tiny random CLIP models."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

# Words that get whole-word BPE merges, so that prompts about them stay short.
TINY_WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "an",
    "and",
    "with",
    "on",
    "in",
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "black",
    "circle",
    "square",
    "triangle",
    "cat",
    "dog",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "background",
    "image",
    "weird",
]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _tiny_vocab_and_merges(words: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            if merge not in merges:
                merges.append(merge)
            current += piece
            if current not in tokens:
                tokens.append(current)
    # As in CLIP, the two special tokens come last, so <|endoftext|> has the highest id and
    # OpenAI's argmax pooling and Hugging Face's first-EOS pooling pick the same position.
    tokens += [BOS, EOS]
    seen: dict[str, int] = {}
    for t in tokens:
        seen.setdefault(t, len(seen))
    return seen, merges


def write_tiny_tokenizer_files(directory: str | Path, words: tuple[str, ...] = TINY_WORDS) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of a tiny CLIP BPE vocabulary (about 570 tokens)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = _tiny_vocab_and_merges(words)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return directory


def tiny_clip_tokenizer(words: tuple[str, ...] = TINY_WORDS) -> CLIPTokenizer:
    """A CLIPTokenizer over the tiny vocabulary, with CLIP's special tokens and pre-tokenizer."""
    vocab, merges = _tiny_vocab_and_merges(words)
    pairs = [tuple(m.split(" ")) for m in merges]
    return CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=77)


def tiny_clip_config(
    *,
    vocab_size: int | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 2,
    heads: int = 2,
    projection_dim: int = 32,
    hidden_act: str = "quick_gelu",
    context_length: int = 77,
) -> CLIPConfig:
    """The config of a tiny CLIP whose text side matches ``tiny_clip_tokenizer``."""
    if vocab_size is None:
        vocab_size = len(_tiny_vocab_and_merges(TINY_WORDS)[0])
    common = dict(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        hidden_act=hidden_act,
        projection_dim=projection_dim,
    )
    text = dict(
        common,
        vocab_size=vocab_size,
        max_position_embeddings=context_length,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    vision = dict(common, image_size=image_size, patch_size=patch_size)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def tiny_clip_model(seed: int = 0, **config_kwargs) -> CLIPModel:
    """A seeded tiny random CLIPModel in eval mode."""
    torch.manual_seed(seed)
    model = CLIPModel(tiny_clip_config(**config_kwargs))
    return model.eval()


def save_tiny_clip(directory: str | Path, seed: int = 0, **config_kwargs) -> Path:
    """Save a tiny CLIPModel and its tokenizer as a Hugging Face directory."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory = Path(directory)
    tiny_clip_model(seed, **config_kwargs).save_pretrained(directory)
    tiny_clip_tokenizer().save_pretrained(directory)
    return directory
