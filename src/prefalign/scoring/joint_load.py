"""Loading of joint scorers (``catalog.JOINT_KINDS``) by their kind in ``prefalign.json``."""

from __future__ import annotations

from pathlib import Path

from prefalign.scoring.joint import JointScorer
from prefalign.scoring.model_format import ScorerSpec


def load_joint_scorer(path: Path, spec: ScorerSpec, **kwargs) -> JointScorer:
    """Build the scorer of a joint-kind model directory (``device``, ``precision``, ``name``;
    ``allow_slow``: let a GPU-only scorer such as HPSv3 run on the CPU)."""
    allow_slow = kwargs.pop("allow_slow", False)
    if spec.kind == "imagereward":
        from prefalign.scoring.imagereward import load_imagereward

        return load_imagereward(Path(path), spec, **kwargs)
    if spec.kind == "mps":
        from prefalign.scoring.mps import load_mps

        return load_mps(Path(path), spec, **kwargs)
    if spec.kind == "hpsv3":
        from prefalign.scoring.hpsv3 import load_hpsv3

        return load_hpsv3(Path(path), spec, allow_slow=allow_slow, **kwargs)
    raise ValueError(f"{path}: no loader for kind {spec.kind!r}")
