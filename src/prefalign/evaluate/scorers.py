"""Scorers an evaluation accepts: everything ``load_scorer`` loads, plus the ``random`` baseline."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from prefalign.scoring.load import load_scorer
from prefalign.scoring.protocol import ScorerLike
from prefalign.scoring.scorer import ScoreResult


class RandomScorer(ScorerLike):
    """Uniform random scores in [0, 1): the chance baseline of every table (a ``ScorerLike``).

    Each image's score is a function of the seed, the prompt and the image's real path only, so
    it is the same whichever process scores it, in whatever order (sharded runs stay exact), and
    however the dataset directory was named (relative or absolute).

    Args:
        seed: the seed; ``random:7`` on the command line.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self._name = "random" if self.seed == 0 else f"random:{self.seed}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "random"

    @property
    def uses_text(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"RandomScorer(seed={self.seed})"

    def _value(self, prompt: str, image: object, position: int) -> float:
        if isinstance(image, (str, os.PathLike)) and "://" not in str(image):
            ident = os.path.realpath(image)
        else:
            ident = str(image) if isinstance(image, str) else f"#{position}"
        digest = hashlib.blake2b(f"{self.seed}\0{prompt}\0{ident}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2.0**64

    def score(self, images: Sequence[object], prompt: str, *, batch_size: int = 4) -> torch.Tensor:
        """One random score per image, as a float32 tensor (``batch_size`` is accepted and unused)."""
        return torch.tensor([self._value(prompt, img, i) for i, img in enumerate(images)])

    def score_records(
        self,
        records: Iterable[tuple[str, Sequence[object]]],
        *,
        batch_size: int = 4,
        progress: bool | None = None,
        **_: object,
    ) -> ScoreResult:
        """Random scores of ``(prompt, images)`` records (the ``ScorerLike.score_records`` contract;
        ``batch_size``, ``progress`` and ``Scorer``'s other options are accepted and unused)."""
        return ScoreResult(
            [
                np.array([self._value(prompt, img, i) for i, img in enumerate(images)], dtype=np.float64)
                for prompt, images in records
            ]
        )


def load_eval_scorer(
    name: str, *, device: str | None = "auto", precision: str = "auto", compile: bool = False
) -> ScorerLike:
    """``random`` or ``random:SEED``, else whatever ``load_scorer`` accepts (directory, ``clip:M``...).

    Args:
        name: the scorer's name as given on the command line.
        device, precision, compile: passed to ``load_scorer``.

    Returns:
        A ``ScorerLike``: a loaded scorer or a ``RandomScorer``.
    """
    if name == "random" or name.startswith("random:"):
        _, _, seed = name.partition(":")
        try:
            return RandomScorer(int(seed or 0))
        except ValueError:
            from prefalign.evaluate.errors import EvaluationError

            raise EvaluationError(f"{name}: the random scorer's seed must be an integer (random:7)") from None
    return load_scorer(name, device=device, precision=precision, compile=compile)
