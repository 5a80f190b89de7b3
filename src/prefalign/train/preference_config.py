"""Configuration of the HPS preference classifier (Wu et al.), with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.train.config import TrainConfig, TrainConfigError, option


@dataclass
class PreferenceConfig(TrainConfig):
    """Fine-tune CLIP into a preference classifier scored as HPS = 100 · cos.

    The defaults are the HPS paper's: ViT-L/14, the last 10 vision and 6 text blocks train
    (with the final norms, the projections and logit_scale), AdamW lr 1.7e-5 and weight decay
    3.1e-3, cosine decay, 5 records per batch, one epoch, images padded to a square.
    """

    learning_rate: float = option(1.7e-5, "peak learning rate of AdamW (the HPS paper: 1.7e-5)")
    weight_decay: float = option(
        3.1e-3, "AdamW weight decay, none on norms, biases and logit_scale (paper: 3.1e-3)"
    )
    eval_steps: int = option(
        500,
        "evaluate on the held-out records every N optimizer steps (0: only at the end; each costs a pass over them)",
    )
    vision_blocks: int = option(
        10, "train the last N transformer blocks of the image tower (paper: 10; -1: the whole tower)"
    )
    text_blocks: int = option(
        6, "train the last N transformer blocks of the text tower (paper: 6; -1: the whole tower)"
    )
    train_logit_scale: bool = option(True, "train CLIP's logit_scale (the temperature of the choice softmax)")
    preprocess: str = option(
        "pad",
        "image preprocessing in training and scoring: pad (the paper) or center-crop",
        choices=("pad", "center-crop"),
    )
    score_kind: str = option(
        "hps", "score kind written to prefalign.json (hps = 100 · cos)", choices=("hps", "clip", "pickscore")
    )

    def validate(self) -> None:
        super().validate()
        for name in ("vision_blocks", "text_blocks"):
            if getattr(self, name) < -1:
                raise TrainConfigError(f"{name} must be -1 (whole tower) or >= 0, got {getattr(self, name)}")
