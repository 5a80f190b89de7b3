"""Scorers that read the image and the prompt together (ImageReward, ...), behind the Scorer API.

CLIP families score from separate image and text embeddings (``scorer.Scorer``); a joint scorer
runs one network over both, so nothing is cached per image. ``JointScorer`` gives such models
the same calls: ``score``, ``score_records`` and the differentiable ``score_pixels``. A family
implements ``forward(model_input, prompts)`` on preprocessed, normalised pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from prefalign.data.images import ImageInput, ImageLoadError, Preprocess
from prefalign.scoring.model_format import ScorerSpec
from prefalign.scoring.pixels import check_pixels, preprocess_pixels
from prefalign.scoring.precision import float_precision
from prefalign.scoring.scorer import ScoreError, ScoreFailure, ScoreResult

logger = logging.getLogger(__name__)


class JointScorer:
    """Base of scorers whose score needs the image and the prompt in one forward pass.

    Args:
        spec: ``prefalign.json`` (kind, preprocessing, head, provenance).
        device: ``"cpu"``, ``"cuda"``...
        precision: ``"auto"`` (default; detected per device, see ``prefalign.scoring.precision``),
            ``"fp32"``, ``"fp16"`` or ``"bf16"`` for the network; heads stay fp32. No int8 path.
        name: how to refer to this scorer in reports.
    """

    uses_text = True

    def __init__(
        self, spec: ScorerSpec, *, device: str | torch.device = "cpu", precision: str = "auto", name=None
    ):
        self.spec = spec
        self.device = torch.device(device)
        self.precision_choice, self.dtype = float_precision(precision, self.device, who=f"{spec.kind} scorer")
        self.precision = self.precision_choice.precision
        self.name = name or spec.provenance.get("name") or spec.kind
        logger.info(
            "%s on %s in %s (%s)", self.name, self.device, self.precision, self.precision_choice.reason
        )

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def preprocess(self) -> Preprocess:
        return self.spec.preprocess

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, device={self.device})"

    def runtime_metadata(self) -> dict[str, str]:
        """How this scorer computes (for output metadata): device, precision and why."""
        return self.precision_choice.runtime_metadata(self.name, self.device)

    # ------------------------------------------------------------------ to implement
    def forward(self, model_input: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """``(B,)`` float32 scores of normalised ``(B, 3, size, size)`` inputs and B prompts."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str] | str) -> torch.Tensor:
        """Differentiable scores of ``(B, 3, H, W)`` float pixels in [0, 1] (one prompt or B).

        Preprocessing runs in torch (``pixels.preprocess_pixels``); gradients flow to ``pixels``.
        """
        prompts = check_pixels(pixels, prompts)
        _check_prompts(prompts)
        return self.forward(preprocess_pixels(pixels.to(self.device), self.preprocess), prompts)

    def score(self, images: Sequence[ImageInput], prompt: str, *, batch_size: int = 4) -> torch.Tensor:
        """Score each image against one prompt (the file path: PIL preprocessing, as the original).

        Returns:
            float32 ``(n,)`` on CPU.

        Raises:
            ImageLoadError: an image cannot be loaded.  ValueError: the prompt is empty.
        """
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images]
        _check_prompts([prompt])
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                chunk = images[i : i + batch_size]
                out.append(
                    self.forward(self.preprocess.batch(chunk).to(self.device), [prompt] * len(chunk)).cpu()
                )
        return torch.cat(out) if out else torch.empty(0)

    def score_records(
        self,
        records: Iterable[tuple[str, Sequence[ImageInput]]],
        *,
        batch_size: int = 4,
        strict: bool = False,
        progress: bool | None = None,
        prefetch: int = 2,
    ) -> ScoreResult:
        """Score many ``(prompt, images)`` records, as ``Scorer.score_records`` (NaN + a failure
        for each image that cannot be loaded; ``prefetch`` is accepted and unused)."""
        from tqdm.auto import tqdm

        records = [(prompt, list(images)) for prompt, images in records]
        scores = [np.full(len(images), np.nan) for _, images in records]
        failures: list[ScoreFailure] = []
        disable = progress is False or (progress is None and not _stderr_tty())
        bar = tqdm(
            total=sum(len(i) for _, i in records), unit="img", desc=f"scoring ({self.name})", disable=disable
        )
        for r, (prompt, images) in enumerate(records):
            if not prompt or not prompt.strip():
                if strict:
                    raise ScoreError(f"record {r}: empty prompt")
                failures.append(ScoreFailure(r, None, f"record {r}", "empty prompt"))
                bar.update(len(images))
                continue
            for start in range(0, len(images), batch_size):
                ok, tensors = [], []
                for i in range(start, min(start + batch_size, len(images))):
                    try:
                        tensors.append(self.preprocess(images[i]))
                        ok.append(i)
                    except ImageLoadError as exc:
                        if strict:
                            raise
                        failures.append(ScoreFailure(r, i, exc.source, exc.reason))
                if tensors:
                    with torch.inference_mode():
                        values = self.forward(torch.stack(tensors).to(self.device), [prompt] * len(ok))
                    scores[r][ok] = values.cpu().double().numpy()
                bar.update(min(batch_size, len(images) - start))
        bar.close()
        return ScoreResult(scores, failures)


def _check_prompts(prompts: Sequence[str]) -> None:
    for prompt in prompts:
        if not prompt or not prompt.strip():
            raise ValueError("empty prompt")


def _stderr_tty() -> bool:
    import sys

    return sys.stderr.isatty()
