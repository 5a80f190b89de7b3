"""Configuration of the HPS preference classifier (Wu et al.), with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.train.config import TrainConfig, TrainConfigError, option

# How "the last N vision layers" is read. ``paper``: N transformer blocks plus the final norm and
# the projection, as the HPS paper's text reads. ``open_clip``: open_clip's
# ``VisionTransformer.lock(unlocked_groups=N)``, whose groups are [embeddings + pre-norm],
# each block but the last, [last block + final norm], [projection]; so N groups are N − 1 blocks
# plus the final norm and the projection.
UNLOCK_SEMANTICS = ("paper", "open_clip")
# CLIP's temperature bound: OpenAI's CLIP paper clips the logit scale at 100, and open_clip (on
# which the HPS v2 training code is built) clamps it to [0, ln 100] after every optimizer step.
MAX_LOGIT_SCALE = 100.0


@dataclass
class PreferenceConfig(TrainConfig):
    """Fine-tune CLIP into a preference classifier scored as HPS = 100 · cos.

    The defaults are the HPS paper's: ViT-L/14, the last 10 vision and 6 text layers train
    (read as blocks, with the final norms, the projections and logit_scale), AdamW lr 1.7e-5 and
    weight decay 3.1e-3, cosine decay, 5 records per batch, one epoch, images padded to a square.
    From the CLIP lineage the authors trained on (open_clip): no decay on norms, biases, 1-d
    parameters and logit_scale, and logit_scale clamped to ln 100 after every step.
    """

    learning_rate: float = option(1.7e-5, "peak learning rate of AdamW (the HPS paper: 1.7e-5)")
    weight_decay: float = option(
        3.1e-3,
        "AdamW weight decay (paper: 3.1e-3); none on norms, biases, 1-d parameters and logit_scale "
        "(open_clip's convention, not stated in the paper)",
    )
    eval_steps: int = option(
        500,
        "evaluate on the held-out records every N optimizer steps (0: only at the end; each costs a pass over them)",
    )
    vision_blocks: int = option(
        10,
        "train the last N layers of the image tower (paper: 10; -1: the whole tower); what a layer is: "
        "--unlock-semantics",
    )
    unlock_semantics: str = option(
        "paper",
        "how --vision-blocks counts: paper (N transformer blocks + final norm + projection, as the paper's "
        "text reads; ours to decide) or open_clip (open_clip's lock groups: N-1 blocks + final norm + "
        "projection)",
        choices=UNLOCK_SEMANTICS,
    )
    text_blocks: int = option(
        6, "train the last N transformer blocks of the text tower (paper: 6; -1: the whole tower)"
    )
    train_logit_scale: bool = option(True, "train CLIP's logit_scale (the temperature of the choice softmax)")
    max_logit_scale: float = option(
        MAX_LOGIT_SCALE,
        "clamp exp(logit_scale) to at most this after every optimizer step, as open_clip and OpenAI's "
        "CLIP do (100; 0: no clamp)",
    )
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
