"""Records, the dataset format, safe image loading, and the tools that build and check datasets.

Names load on first use, so that mining a chat export or splitting a dataset never imports
torch (which :mod:`prefalign.data.images` needs).

    >>> from prefalign.data import from_discord, fetch_images, dataset_stats   # doctest: +SKIP
    >>> report = from_discord(["dreambot-1.json"], "choices")                  # doctest: +SKIP
    >>> fetch_images("choices")                                                # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefalign._lazy import lazy_attributes

# name -> module that defines it
_LAZY = {
    # the format
    "Dataset": "prefalign.data.dataset",
    "DatasetError": "prefalign.data.dataset",
    "DatasetWriter": "prefalign.data.dataset",
    "Record": "prefalign.data.dataset",
    "load_dataset": "prefalign.data.dataset",
    "save_dataset": "prefalign.data.dataset",
    # images
    "CLIP_MEAN": "prefalign.data.images",
    "CLIP_STD": "prefalign.data.images",
    "ImageLoadError": "prefalign.data.images",
    "Preprocess": "prefalign.data.images",
    "load_image": "prefalign.data.images",
    # Discord exports
    "DiscordExportError": "prefalign.data.discord",
    "iter_messages": "prefalign.data.discord",
    "DreamGrammar": "prefalign.data.dreambot",
    "MiningError": "prefalign.data.mining",
    "MiningReport": "prefalign.data.mining",
    "from_discord": "prefalign.data.mining",
    "mine_choices": "prefalign.data.mining",
    "fetch_images": "prefalign.data.fetch",
    # public sets
    "IMPORT_FORMATS": "prefalign.data.importers",
    "EXPORT_FORMATS": "prefalign.data.importers",
    "import_dataset": "prefalign.data.importers",
    "export_dataset": "prefalign.data.importers",
    # tools
    "split_dataset": "prefalign.data.split",
    "validate_dataset": "prefalign.data.validate",
    "dataset_stats": "prefalign.data.stats",
}

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.data.dataset import (
        Dataset,
        DatasetError,
        DatasetWriter,
        Record,
        load_dataset,
        save_dataset,
    )
    from prefalign.data.discord import DiscordExportError, iter_messages
    from prefalign.data.dreambot import DreamGrammar
    from prefalign.data.fetch import fetch_images
    from prefalign.data.images import CLIP_MEAN, CLIP_STD, ImageLoadError, Preprocess, load_image
    from prefalign.data.importers import EXPORT_FORMATS, IMPORT_FORMATS, export_dataset, import_dataset
    from prefalign.data.mining import MiningError, MiningReport, from_discord, mine_choices
    from prefalign.data.split import split_dataset
    from prefalign.data.stats import dataset_stats
    from prefalign.data.validate import validate_dataset

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "Dataset",
    "DatasetError",
    "DatasetWriter",
    "DiscordExportError",
    "DreamGrammar",
    "ImageLoadError",
    "MiningError",
    "MiningReport",
    "Preprocess",
    "Record",
    "dataset_stats",
    "export_dataset",
    "fetch_images",
    "from_discord",
    "import_dataset",
    "iter_messages",
    "load_dataset",
    "load_image",
    "mine_choices",
    "save_dataset",
    "split_dataset",
    "validate_dataset",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
