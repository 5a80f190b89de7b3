"""Lee et al.: reward-weighted likelihood fine-tuning with a pre-training regulariser."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from prefalign.adapt.config import RewardWeightedConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.rewards import RewardFn, as_reward_fn
from prefalign.adapt.trainer import DiffusionFineTuner, Example, examples_from_dataset
from prefalign.data.dataset import Dataset, load_dataset

logger = logging.getLogger(__name__)


def rewarded_examples(data: Dataset, reward: RewardFn | None) -> tuple[list[Example], int, int]:
    """Every image with its reward: the record's human rating where it has one, else ``reward``.

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
    if unrated:
        if reward is None:
            raise AdaptError(
                f"{data.root}: {len(unrated)} images have no human rating; give --reward MODEL to score them"
            )
        values = reward([examples[i].image for i in unrated], [examples[i].caption for i in unrated])
        for i, v in zip(unrated, values.tolist()):
            if not math.isfinite(v):
                raise AdaptError(f"{examples[i].image}: reward is {v}")
            examples[i].weight = float(v)
    return examples, len(examples) - len(unrated), len(unrated)


def train_reward_weighted(config: RewardWeightedConfig, reward=None) -> Path:
    """Fine-tune with Lee et al.'s loss; returns the output (a LoRA adapter or a full pipeline).

    Args:
        config: the run; ``config.reward`` names a scorer used when ``reward`` is None.
        reward: a Scorer or a ``RewardFn`` for images without human ratings.
    """
    data = load_dataset(config.data)
    if reward is None and config.reward:
        reward = config.reward
    fn = as_reward_fn(reward) if reward is not None else None
    examples, human, modelled = rewarded_examples(data, fn)
    logger.info("rewards: %d from human labels, %d from the reward model", human, modelled)
    prior = None
    if config.prior_data:
        prior = examples_from_dataset(load_dataset(config.prior_data))
        if not prior:
            raise AdaptError(f"{config.prior_data}: no pre-training pairs")
    elif config.beta:
        logger.warning("beta is %s but no --prior-data: training without the pre-training term", config.beta)
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
        },
    )
    return trainer.train()
