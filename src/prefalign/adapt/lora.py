"""HPS section 6: LoRA on the selected set, the identifier naming the non-preferred concept."""

from __future__ import annotations

import logging
from pathlib import Path

from prefalign.adapt.config import LoraTrainingConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.selection import NON_PREFERRED, PAPER_AESTHETIC_THRESHOLD, REGULARIZATION
from prefalign.adapt.trainer import DiffusionFineTuner, examples_from_dataset
from prefalign.data.dataset import Dataset, load_dataset

logger = logging.getLogger(__name__)
NO_REGULARIZATION_NOTE = "no regularisation set: not the paper's recipe"


def identifier_of(data: Dataset) -> str | None:
    """The identifier ``select_training_set`` recorded on the data's non-preferred pairs, if any."""
    found = {r.meta.get("identifier") for r in data if r.meta.get("kind") == NON_PREFERRED}
    found.discard(None)
    if len(found) > 1:
        raise AdaptError(f"{data.root}: non-preferred pairs carry different identifiers {sorted(found)}")
    return found.pop() if found else None


def train_lora(config: LoraTrainingConfig) -> Path:
    """Train a LoRA adapter on an image-caption dataset; returns the adapter directory.

    The adapter records the identifier (``config.identifier`` or the one in the data), which
    ``generate`` then uses as negative prompt.
    """
    data = load_dataset(config.data)
    identifier = config.identifier if config.identifier is not None else identifier_of(data)
    regularization = sum(len(r.images) for r in data if r.meta.get("kind") == REGULARIZATION)
    notes = []
    if not regularization:
        # HPS section 6 mixes 200,231 LAION images (aesthetic score >= 6.5) into the training set.
        notes.append(NO_REGULARIZATION_NOTE)
        logger.warning(
            "%s: %s (the paper mixes in LAION images with aesthetic score >= %s; "
            "`adapt select --regularization` adds them)",
            config.data,
            NO_REGULARIZATION_NOTE,
            PAPER_AESTHETIC_THRESHOLD,
        )
    trainer = DiffusionFineTuner(
        config,
        examples_from_dataset(data),
        train="lora",
        info={
            "method": "hps-lora",
            "identifier": identifier,
            "data": str(config.data),
            "regularization_pairs": regularization,
            "recipe_notes": notes,
        },
    )
    return trainer.train()
