"""prefalign: measure and improve how well text-to-image generations match human preference.

The public API. Heavy modules (torch, transformers) load on first use, so ``import prefalign``
stays fast for the command line.

    >>> import prefalign
    >>> scorer = prefalign.load_scorer("path/to/hps-v2")          # doctest: +SKIP
    >>> scorer.score(["a.png", "b.png"], "a red circle")          # doctest: +SKIP
"""

from __future__ import annotations

from prefalign._lazy import lazy_attributes

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "load_scorer": "prefalign.scoring",
    "list_scorers": "prefalign.scoring",
    "Scorer": "prefalign.scoring",
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

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
