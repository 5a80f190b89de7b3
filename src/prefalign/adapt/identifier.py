"""The identifier that names the non-preferred concept (HPS section 6).

Captions of non-preferred images are prefixed with it during LoRA training; at inference the
same words become the negative prompt, steering generation away from what HPS dislikes. Every
module and command takes its default from here.
"""

from __future__ import annotations

DEFAULT_IDENTIFIER = "Weird image. "


def with_identifier(caption: str, identifier: str = DEFAULT_IDENTIFIER) -> str:
    """The caption of a non-preferred image: ``identifier`` followed by the original prompt."""
    return f"{identifier}{caption}"


def negative_prompt_for(identifier: str) -> str:
    """The negative prompt that stands for ``identifier`` (the identifier without trailing spaces)."""
    return identifier.strip()
