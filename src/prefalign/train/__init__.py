"""Train your own preference models: the HPS classifier (Wu et al.) and the Lee et al. reward model.

Each method is a Trainer/Config pair; both write a model directory in the prefalign format that
``load_scorer`` reads. Heavy modules load on first use.

    >>> from prefalign.train import PreferenceConfig, PreferenceTrainer
    >>> PreferenceTrainer(PreferenceConfig(data="choices", output_dir="models/mine")).train()  # doctest: +SKIP
"""

from __future__ import annotations

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

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
