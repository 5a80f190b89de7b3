"""Lee et al.: reward-weighted likelihood fine-tuning with a pre-training regulariser."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

from prefalign.adapt.config import RewardWeightedConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.rewards import AUTO, RewardFn, as_reward_fn, default_transform, transform_rewards
from prefalign.adapt.trainer import DiffusionFineTuner, Example, examples_from_dataset
from prefalign.data.dataset import Dataset, load_dataset
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)


def rewarded_examples(
    data: Dataset,
    reward: RewardFn | None,
    *,
    transform: str = AUTO,
    kind: str | None = None,
    report: dict[str, Any] | None = None,
) -> tuple[list[Example], int, int]:
    """Every image with its reward in [0, 1]: the record's human rating where it has one, else
    ``reward``'s score mapped by ``transform``.

    Args:
        data: the generated images and their prompts (``ratings`` where people labelled them).
        reward: scores images without a rating.
        transform: ``auto`` (by ``kind``, see :func:`~prefalign.adapt.rewards.default_transform`),
            ``sigmoid``, ``minmax`` or ``none``; applied to the model's scores only.
        kind: the reward scorer's score kind (None: a callable of unknown kind).
        report: filled with the transform used and the raw and mapped score ranges.

    Returns:
        The pairs, how many rewards came from human labels and how many from the model.

    Raises:
        AdaptError: an image has no rating and no reward model was given, or a reward is not finite.
    """
    examples: list[Example] = []
    unrated: list[int] = []
    for rec in data:
        for i, img in enumerate(rec.images):
            rating = rec.ratings[i] if rec.ratings is not None and i < len(rec.ratings) else None
            if rating is None or (isinstance(rating, float) and math.isnan(rating)):
                unrated.append(len(examples))
                rating = math.nan
            examples.append(Example(data.image_path(img), rec.prompt, float(rating)))
    labels = [e.weight for e in examples if not math.isnan(e.weight)]
    outside = sum(1 for v in labels if not 0.0 <= v <= 1.0)
    if outside:
        warnings.warn(
            f"{data.root}: {outside} of {len(labels)} human ratings lie outside [0, 1] (range {min(labels):.4g} "
            f"to {max(labels):.4g}); Lee et al.'s rewards are probabilities (good = 1, bad = 0): rescale them",
            stacklevel=2,
        )
    if unrated:
        if reward is None:
            raise AdaptError(
                f"{data.root}: {len(unrated)} images have no human rating; give --reward MODEL to score them"
            )
        raw = reward([examples[i].image for i in unrated], [examples[i].caption for i in unrated]).float()
        for i, v in zip(unrated, raw.tolist()):
            if not math.isfinite(v):
                raise AdaptError(f"{examples[i].image}: reward is {v}")
        name = default_transform(kind, raw) if transform == AUTO else transform
        mapped = transform_rewards(raw, name)
        for i, v in zip(unrated, mapped.tolist()):
            examples[i].weight = float(v)
        logger.info(
            "reward model (%s) scores %.4g..%.4g mapped by %s to %.4g..%.4g",
            kind or "callable",
            float(raw.min()),
            float(raw.max()),
            name,
            float(mapped.min()),
            float(mapped.max()),
        )
        if report is not None:
            report.update(
                reward_kind=kind,
                reward_transform=name,
                raw_reward_range=[float(raw.min()), float(raw.max())],
                reward_range=[float(mapped.min()), float(mapped.max())],
            )
    return examples, len(examples) - len(unrated), len(unrated)


def train_reward_weighted(config: RewardWeightedConfig, reward=None) -> Path:
    """Fine-tune with Lee et al.'s loss; returns the output (a full pipeline, or a LoRA adapter
    with ``config.train == "lora"``).

    Args:
        config: the run; ``config.reward`` names a scorer used when ``reward`` is None.
        reward: a ``ScorerLike`` (any scorer), a scorer directory or name, or a ``RewardFn`` for images without human
            ratings; its scores are mapped to [0, 1] by ``config.reward_transform``.
    """
    data = load_dataset(config.data)
    if reward is None and config.reward:
        reward = config.reward
    if isinstance(reward, (str, Path)):
        from prefalign.scoring import load_scorer

        reward = load_scorer(reward)
    kind = reward.kind if isinstance(reward, ScorerLike) else None
    fn = as_reward_fn(reward) if reward is not None else None
    rewards_info: dict[str, Any] = {}
    examples, human, modelled = rewarded_examples(
        data, fn, transform=config.reward_transform, kind=kind, report=rewards_info
    )
    logger.info("rewards: %d from human labels, %d from the reward model", human, modelled)
    prior = None
    if config.prior_data:
        prior = examples_from_dataset(load_dataset(config.prior_data))
        if not prior:
            raise AdaptError(f"{config.prior_data}: no pre-training pairs")
    notes = []
    if prior is None:
        notes.append("no pre-training set (--prior-data): not the paper's recipe")
        logger.warning(
            "beta is %s but no --prior-data: training without the pre-training term, not the paper's recipe",
            config.beta,
        )
    trainer = DiffusionFineTuner(
        config,
        examples,
        prior=prior,
        beta=config.beta,
        train=config.train,
        prior_batch_size=config.prior_batch_size,
        info={
            "method": "reward-weighted",
            "identifier": None,
            "data": str(config.data),
            "rewards_from_labels": human,
            "rewards_from_model": modelled,
            "beta": config.beta,
            "train": config.train,
            **rewards_info,
            "recipe_notes": notes,
        },
    )
    return trainer.train()
