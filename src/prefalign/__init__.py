"""prefalign: measure and improve how well text-to-image generations match human preference.

The public API. Heavy modules (torch, transformers) load on first use, so ``import prefalign``
stays fast for the command line.

    >>> import prefalign
    >>> scorer = prefalign.load_scorer("path/to/hps-v2")          # doctest: +SKIP
    >>> scorer.score(["a.png", "b.png"], "a red circle")          # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefalign._lazy import lazy_attributes

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "load_scorer": "prefalign.scoring",
    "list_scorers": "prefalign.scoring",
    "Scorer": "prefalign.scoring",
    "ScorerLike": "prefalign.scoring",
    "convert_checkpoint": "prefalign.scoring",
    "load_dataset": "prefalign.data",
    "save_dataset": "prefalign.data",
    "Record": "prefalign.data",
    "Dataset": "prefalign.data",
    "load_image": "prefalign.data",
    "Preprocess": "prefalign.data",
    # training
    "PreferenceConfig": "prefalign.train",
    "PreferenceTrainer": "prefalign.train",
    "RewardConfig": "prefalign.train",
    "RewardTrainer": "prefalign.train",
    # evaluation
    "preference_accuracy": "prefalign.evaluate",
    "run_preference": "prefalign.evaluate",
    "run_compare": "prefalign.evaluate",
    # adaptation
    "DEFAULT_IDENTIFIER": "prefalign.adapt",
    "select_training_set": "prefalign.adapt",
    "train_lora": "prefalign.adapt",
    "train_reward_weighted": "prefalign.adapt",
    "generate": "prefalign.adapt",
}

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.adapt import (
        DEFAULT_IDENTIFIER,
        generate,
        select_training_set,
        train_lora,
        train_reward_weighted,
    )
    from prefalign.data import Dataset, Preprocess, Record, load_dataset, load_image, save_dataset
    from prefalign.evaluate import preference_accuracy, run_compare, run_preference
    from prefalign.scoring import Scorer, ScorerLike, convert_checkpoint, list_scorers, load_scorer
    from prefalign.train import PreferenceConfig, PreferenceTrainer, RewardConfig, RewardTrainer

__all__ = [
    "DEFAULT_IDENTIFIER",
    "Dataset",
    "PreferenceConfig",
    "PreferenceTrainer",
    "Preprocess",
    "Record",
    "RewardConfig",
    "RewardTrainer",
    "Scorer",
    "ScorerLike",
    "__version__",
    "convert_checkpoint",
    "generate",
    "list_scorers",
    "load_dataset",
    "load_image",
    "load_scorer",
    "preference_accuracy",
    "run_compare",
    "run_preference",
    "save_dataset",
    "select_training_set",
    "train_lora",
    "train_reward_weighted",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
