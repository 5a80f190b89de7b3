"""Records, the dataset format, and safe image loading."""

from prefalign.data.dataset import Dataset, DatasetError, Record, load_dataset, save_dataset
from prefalign.data.images import (
    CLIP_MEAN,
    CLIP_STD,
    ImageLoadError,
    Preprocess,
    load_image,
)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "Dataset",
    "DatasetError",
    "ImageLoadError",
    "Preprocess",
    "Record",
    "load_dataset",
    "load_image",
    "save_dataset",
]
