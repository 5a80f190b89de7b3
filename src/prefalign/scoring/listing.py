"""What ``prefalign list-scorers`` prints: every scorer family, as plain data (no torch import).

Exactness is the largest relative difference measured against an independent float64
re-implementation of the original code on random weights in the original layout
(``tests/scoring/test_convert_equivalence.py``, ``test_imagereward.py``); the differentiable
path's distance is measured against the file path on 512-px images (``test_pixels.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ScorerFamily:
    """One row of ``prefalign list-scorers``."""

    family: str
    kind: str
    scale: str
    preprocessing: str
    convert: str
    differentiable: str
    reference: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


_PIXELS = "yes: score_pixels, 0 (bit-identical) from the file path on CPU fp32"

FAMILY_TABLE: tuple[ScorerFamily, ...] = (
    ScorerFamily(
        "hps-v1",
        "hps",
        "100*cos(image, prompt), the HPS paper's unit",
        "center-crop 224, CLIP mean/std",
        "convert --from hps-v1 hpc.pt --tokenizer CLIP_TOKENIZER",
        _PIXELS,
        "tgxs002/align_sd (Wu et al., ICCV 2023)",
    ),
    ScorerFamily(
        "hps-v2, hps-v2.1",
        "hps",
        "100*cos(image, prompt), the HPS v2 benchmark's unit",
        "pad 224 (open_clip ResizeMaxSize), CLIP mean/std",
        "convert --from hps-v2 HPS_v2{,.1}_compressed.pt --tokenizer CLIP_TOKENIZER",
        _PIXELS,
        "tgxs002/HPSv2 (Wu et al., 2023)",
    ),
    ScorerFamily(
        "pickscore",
        "pickscore",
        "logit_scale.exp()*cos; softmax over a prompt's images = preference probability",
        "center-crop 224, CLIP mean/std",
        "none (hub id yuvalkirstain/PickScore_v1) or convert --from pickscore DIR",
        _PIXELS,
        "yuvalkirstain/PickScore (Kirstain et al., NeurIPS 2023)",
    ),
    ScorerFamily(
        "clip (openai-clip, open-clip, hf-clip, clip: prefix)",
        "clip",
        "cos(image, prompt) (CLIP score; 0.28 scale of the HPS paper)",
        "center-crop (OpenAI CLIP), CLIP mean/std",
        "none for hub ids; convert --from openai-clip|open-clip|hf-clip SRC",
        _PIXELS,
        "openai/CLIP (Radford et al., 2021), mlfoundations/open_clip",
    ),
    ScorerFamily(
        "aesthetic",
        "aesthetic",
        "LAION improved aesthetic predictor, rating-like 1-10 scale (prompt ignored)",
        "center-crop 224, CLIP mean/std",
        "convert --from aesthetic sac+logos+ava1-l14-linearMSE.pth --base openai/clip-vit-large-patch14",
        _PIXELS,
        "christophschuhmann/improved-aesthetic-predictor",
    ),
    ScorerFamily(
        "imagereward",
        "imagereward",
        "standardised reward (r - 0.1672)/1.0333: mean 0, std 1 over ImageReward's comparisons",
        "center-crop 224, CLIP mean/std; prompt: BERT, 35 tokens",
        "convert --from imagereward ImageReward.pt --tokenizer bert-base-uncased",
        _PIXELS,
        "THUDM/ImageReward (Xu et al., NeurIPS 2023)",
    ),
    ScorerFamily(
        "mps",
        "mps",
        "logit_scale.exp()*cos(prompt, condition-aware image embedding); condition: overall preference",
        "center-crop 224 (HF CLIPImageProcessor; crop offset floors where torchvision rounds), CLIP mean/std",
        "convert --from mps MPS_overall_checkpoint.pth --tokenizer laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        _PIXELS,
        "Kwai-Kolors/MPS (Zhang et al., CVPR 2024)",
    ),
    ScorerFamily(
        "hpsv3",
        "hpsv3",
        "mu of the (mu, sigma) head at <|Reward|> (uncertainty-aware ranking; higher = preferred); "
        "score_with_variance gives sigma",
        "qwen_vl_utils smart_resize to a 256*28*28-pixel budget (PIL bicubic), CLIP mean/std, Qwen2-VL "
        "patches; the authors' instruction template; GPU only unless --allow-slow",
        "convert --from hpsv3 HPSv3.safetensors --base Qwen2-VL-7B-Instruct",
        "yes: score_pixels, 0 (bit-identical) from the file path on CPU fp32 (tiny model)",
        "MizzenAI/HPSv3 (Ma et al., ICCV 2025)",
    ),
    ScorerFamily(
        "reward (trained here)",
        "reward",
        "sigmoid(MLP([image; prompt])) in (0, 1) (Lee et al.)",
        "as saved by `prefalign train`",
        "none (written by prefalign train reward)",
        "yes: score_pixels (the CLIP path above; not measured separately)",
        "Lee et al., 2023, 'Aligning Text-to-Image Models using Human Feedback'",
    ),
)

NOT_YET: dict[str, str] = {}
