"""Every tokenizer a scorer uses is checked before any prompt is scored.

A Hugging Face directory without tokenizer files (PickScore is shipped that way: its tokenizer
lives in ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``) makes ``AutoTokenizer`` build a 2-token
vocabulary that maps every word to the unknown token: every prompt then gets the same score.
Loading and converting therefore check that the tokenizer (1) has the text tower's vocabulary
size and (2) turns a probe sentence into real tokens.
"""

from __future__ import annotations

from pathlib import Path

from prefalign.errors import PrefalignError

# The tokenizer of PickScore and HPS v2 (the PickScore authors' README loads its processor).
DEFAULT_CLIP_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PROBE = "a photo of a red cat and a blue dog"
# Files that hold a CLIP tokenizer: the fast one, or the slow one's BPE pair.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class TokenizerError(PrefalignError, ValueError):
    """A missing tokenizer, or one that does not belong to the model."""


def has_tokenizer_files(directory: str | Path) -> bool:
    """Whether a local model directory holds tokenizer files (hub ids: assumed so)."""
    path = Path(directory)
    return not path.is_dir() or any((path / name).exists() for name in TOKENIZER_FILES)


def missing_tokenizer_message(source: str) -> str:
    return (
        f"{source}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt) beside the model; "
        f"PickScore-style models ship their tokenizer in another repository: pass --tokenizer "
        f"{DEFAULT_CLIP_TOKENIZER} (or a directory with its files), e.g. `prefalign convert --from "
        f"pickscore {source} --tokenizer TOKENIZER --out models/NAME` writes a self-contained model"
    )


def check_tokenizer(tokenizer, vocab_size: int, source: str) -> None:
    """Refuse a tokenizer that cannot be the model's.

    Args:
        tokenizer: a Hugging Face tokenizer.
        vocab_size: the text tower's ``vocab_size`` (rows of its token embedding).
        source: where the tokenizer came from, for the message.

    Raises:
        TokenizerError: the vocabulary size differs, or the probe sentence yields no real tokens
            (only special or unknown tokens, or ids outside the embedding).
    """
    n = len(tokenizer)
    if n != vocab_size:
        raise TokenizerError(
            f"{source}: the tokenizer has {n} tokens but the model's text tower has {vocab_size}: "
            "wrong or missing tokenizer for this model (pass --tokenizer with the model's own)"
        )
    ids = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    real = [i for i in ids if i not in special]
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if len(set(real)) < 2 or bad:
        raise TokenizerError(
            f"{source}: the tokenizer turns {PROBE!r} into {ids[:12]} (only special/unknown tokens or "
            "ids outside the vocabulary): not a working CLIP tokenizer; pass --tokenizer with the "
            "model's own"
        )
