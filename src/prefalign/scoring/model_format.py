"""The scorer model format: a Hugging Face CLIP directory plus ``prefalign.json``.

``prefalign.json`` holds what the weights alone do not say::

    {
      "format_version": 1,
      "kind": "hps",                       # hps | clip | pickscore | aesthetic | reward
      "preprocess": {"mode": "pad", "size": 224, "mean": [...], "std": [...]},
      "head": null,                        # or {"type": "aesthetic-mlp" | "reward-mlp", "file": "head.safetensors"}
      "provenance": {"converted_from": "hps-v2", "source": "HPS_v2_compressed.pt", ...}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefalign.data.images import Preprocess
from prefalign.errors import PrefalignError
from prefalign.files import write_atomic
from prefalign.scoring.catalog import HEAD_KINDS, SCORE_KINDS, TEXT_FREE_KINDS  # noqa: F401  (re-exported)

SPEC_FILE = "prefalign.json"
HEAD_FILE = "head.safetensors"
FORMAT_VERSION = 1


class ModelFormatError(PrefalignError, ValueError):
    """A model directory that is not in the prefalign format."""


@dataclass
class ScorerSpec:
    """The contents of ``prefalign.json``."""

    kind: str
    preprocess: Preprocess
    head: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ModelFormatError(f"unknown score kind {self.kind!r}; expected one of {sorted(SCORE_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "kind": self.kind,
            "preprocess": self.preprocess.to_dict(),
            "head": self.head,
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``prefalign.json`` into ``directory`` atomically."""
        path = Path(directory) / SPEC_FILE
        write_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ScorerSpec:
        path = Path(directory) / SPEC_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: cannot read ({exc})") from None
        if not isinstance(d, dict) or "kind" not in d:
            raise ModelFormatError(f"{path}: missing the 'kind' field")
        version = d.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{path}: format_version {version} is newer than this prefalign understands ({FORMAT_VERSION})"
            )
        try:
            return cls(
                kind=d["kind"],
                preprocess=Preprocess.from_dict(d.get("preprocess") or {}),
                head=d.get("head"),
                provenance=d.get("provenance") or {},
                format_version=version,
            )
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: {exc}") from None
