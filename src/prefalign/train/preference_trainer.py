"""The HPS preference classifier (Wu et al.): CLIP fine-tuned on n-way human choices.

For each record, ``logits_i = logit_scale · cos(image_i, prompt)`` over its n images and the loss
is the cross-entropy against the chosen index. Records of 2, 3 and 4 images mix in one batch:
images are padded to the batch's largest record and masked out of the softmax, and only the real
images go through the image tower. The trained model is scored as HPS = 100 · cos.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prefalign.data.images import ImageLoadError, Preprocess
from prefalign.train.examples import ChoiceExample, choice_examples, require_examples, split_records
from prefalign.train.freezing import clamp_logit_scale, parameter_groups, unfreeze_last_blocks
from prefalign.train.loop import Trainer, TrainerState
from prefalign.train.losses import choice_accuracy, choice_logits, choice_loss
from prefalign.train.preference_config import PreferenceConfig

logger = logging.getLogger(__name__)


class ChoiceModel(nn.Module):
    """CLIP returning choice logits; one forward, so DDP sees (and syncs) every trainable weight."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(
        self,
        pixel_values: torch.Tensor,
        image_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``(B, n)`` logits from ``(B, n, 3, H, W)`` pixels, their mask and ``(B, L)`` tokens."""
        if bool(image_mask.any()):
            real = self.clip.get_image_features(pixel_values=pixel_values[image_mask]).pooler_output
            image_embeds = real.new_zeros(*image_mask.shape, real.shape[-1])
            image_embeds[image_mask] = real
        else:  # every record of the batch failed to load: still touch every weight, for DDP
            dummy = self.clip.get_image_features(pixel_values=pixel_values[:1, 0]).pooler_output
            image_embeds = dummy.new_zeros(*image_mask.shape, dummy.shape[-1]) + 0.0 * dummy.sum()
        text_embeds = self.clip.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask
        ).pooler_output
        return choice_logits(image_embeds, text_embeds, self.clip.logit_scale)


class PreferenceTrainer(Trainer):
    """Train an HPS-style preference classifier from a prefalign dataset.

    Args:
        config: a ``PreferenceConfig`` (the paper's defaults unless changed).
        callbacks: called as ``callback(trainer, state)`` after every step.

    Example:
        >>> from prefalign.train import PreferenceConfig, PreferenceTrainer
        >>> cfg = PreferenceConfig(data="my-choices", output_dir="models/my-hps")      # doctest: +SKIP
        >>> result = PreferenceTrainer(cfg).train()                             # doctest: +SKIP
        >>> result.eval_after["eval_accuracy"]                                  # doctest: +SKIP
    """

    name = "preference model"
    config: PreferenceConfig

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        train_set, eval_set = split_records(cfg.data, cfg.eval_data, cfg.eval_fraction, cfg.seed)
        self.train_examples, skips = choice_examples(train_set, check_images=cfg.check_images)
        self.eval_examples, eval_skips = choice_examples(eval_set, check_images=cfg.check_images)
        skips.merge(eval_skips)
        self.skipped = skips
        require_examples(self.train_examples, skips, cfg.data, "choice records")

        from prefalign.scoring import load_scorer

        # The Scorer loader is the one door to base models: it refuses what is not CLIP and
        # knows model directories, hub ids and converted names alike.
        base = load_scorer(cfg.base, device="cpu", precision="fp32")  # train from fp32 weights
        self.clip, self.tokenizer = base.model, base.tokenizer
        self.context_length = base.context_length
        spec = base.spec.preprocess
        self.preprocess = Preprocess(
            mode=cfg.preprocess, size=self.clip.config.vision_config.image_size, mean=spec.mean, std=spec.std
        )

    def build_model(self) -> nn.Module:
        cfg = self.config
        self.clip.float()
        unfreeze_last_blocks(
            self.clip,
            cfg.vision_blocks,
            cfg.text_blocks,
            logit_scale=cfg.train_logit_scale,
            semantics=cfg.unlock_semantics,
        )
        if cfg.gradient_checkpointing:  # transformers' CLIP recomputes each encoder layer in backward
            kwargs = {"use_reentrant": False}
            if hasattr(self.clip, "activation_checkpointing_enable"):  # its new name in transformers 5.2x
                self.clip.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                self.clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        return ChoiceModel(self.clip)

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Keep the temperature in CLIP's range: exp(logit_scale) <= ``max_logit_scale`` (100)."""
        clamp_logit_scale(self.accelerator.unwrap_model(model).clip, self.config.max_logit_scale)

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        return parameter_groups(model, self.config.weight_decay)

    # ------------------------------------------------------------------ batches
    def collate(self, examples: list[ChoiceExample]) -> dict[str, Any]:
        """Pad records to the batch's largest n; a record whose image fails to load is dropped."""
        size = self.preprocess.size
        n_max = max(len(e.images) for e in examples)
        pixels = torch.zeros(len(examples), n_max, 3, size, size)
        mask = torch.zeros(len(examples), n_max, dtype=torch.bool)
        valid = torch.ones(len(examples), dtype=torch.bool)
        failures: list[tuple[str, str]] = []
        for b, example in enumerate(examples):
            try:
                images = [self.preprocess(path) for path in example.images]
            except ImageLoadError as exc:
                valid[b] = False
                failures.append((exc.source, exc.reason))
                continue
            pixels[b, : len(images)] = torch.stack(images)
            mask[b, : len(images)] = True
        tokens = self.tokenizer(
            [e.prompt for e in examples],
            padding=True,
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return {
            "pixel_values": pixels,
            "image_mask": mask,
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "chosen": torch.tensor([e.chosen for e in examples]),
            "valid": valid,
            "failures": failures,
        }

    def _logits(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(batch["pixel_values"], batch["image_mask"], batch["input_ids"], batch["attention_mask"])

    def compute_loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self._logits(model, batch)
        mask, chosen, valid = batch["image_mask"], batch["chosen"], batch["valid"]
        loss = choice_loss(logits, mask, chosen, valid)
        hits = choice_accuracy(logits, mask, chosen)[valid].float()
        metrics = {
            "accuracy": hits.mean() if hits.numel() else hits.new_tensor(0.0),
            "logit_scale": self.accelerator.unwrap_model(model).clip.logit_scale.exp().detach(),
        }
        return loss, metrics

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Top-1 preference accuracy (and mean loss) on the held-out records, sharded over processes."""
        acc = self.accelerator
        # The unwrapped module: a DDP forward may broadcast buffers, a collective that would hang
        # when processes hold different numbers of held-out records.
        model = acc.unwrap_model(model)
        mine = self.eval_examples[acc.process_index :: acc.num_processes]
        totals = torch.zeros(4, device=acc.device)  # hits, records, loss sum, chance sum
        for start in range(0, len(mine), self.config.per_device_train_batch_size):
            batch = self.collate(mine[start : start + self.config.per_device_train_batch_size])
            batch = {k: v.to(acc.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            valid = batch["valid"]
            if not bool(valid.any()):
                continue
            logits = self._logits(model, batch)
            mask, chosen = batch["image_mask"], batch["chosen"]
            per_record = torch.nn.functional.cross_entropy(
                logits.masked_fill(~(mask | ~valid[:, None]), float("-inf")), chosen, reduction="none"
            )
            totals += torch.stack(
                [
                    choice_accuracy(logits, mask, chosen)[valid].float().sum(),
                    valid.float().sum(),
                    per_record[valid].sum(),
                    (1.0 / mask[valid].sum(-1).float()).sum(),
                ]
            )
        totals = acc.reduce(totals, reduction="sum")
        n = max(float(totals[1]), 1.0)
        return {
            "eval_accuracy": float(totals[0]) / n,
            "eval_loss": float(totals[2]) / n,
            "eval_chance": float(totals[3]) / n,
            "eval_records": float(totals[1]),
        }

    # ------------------------------------------------------------------ output
    def save_model(self, model: nn.Module, out: Path, state: TrainerState) -> None:
        from prefalign.scoring.convert import save_model_dir
        from prefalign.scoring.model_format import ScorerSpec

        cfg = self.config
        evals = state.eval_log
        spec = ScorerSpec(
            kind=cfg.score_kind,
            preprocess=self.preprocess,
            provenance={
                "trained_by": "prefalign train scorer",
                "method": "HPS classifier (Wu et al.)",
                "base": cfg.base,
                "data": str(cfg.data),
                "steps": state.step,
                "eval_accuracy": evals[-1].get("eval_accuracy") if evals else None,
                "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        save_model_dir(out, model.clip, self.tokenizer, spec, overwrite=True)
