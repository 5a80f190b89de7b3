"""Scorers: the model format, loading, conversion of foreign checkpoints, score heads."""

from prefalign.scoring.convert import FAMILIES, ConversionError, convert_checkpoint
from prefalign.scoring.load import ScorerLoadError, list_scorers, load_scorer
from prefalign.scoring.model_format import SCORE_KINDS, ModelFormatError, ScorerSpec
from prefalign.scoring.scorer import ScoreFailure, Scorer, ScoreResult

__all__ = [
    "FAMILIES",
    "SCORE_KINDS",
    "ConversionError",
    "ModelFormatError",
    "ScoreFailure",
    "ScoreResult",
    "Scorer",
    "ScorerLoadError",
    "ScorerSpec",
    "convert_checkpoint",
    "list_scorers",
    "load_scorer",
]
