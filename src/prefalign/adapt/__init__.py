"""Aligning the generator: HPS-guided selection, LoRA with the identifier, reward-weighted
fine-tuning (Lee et al.), generation and best-of-n.

Names load on first use, so importing this room does not import diffusers.

    >>> from prefalign.adapt import select_training_set, train_lora, generate   # doctest: +SKIP
"""

from __future__ import annotations

from prefalign._lazy import lazy_attributes

_LAZY = {
    "DEFAULT_IDENTIFIER": "prefalign.adapt.identifier",
    "with_identifier": "prefalign.adapt.identifier",
    "AdaptError": "prefalign.adapt.errors",
    "DEFAULT_ALPHA": "prefalign.adapt.selection",
    "is_degenerate": "prefalign.adapt.selection",
    "is_blurry": "prefalign.adapt.selection",
    "select_from_group": "prefalign.adapt.selection",
    "select_training_set": "prefalign.adapt.selection",
    "scorer_score_fn": "prefalign.adapt.selection",
    "SelectionReport": "prefalign.adapt.selection",
    "per_sample_mse": "prefalign.adapt.losses",
    "reward_weighted_loss": "prefalign.adapt.losses",
    "DiffusionTrainingConfig": "prefalign.adapt.config",
    "LoraTrainingConfig": "prefalign.adapt.config",
    "RewardWeightedConfig": "prefalign.adapt.config",
    "DiffusionFineTuner": "prefalign.adapt.trainer",
    "train_lora": "prefalign.adapt.lora",
    "train_reward_weighted": "prefalign.adapt.reward_weighted",
    "as_reward_fn": "prefalign.adapt.rewards",
    "transform_rewards": "prefalign.adapt.rewards",
    "ADAPTER_INFO_FILE": "prefalign.adapt.adapter",
    "load_adapter": "prefalign.adapt.adapter",
    "read_adapter_info": "prefalign.adapt.adapter",
    "merge_adapter": "prefalign.adapt.merge",
    "GenerationSettings": "prefalign.adapt.generate",
    "generate": "prefalign.adapt.generate",
    "read_prompts": "prefalign.adapt.generate",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
