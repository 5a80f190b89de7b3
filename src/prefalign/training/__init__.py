"""The training foundation every trainer builds on: one config vocabulary and one parser.

``TrainingConfig`` holds the settings users know from transformers/trl/diffusers
(``max_steps``, ``per_device_train_batch_size``, ``save_steps`` ...); each trainer's config
derives from it and adds only its method's fields. ``prefalign.training.cli`` turns any of them
into a command line through ``transformers.HfArgumentParser``. Knows no method.
"""

from prefalign.training.config import ConfigError, TrainingConfig, option

__all__ = ["ConfigError", "TrainingConfig", "option"]
