"""Train your own preference models: the HPS classifier (Wu et al.) and the Lee et al. reward model.

Each method is a Trainer/Config pair; both write a model directory in the prefalign format that
``load_scorer`` reads. Heavy modules load on first use.

    >>> from prefalign.train import PreferenceConfig, PreferenceTrainer
    >>> PreferenceTrainer(PreferenceConfig(data="choices", output_dir="models/mine")).train()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefalign._lazy import lazy_attributes

_LAZY = {
    "TrainConfig": "prefalign.train.config",
    "TrainConfigError": "prefalign.train.config",
    "PreferenceConfig": "prefalign.train.preference_config",
    "PreferenceTrainer": "prefalign.train.preference_trainer",
    "RewardConfig": "prefalign.train.reward_config",
    "RewardTrainer": "prefalign.train.reward_trainer",
    "TrainResult": "prefalign.train.loop",
    "TrainerState": "prefalign.train.loop",
    "TrainingInterrupted": "prefalign.train.loop",
    "TrainingDataError": "prefalign.train.examples",
    "CompositionalFamily": "prefalign.train.prompts",
    "CompositionalPrompt": "prefalign.train.prompts",
    "compositional_prompts": "prefalign.train.prompts",
    "perturb_prompt": "prefalign.train.prompts",
}

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.train.config import TrainConfig, TrainConfigError
    from prefalign.train.examples import TrainingDataError
    from prefalign.train.loop import TrainerState, TrainingInterrupted, TrainResult
    from prefalign.train.preference_config import PreferenceConfig
    from prefalign.train.preference_trainer import PreferenceTrainer
    from prefalign.train.prompts import (
        CompositionalFamily,
        CompositionalPrompt,
        compositional_prompts,
        perturb_prompt,
    )
    from prefalign.train.reward_config import RewardConfig
    from prefalign.train.reward_trainer import RewardTrainer

__all__ = [
    "CompositionalFamily",
    "CompositionalPrompt",
    "PreferenceConfig",
    "PreferenceTrainer",
    "RewardConfig",
    "RewardTrainer",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainerState",
    "TrainingDataError",
    "TrainingInterrupted",
    "compositional_prompts",
    "perturb_prompt",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
