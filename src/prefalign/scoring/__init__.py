"""Scorers: the model format, loading, conversion of foreign checkpoints, score heads.

Names load on first use, so the command line can read the catalog without importing torch.
"""

from __future__ import annotations

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
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
