"""Scorers: the model format, loading, conversion of foreign checkpoints, score heads.

Names load on first use, so the command line can read the catalog without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefalign._lazy import lazy_attributes

_LAZY = {
    "FAMILIES": "prefalign.scoring.catalog",
    "SCORE_KINDS": "prefalign.scoring.catalog",
    "ConversionError": "prefalign.scoring.convert",
    "convert_checkpoint": "prefalign.scoring.convert",
    "ScorerLoadError": "prefalign.scoring.load",
    "list_scorers": "prefalign.scoring.load",
    "load_scorer": "prefalign.scoring.load",
    "ModelFormatError": "prefalign.scoring.model_format",
    "ScorerSpec": "prefalign.scoring.model_format",
    "ScoreFailure": "prefalign.scoring.scorer",
    "Scorer": "prefalign.scoring.scorer",
    "ScoreResult": "prefalign.scoring.scorer",
    "ScorerLike": "prefalign.scoring.protocol",
    "PixelScorerLike": "prefalign.scoring.protocol",
}

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.scoring.catalog import FAMILIES, SCORE_KINDS
    from prefalign.scoring.convert import ConversionError, convert_checkpoint
    from prefalign.scoring.load import ScorerLoadError, list_scorers, load_scorer
    from prefalign.scoring.model_format import ModelFormatError, ScorerSpec
    from prefalign.scoring.protocol import PixelScorerLike, ScorerLike
    from prefalign.scoring.scorer import ScoreFailure, Scorer, ScoreResult

__all__ = [
    "FAMILIES",
    "SCORE_KINDS",
    "ConversionError",
    "ModelFormatError",
    "PixelScorerLike",
    "ScoreFailure",
    "ScoreResult",
    "Scorer",
    "ScorerLike",
    "ScorerLoadError",
    "ScorerSpec",
    "convert_checkpoint",
    "list_scorers",
    "load_scorer",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
