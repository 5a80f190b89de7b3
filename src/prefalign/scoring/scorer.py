"""The Scorer: one API over HPS v1/v2, PickScore, CLIP score, the aesthetic predictor and
every model this project trains.

All kinds start from L2-normalised CLIP embeddings; ``model_format.SCORE_KINDS`` says what each
computes. The batch path (``score_records``) encodes each distinct prompt once, batches images
across records, and decodes the next batch in a background thread while the model runs.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from prefalign.data.decode import decode_ahead, decode_workers
from prefalign.data.images import ImageInput, ImageLoadError, Preprocess
from prefalign.errors import PrefalignError
from prefalign.scoring.model_format import HEAD_KINDS, TEXT_FREE_KINDS, ScorerSpec
from prefalign.scoring.precision import DTYPES, INT8_BASE_DTYPE, choose_precision, quantize_int8
from prefalign.scoring.vision import image_features

logger = logging.getLogger(__name__)

# The explicit floating-point precisions (the old name; resolve "auto" with choose_precision first).
PRECISIONS = DTYPES

# Distinct prompts kept encoded; a dataset with more simply re-encodes the oldest.
TEXT_CACHE_SIZE = 65536


class ScoreError(PrefalignError, ValueError):
    """A record that cannot be scored (e.g. an empty prompt)."""


@dataclass
class ScoreFailure:
    """An image (or a whole record) that could not be scored, and why."""

    record: int
    image: int | None
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class ScoreResult:
    """Scores of many records: one float64 array per record, NaN where an image failed."""

    scores: list[np.ndarray]
    failures: list[ScoreFailure] = field(default_factory=list)


class Scorer:
    """Scores images against a prompt with a CLIP-based preference model.

    Args:
        model: a Hugging Face ``CLIPModel`` in eval mode.
        tokenizer: its CLIP tokenizer.
        spec: the score kind, preprocessing and provenance (``prefalign.json``).
        head: the score head for ``aesthetic`` and ``reward`` models.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        precision: ``"auto"`` (default: detected from the hardware, see
            ``prefalign.scoring.precision``), ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``
            (torchao). Heads, the L2 normalisation and the cosine stay fp32; the choice and its
            reason are in ``precision_choice``.
        compile: compile the image tower with ``torch.compile`` and inductor freezing (faster on
            some CPUs, within noise on others); falls back to eager with a warning if it fails.
        name: how to refer to this scorer in reports.

    Example:
        >>> scorer = load_scorer("models/hps-v2")                     # doctest: +SKIP
        >>> scorer.score(["a.png", "b.png"], "a red circle")          # doctest: +SKIP
        tensor([27.31, 24.96])
    """

    #: which of ``prefalign.json``, a ``KIND:`` prefix or ``--kind``, or the catalog decided the kind
    #: (set by ``load_scorer``).
    kind_source: str = "prefalign.json"

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        spec: ScorerSpec,
        *,
        head: nn.Module | None = None,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        compile: bool = False,
        name: str | None = None,
    ):
        if spec.kind in HEAD_KINDS and head is None:
            raise ValueError(f"a {spec.kind} scorer needs its MLP head")
        self.device = torch.device(device)
        self.precision_choice = choose_precision(precision, self.device)
        self.precision = self.precision_choice.precision
        self.dtype = DTYPES.get(self.precision, INT8_BASE_DTYPE)
        # PickScore's scale, kept fp32: in bf16, ln(100) rounds to 4.594 and the scores shrink by 1.1%
        self._logit_scale = model.logit_scale.detach().float().clone().to(self.device)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        if self.precision == "int8":
            quantize_int8(self.model)
        self.head = None if head is None else head.to(self.device).float().eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = name or spec.provenance.get("name") or spec.kind
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._warned_truncation: set[str] = set()
        self._image_fn: Callable[[torch.Tensor], torch.Tensor] = self._image_features
        self.compiled = False
        if compile:
            self._image_fn = self._compiled_image_fn()
        logger.info(
            "%s on %s in %s (%s)", self.name, self.device, self.precision, self.precision_choice.reason
        )

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def preprocess(self) -> Preprocess:
        return self.spec.preprocess

    @property
    def uses_text(self) -> bool:
        return self.kind not in TEXT_FREE_KINDS

    def __repr__(self) -> str:
        return f"Scorer(name={self.name!r}, kind={self.kind!r}, device={self.device}, precision={self.precision})"

    def runtime_metadata(self) -> dict[str, str]:
        """How this scorer computes (for output metadata): device, precision and why, attention."""
        return {
            **self.precision_choice.runtime_metadata(self.name, self.device),
            "attn_implementation": str(getattr(self.model.config, "_attn_implementation", None)),
        }

    # ------------------------------------------------------------------ encoders
    def _image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return image_features(self.model, pixel_values)

    def _compiled_image_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        try:
            import torch._inductor.config as inductor_config

            compiled = torch.compile(self._image_features, dynamic=False)
        except Exception as exc:  # pragma: no cover - depends on the platform's toolchain
            warnings.warn(f"torch.compile unavailable ({exc}); using eager mode", stacklevel=3)
            return self._image_features

        def run(pixel_values: torch.Tensor) -> torch.Tensor:
            if self._image_fn is not run:  # fell back earlier
                return self._image_features(pixel_values)
            try:
                # Freezing folds the (constant) weights into the graph, which lets inductor pre-pack them.
                with inductor_config.patch(freezing=True), torch.no_grad():
                    return compiled(pixel_values)
            except Exception as exc:
                warnings.warn(
                    f"torch.compile failed ({type(exc).__name__}: {exc}); using eager mode", stacklevel=2
                )
                self._image_fn = self._image_features
                self.compiled = False
                return self._image_features(pixel_values)

        self.compiled = True
        return run

    @torch.no_grad()  # not inference_mode: compiled graphs with frozen weights want plain no_grad
    def encode_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (float32) of preprocessed ``(n, 3, H, W)`` pixels."""
        feats = self._image_fn(pixel_values.to(self.device, self.dtype, non_blocking=True)).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def encode_images(self, images: Sequence[ImageInput], batch_size: int = 4) -> torch.Tensor:
        """Load, preprocess and embed images; returns ``(n, d)`` L2-normalised float32."""
        out = [
            self.encode_pixels(self.preprocess.batch(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.model.config.projection_dim)

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise to at most the context length (77), warning once per truncated prompt.

        Each prompt is tokenised once; an overlong one keeps its first ``context_length - 1``
        tokens and its end-of-text token, as OpenAI's ``tokenize(truncate=True)`` and the
        tokenizer's own truncation do.
        """
        rows = []
        for prompt, ids in zip(prompts, self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]):
            if len(ids) > self.context_length:
                if prompt not in self._warned_truncation:
                    self._warned_truncation.add(prompt)
                    warnings.warn(
                        f"prompt of {len(ids)} tokens truncated to {self.context_length}: {prompt[:60]!r}...",
                        stacklevel=3,
                    )
                ids = [*ids[: self.context_length - 1], ids[-1]]
            rows.append(ids)
        width = max(len(ids) for ids in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows])
        attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows])
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @torch.inference_mode()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings (float32), each distinct prompt encoded once."""
        for prompt in prompts:
            if not prompt or not prompt.strip():
                raise ValueError("empty prompt")
        todo = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        if todo:
            enc = self.tokenize(todo)
            feats = self.model.get_text_features(
                input_ids=enc["input_ids"].to(self.device),
                attention_mask=enc["attention_mask"].to(self.device),
            ).pooler_output.float()
            feats = feats / feats.norm(dim=-1, keepdim=True)
            for prompt, f in zip(todo, feats):
                self._text_cache[prompt] = f
            while len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return torch.stack([self._text_cache[p] for p in prompts])

    # ------------------------------------------------------------------ scores
    @torch.inference_mode()
    def score_embeddings(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor | None) -> torch.Tensor:
        """Scores of aligned rows of normalised image and text embeddings (text broadcasts)."""
        head = self.head
        if self.kind == "aesthetic" and head is not None:
            return head(image_embeds.to(self.device)).float()
        if text_embeds is None:
            raise ValueError(f"a {self.kind} score needs the prompt's text embeddings")
        if self.kind == "reward" and head is not None:
            return head(image_embeds.to(self.device), text_embeds.to(self.device)).float()
        cos = (image_embeds.to(self.device) * text_embeds.to(self.device)).sum(-1)
        if self.kind == "hps":
            return 100.0 * cos
        if self.kind == "pickscore":
            scale = self.model.logit_scale
            # the live parameter when it is fp32 (it may be trained); the fp32 copy when it was cast
            return (scale.float() if scale.dtype == torch.float32 else self._logit_scale).exp() * cos
        return cos  # clip

    def score(self, images: Sequence[ImageInput], prompt: str, *, batch_size: int = 4) -> torch.Tensor:
        """Score each image against one prompt; returns a float32 tensor of shape ``(n,)`` on CPU.

        Raises:
            ImageLoadError: an image cannot be loaded (names the file and the reason).
            ValueError: the prompt is empty (for kinds that read it).
        """
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images]
        from prefalign.scoring.shared_images import SharedImages

        # Images of equal content are embedded once and share the score (see score_records).
        plan = SharedImages.plan([(prompt, list(images))], by_prompt=False)
        text = self.encode_text([prompt]) if self.uses_text else None
        image_embeds = self.encode_images(plan.records[0][1], batch_size=batch_size)
        scores = self.score_embeddings(image_embeds, text).cpu()
        return scores[[i for _, i in plan.source[0]]] if plan.n_shared else scores

    def score_pixels(self, pixels: torch.Tensor, prompts: Sequence[str] | str) -> torch.Tensor:
        """Differentiable scores of ``(B, 3, H, W)`` float pixels in [0, 1] (one prompt or B).

        Preprocessing runs in torch; gradients flow to ``pixels`` (see ``scoring.pixels``).
        """
        from prefalign.scoring.pixels import clip_score_pixels

        return clip_score_pixels(self, pixels, prompts)

    def probabilities(self, images: Sequence[ImageInput], prompt: str) -> torch.Tensor:
        """Softmax of the scores over one prompt's images (PickScore's preference probabilities)."""
        return torch.softmax(self.score(images, prompt), dim=0)

    def score_records(
        self,
        records: Iterable[tuple[str, Sequence[ImageInput]]],
        *,
        batch_size: int = 4,
        strict: bool = False,
        progress: bool | None = None,
        prefetch: int = 2,
        workers: int | None = None,
    ) -> ScoreResult:
        """Score many ``(prompt, images)`` records (see ``_score_records``).

        Images of equal content (a file's bytes, an array's pixels) with the same prompt are
        scored once per call and share the score (``shared_images``), so an image shown twice
        ties with itself whatever the batch size.
        """
        from prefalign.scoring.shared_images import SharedImages

        plan = SharedImages.plan([(p, list(imgs)) for p, imgs in records], by_prompt=self.uses_text)
        if plan.n_shared:
            logger.info("%d repeated images scored once and shared", plan.n_shared)
        result = self._score_records(
            plan.records,
            batch_size=batch_size,
            strict=strict,
            progress=progress,
            prefetch=prefetch,
            workers=workers,
        )
        return plan.expand(result)

    def _score_records(
        self,
        records: Iterable[tuple[str, Sequence[ImageInput]]],
        *,
        batch_size: int = 4,
        strict: bool = False,
        progress: bool | None = None,
        prefetch: int = 2,
        workers: int | None = None,
    ) -> ScoreResult:
        """Score many ``(prompt, images)`` records.

        Images of all records are batched together; each distinct prompt is encoded once; the
        next batches are decoded and preprocessed in a background thread while the model runs.
        With a compiled image tower the last batch is padded to ``batch_size`` so the graph
        never recompiles.

        Args:
            records: ``(prompt, images)`` pairs; images are paths, PIL images, arrays or tensors.
            batch_size: images per forward pass (4 is the sweet spot on two CPU cores).
            strict: raise at the first failure instead of recording it and going on.
            progress: show a progress bar (default: when stderr is a terminal).
            prefetch: batches decoded ahead of the model (at least ``workers``).
            workers: decode threads (default ``decode_workers(device)``: 1 on a CPU, where the
                model uses the cores; up to 8 beside a GPU).

        Returns:
            A ``ScoreResult``: one array per record (NaN for images that failed) and the failures.
        """
        from tqdm.auto import tqdm

        records = [(prompt, list(images)) for prompt, images in records]
        scores = [np.full(len(images), np.nan) for _, images in records]
        failures: list[ScoreFailure] = []

        def fail(rec: int, img: int | None, source: str, reason: str) -> None:
            failure = ScoreFailure(rec, img, source, reason)
            if strict:
                raise ImageLoadError(source, reason) if img is not None else ScoreError(str(failure))
            failures.append(failure)
            logger.debug("skipped %s", failure)

        items: list[tuple[int, int, ImageInput]] = []
        for r, (prompt, images) in enumerate(records):
            if self.uses_text and (not prompt or not prompt.strip()):
                fail(r, None, f"record {r}", "empty prompt")
                continue
            items.extend((r, i, img) for i, img in enumerate(images))
        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

        bar = tqdm(
            total=len(items), unit="img", desc=f"scoring ({self.name})", disable=_no_progress(progress)
        )
        sources = ([src for _, _, src in batch] for batch in batches)
        workers = decode_workers(self.device) if workers is None else workers
        pin = self.device.type == "cuda"
        with closing(
            decode_ahead(self.preprocess, sources, workers=workers, ahead=prefetch, pin_memory=pin)
        ) as decoded:
            for batch, done in zip(batches, decoded):
                for k, source, reason in done.errors:
                    fail(batch[k][0], batch[k][1], source, reason)
                if done.pixels is not None:
                    self._score_batch([batch[k] for k in done.ok], done.pixels, records, scores, batch_size)
                bar.update(len(batch))
        bar.close()
        return ScoreResult(scores, failures)

    def _score_batch(self, batch, pixels, records, scores, batch_size: int) -> None:
        n = pixels.shape[0]
        if self.compiled and n < batch_size:  # keep one static shape for the compiled graph
            pixels = torch.cat([pixels, pixels[-1:].expand(batch_size - n, -1, -1, -1)])
        image_embeds = self.encode_pixels(pixels)[:n]
        text = self.encode_text([records[r][0] for r, _, _ in batch]) if self.uses_text else None
        values = self.score_embeddings(image_embeds, text).cpu().double().numpy()
        for (r, i, _), v in zip(batch, values):
            scores[r][i] = v


def _no_progress(progress: bool | None) -> bool:
    if progress is None:
        import sys

        return not sys.stderr.isatty()
    return not progress
