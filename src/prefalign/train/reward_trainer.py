"""The Lee et al. reward model: r(x, z) in (0, 1) learnt from per-image good/bad labels.

CLIP stays frozen, so every image and every prompt (with its perturbations) is embedded once
before training and only the MLP head trains. The loss is ``MSE + λ · prompt classification``
(see ``losses.reward_loss``); the perturbations come from the compositional prompt family
(``prompts.perturb_prompt``), fixed per prompt by the seed so that runs and resumptions agree.
"""

from __future__ import annotations

import datetime as _dt
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefalign.data.images import ImageLoadError, Preprocess
from prefalign.train.examples import RatedImage, SkipReport, rated_images, require_examples, split_records
from prefalign.train.loop import Trainer, TrainerState
from prefalign.train.losses import reward_loss
from prefalign.train.prompts import CompositionalFamily, perturb_prompt
from prefalign.train.reward_config import RewardConfig

logger = logging.getLogger(__name__)

EMBED_BATCH = 16  # images per forward pass of the frozen image tower while caching embeddings


class RewardModel(nn.Module):
    """The trainable part: the MLP head, applied to each image against each of its prompts."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, image_embeds: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` rewards of ``(B, d)`` images against ``(B, N, d)`` prompts."""
        return self.head(image_embeds[:, None, :], prompt_embeds)


class RewardTrainer(Trainer):
    """Train a Lee et al. reward model from a dataset with per-image ``ratings`` in [0, 1].

    Args:
        config: a ``RewardConfig``.
        family: the compositional prompt family of the perturbations (default: ``config.family``
            if set, else the built-in family). Prompts outside it train with the MSE term only.
        callbacks: called as ``callback(trainer, state)`` after every step.
    """

    name = "reward model"
    config: RewardConfig

    def __init__(self, config: RewardConfig, *, family: CompositionalFamily | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        if family is None:
            family = CompositionalFamily.from_yaml(config.family) if config.family else CompositionalFamily()
        self.family = family

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        train_set, eval_set = split_records(cfg.data, cfg.eval_data, cfg.eval_fraction, cfg.seed)
        train, skips = rated_images(train_set, check_images=cfg.check_images)
        held, eval_skips = rated_images(eval_set, check_images=cfg.check_images)
        skips.merge(eval_skips)
        require_examples(train, skips, cfg.data, "labelled images")

        from prefalign.scoring import load_scorer

        # fp32 weights to train from, whatever the machine (--mixed-precision is accelerate's job)
        self.scorer = load_scorer(cfg.base, device=str(self.accelerator.device), precision="fp32")
        base = self.scorer.spec.preprocess
        self.preprocess = Preprocess(
            mode=cfg.preprocess,
            size=self.scorer.model.config.vision_config.image_size,
            mean=base.mean,
            std=base.std,
        )
        failed = self._embed_images(sorted({e.image for e in (*train, *held)}))
        self.train_examples = self._keep_loaded(train, failed, skips)
        self.eval_examples = self._keep_loaded(held, failed, skips)
        self.skipped = skips
        require_examples(self.train_examples, SkipReport(), cfg.data, "labelled images")
        self._embed_prompts(sorted({e.prompt for e in (*self.train_examples, *self.eval_examples)}))

    def _embed_images(self, paths: list[str]) -> dict[str, str]:
        """Cache each image's embedding (sharded over processes); return the failures by path."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        mine = paths[acc.process_index :: acc.num_processes]
        local: list[tuple[str, torch.Tensor | str]] = []
        for start in range(0, len(mine), EMBED_BATCH):
            ok, pixels = [], []
            for path in mine[start : start + EMBED_BATCH]:
                try:
                    pixels.append(self.preprocess(path))
                    ok.append(path)
                except ImageLoadError as exc:
                    local.append((path, exc.reason))
            if pixels:
                embeds = self.scorer.encode_pixels(torch.stack(pixels)).cpu()
                local.extend(zip(ok, embeds))
        everything = gather_object(local) if acc.num_processes > 1 else local
        self.image_index = {}
        rows, failed = [], {}
        for path, value in sorted(everything, key=lambda kv: kv[0]):
            if isinstance(value, str):
                failed[path] = value
            else:
                self.image_index[path] = len(rows)
                rows.append(value)
        dim = self.scorer.model.config.projection_dim
        self.image_embeds = torch.stack(rows) if rows else torch.empty(0, dim)
        return failed

    def _keep_loaded(
        self, examples: list[RatedImage], failed: dict[str, str], skips: SkipReport
    ) -> list[RatedImage]:
        for e in examples:
            if e.image in failed:
                skips.add(f"image failed to load: {failed[e.image]}", e.id)
        return [e for e in examples if e.image not in failed]

    def _embed_prompts(self, prompts: list[str]) -> None:
        """Embed each prompt and its N − 1 perturbations (fixed per prompt by the seed)."""
        cfg = self.config
        texts: dict[str, int] = {}
        self.prompt_rows: dict[str, list[int]] = {}
        outside = 0
        for prompt in prompts:
            rng = random.Random(f"{cfg.seed}:{prompt}")
            others = perturb_prompt(prompt, cfg.num_prompts - 1, family=self.family, rng=rng)
            if others is None:
                others = []
                outside += 1
            self.prompt_rows[prompt] = [texts.setdefault(t, len(texts)) for t in [prompt, *others]]
        if outside and cfg.num_prompts > 1 and cfg.aux_weight:
            logger.warning(
                "%d of %d prompts are outside the compositional prompt family: their images train with "
                "the MSE term only (give the family with --family FILE.yaml)",
                outside,
                len(prompts),
            )
        self.prompts_outside_family = outside
        names = list(texts)
        embeds = [self.scorer.encode_text(names[i : i + 64]) for i in range(0, len(names), 64)]
        self.text_embeds = torch.cat(embeds).cpu()

    def build_model(self) -> nn.Module:
        from prefalign.scoring.heads import RewardMLP

        dim = self.image_embeds.shape[-1]
        return RewardModel(RewardMLP([2 * dim, self.config.hidden_size, 1]))

    # ------------------------------------------------------------------ batches
    def collate(self, examples: list[RatedImage]) -> dict[str, Any]:
        """Embeddings of the images and of each image's prompts (true prompt first, padded)."""
        n = max(len(self.prompt_rows[e.prompt]) for e in examples)
        rows = torch.zeros(len(examples), n, dtype=torch.long)
        mask = torch.zeros(len(examples), n, dtype=torch.bool)
        for b, e in enumerate(examples):
            ids = self.prompt_rows[e.prompt]
            rows[b, : len(ids)] = torch.tensor(ids)
            mask[b, : len(ids)] = True
        return {
            "image_embeds": self.image_embeds[[self.image_index[e.image] for e in examples]],
            "prompt_embeds": self.text_embeds[rows],
            "prompt_mask": mask,
            "labels": torch.tensor([e.label for e in examples]),
        }

    def compute_loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        rewards = model(batch["image_embeds"], batch["prompt_embeds"])
        labels, mask = batch["labels"], batch["prompt_mask"]
        loss, mse, aux = reward_loss(
            rewards,
            mask,
            labels,
            temperature=cfg.temperature,
            aux_weight=cfg.aux_weight,
            good_threshold=cfg.good_threshold,
        )
        r = rewards[:, 0].detach()
        good = labels >= cfg.good_threshold
        metrics = {
            "mse": mse.detach(),
            "aux": aux.detach(),
            "accuracy": ((r >= 0.5) == good).float().mean(),
            "reward_mean": r.mean(),
            "reward_min": r.min(),
            "reward_max": r.max(),
        }
        return loss, metrics

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Pairwise accuracy (good above bad, same prompt), label accuracy, MSE, prompt accuracy.

        The held-out embeddings are cached, so every process evaluates all of them (no sync).
        """
        cfg = self.config
        head = self.accelerator.unwrap_model(model)
        device = self.accelerator.device
        batch = {k: v.to(device) for k, v in self.collate(self.eval_examples).items()}
        rewards = head(batch["image_embeds"], batch["prompt_embeds"]).float().cpu()
        labels = batch["labels"].cpu()
        mask = batch["prompt_mask"].cpu()
        r = rewards[:, 0]
        good = labels >= cfg.good_threshold
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(self.eval_examples):
            by_prompt[e.prompt].append(i)
        right = pairs = 0.0
        for idx in by_prompt.values():
            t = torch.tensor(idx)
            g, b = r[t][good[t]], r[t][~good[t]]
            if len(g) and len(b):
                diff = g[:, None] - b[None, :]
                right += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
                pairs += diff.numel()
        # Prompt accuracy: for good images with perturbations, does the true prompt score highest?
        ranked = good & (mask.sum(-1) > 1)
        top = rewards.masked_fill(~mask, float("-inf")).argmax(-1) == 0
        return {
            "eval_pairwise_accuracy": right / pairs if pairs else float("nan"),
            "eval_accuracy": float(((r >= 0.5) == good).float().mean()),
            "eval_mse": float(((labels - r) ** 2).mean()),
            "eval_prompt_accuracy": float(top[ranked].float().mean()) if ranked.any() else float("nan"),
            "eval_pairs": pairs,
        }

    # ------------------------------------------------------------------ output
    def save_model(self, model: nn.Module, out: Path, state: TrainerState) -> None:
        from prefalign.scoring.convert import save_model_dir
        from prefalign.scoring.model_format import ScorerSpec

        cfg = self.config
        evals = state.eval_log
        spec = ScorerSpec(
            kind="reward",
            preprocess=self.preprocess,
            provenance={
                "trained_by": "prefalign train reward",
                "method": "reward model (Lee et al.)",
                "base": cfg.base,
                "data": str(cfg.data),
                "steps": state.step,
                "eval_pairwise_accuracy": evals[-1].get("eval_pairwise_accuracy") if evals else None,
                "prompt_family": self.family.to_dict(),
                "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        head = model.head.cpu().float().eval()
        save_model_dir(out, self.scorer.model.cpu(), self.scorer.tokenizer, spec, head, overwrite=True)
