"""Tiny random models built in code, for tests, the offline demo and benchmarks.

Like diffusers' ``get_dummy_components``: seeded, shrunken, real architectures that run on a
CPU in milliseconds. Nothing here downloads anything.
"""

from prefalign.testing.clip import (
    TINY_WORDS,
    save_tiny_clip,
    tiny_clip_config,
    tiny_clip_model,
    tiny_clip_tokenizer,
    write_tiny_tokenizer_files,
)
from prefalign.testing.images import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    draw_shape,
    make_choice_dataset,
    make_rating_dataset,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "SHAPES",
    "TINY_WORDS",
    "draw_shape",
    "make_choice_dataset",
    "make_rating_dataset",
    "save_tiny_clip",
    "tiny_clip_config",
    "tiny_clip_model",
    "tiny_clip_tokenizer",
    "write_tiny_tokenizer_files",
]
