"""Whole evaluations of datasets, one module per command: score (sharded across processes),
measure, gather.

The command line and the demo call these. Under ``accelerate launch`` (or any running
``torch.distributed`` process group) each process scores a contiguous shard and the metric
classes gather their states, so every process ends with the 1-process result.
"""

from prefalign.evaluate.runs.agreement import AgreementRun, run_agreement
from prefalign.evaluate.runs.common import (
    IMAGE_METRICS,
    SCORE_METRICS,
    score_records,
    scorer_runtime,
    unique_names,
)
from prefalign.evaluate.runs.compare import CompareRun, run_compare
from prefalign.evaluate.runs.images import ImageItem, ImagesRun, image_items, run_images
from prefalign.evaluate.runs.preference import PreferenceRun, run_preference

__all__ = [
    "IMAGE_METRICS",
    "SCORE_METRICS",
    "AgreementRun",
    "CompareRun",
    "ImageItem",
    "ImagesRun",
    "PreferenceRun",
    "image_items",
    "run_agreement",
    "run_compare",
    "run_images",
    "run_preference",
    "score_records",
    "scorer_runtime",
    "unique_names",
]
