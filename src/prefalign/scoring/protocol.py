"""What "a scorer" means to the rest of the toolkit: two ``typing.Protocol`` classes.

* :class:`ScorerLike`: scores images against prompts (``name``, ``kind``, ``uses_text``,
  ``score`` for one prompt, ``score_records`` for a batch of ``(prompt, images)`` records).
  Every scorer ``load_scorer`` returns (CLIP-embedding scorers, ImageReward, MPS), the
  ``random`` baseline of ``prefalign.evaluate`` and your own class implement it; evaluate,
  adapt and benchmark accept any of them and dispatch on this protocol, not on attribute names.
* :class:`PixelScorerLike`: scores pixels differentiably (``score_pixels``), what a reward
  for backpropagation into a generator needs (every loaded scorer and ``WeightedReward``).

Both are ``runtime_checkable``: ``isinstance(obj, ScorerLike)`` checks that the members exist
(not their signatures; mypy checks those statically).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from prefalign.scoring.scorer import ScoreResult


@runtime_checkable
class ScorerLike(Protocol):
    """Something that scores images against prompts.

    Attributes:
        name: how reports refer to it (``"hps-v2"``, ``"random:7"``...).
        kind: the score's family and unit (``"hps"`` 100·cos, ``"reward"`` in (0, 1),
            ``"imagereward"``, ``"random"``...); see ``prefalign.scoring.SCORE_KINDS``.
        uses_text: whether the prompt changes the score (False for aesthetic and random).
    """

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def uses_text(self) -> bool: ...

    def score(self, images: Sequence[Any], prompt: str, *, batch_size: int = 4) -> torch.Tensor:
        """``(n,)`` float32 CPU scores of ``n`` images (paths, PIL images...) against one prompt."""
        ...

    def score_records(
        self,
        records: Iterable[tuple[str, Sequence[Any]]],
        *,
        batch_size: int = 4,
        progress: bool | None = None,
    ) -> ScoreResult:
        """Scores of many ``(prompt, images)`` records: one float64 array per record, NaN and a
        ``ScoreFailure`` for each image that could not be scored."""
        ...


@runtime_checkable
class PixelScorerLike(Protocol):
    """Anything that scores a batch of images differentiably: a scorer or a ``WeightedReward``."""

    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str] | str) -> torch.Tensor:
        """``(B,)`` float32 scores of ``(B, 3, H, W)`` pixels in [0, 1], differentiable in ``pixels``."""
        ...
