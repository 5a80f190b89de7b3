"""Aligning the generator: HPS-guided selection, LoRA with the identifier, reward-weighted
fine-tuning (Lee et al.), reward backpropagation (DRaFT-K, ReFL), generation and best-of-n.

Names load on first use, so importing this room does not import diffusers.

    >>> from prefalign.adapt import select_training_set, train_lora, generate   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    "RewardBackpropConfig": "prefalign.adapt.reward_backprop",
    "train_reward_backprop": "prefalign.adapt.reward_backprop",
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

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.adapt.adapter import ADAPTER_INFO_FILE, load_adapter, read_adapter_info
    from prefalign.adapt.config import DiffusionTrainingConfig, LoraTrainingConfig, RewardWeightedConfig
    from prefalign.adapt.errors import AdaptError
    from prefalign.adapt.generate import GenerationSettings, generate, read_prompts
    from prefalign.adapt.identifier import DEFAULT_IDENTIFIER, with_identifier
    from prefalign.adapt.lora import train_lora
    from prefalign.adapt.losses import per_sample_mse, reward_weighted_loss
    from prefalign.adapt.merge import merge_adapter
    from prefalign.adapt.reward_backprop import RewardBackpropConfig, train_reward_backprop
    from prefalign.adapt.reward_weighted import train_reward_weighted
    from prefalign.adapt.rewards import as_reward_fn, transform_rewards
    from prefalign.adapt.selection import (
        DEFAULT_ALPHA,
        SelectionReport,
        is_blurry,
        is_degenerate,
        scorer_score_fn,
        select_from_group,
        select_training_set,
    )
    from prefalign.adapt.trainer import DiffusionFineTuner

__all__ = [
    "ADAPTER_INFO_FILE",
    "DEFAULT_ALPHA",
    "DEFAULT_IDENTIFIER",
    "AdaptError",
    "DiffusionFineTuner",
    "DiffusionTrainingConfig",
    "GenerationSettings",
    "LoraTrainingConfig",
    "RewardBackpropConfig",
    "RewardWeightedConfig",
    "SelectionReport",
    "as_reward_fn",
    "generate",
    "is_blurry",
    "is_degenerate",
    "load_adapter",
    "merge_adapter",
    "per_sample_mse",
    "read_adapter_info",
    "read_prompts",
    "reward_weighted_loss",
    "scorer_score_fn",
    "select_from_group",
    "select_training_set",
    "train_lora",
    "train_reward_backprop",
    "train_reward_weighted",
    "transform_rewards",
    "with_identifier",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
