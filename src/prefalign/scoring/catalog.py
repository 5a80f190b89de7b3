"""What scorers and conversions exist, as plain data: importable without torch, so the command
line can list them in ``--help`` at once."""

# What each kind computes from L2-normalised image and text embeddings i, t.
SCORE_KINDS: dict[str, str] = {
    "hps": "100 * cos(i, t)  (Human Preference Score)",
    "clip": "cos(i, t)  (CLIP score, the scale of the HPS paper's 0.28)",
    "pickscore": "logit_scale.exp() * cos(i, t)  (PickScore)",
    "aesthetic": "MLP(i)  (LAION improved aesthetic predictor; the prompt is ignored)",
    "reward": "sigmoid(MLP([i; t])) in (0, 1)  (Lee et al. reward model)",
    "imagereward": "(MLP(BLIP text [CLS] attending to the image) - 0.1672) / 1.0333  (ImageReward)",
    "mps": "logit_scale.exp() * cos(t, condition-masked cross-attention of image tokens)  (MPS)",
    "hpsv3": "mu of the (mu, sigma) head on Qwen2-VL's <|Reward|> token  (HPSv3)",
}
# Kinds scored by one network over image and prompt together (scoring/joint.py), not from CLIP
# embeddings: their directories hold their own model, loaded by scoring/joint_load.py.
JOINT_KINDS = frozenset({"imagereward", "mps", "hpsv3"})
TEXT_FREE_KINDS = frozenset({"aesthetic"})
# Kinds whose score comes from a head saved beside the CLIP weights (HEAD_FILE).
HEAD_KINDS = frozenset({"aesthetic", "reward"})

# family -> (layout, score kind, preprocessing mode, activation, default tokenizer).
# HPS v1 scores with the preprocessing of its released code (tgxs002/align_sd: the README and
# evaluate_hps.py use clip.load("ViT-L/14")'s Resize + CenterCrop), although the paper padded
# images for training; HPS v2's released code pads (ResizeMaxSize).
FAMILIES: dict[str, tuple[str, str, str, str, str]] = {
    "hps-v1": ("openai", "hps", "center-crop", "quick_gelu", "openai/clip-vit-large-patch14"),
    "openai-clip": ("openai", "clip", "center-crop", "quick_gelu", "openai/clip-vit-large-patch14"),
    "hps-v2": ("openai", "hps", "pad", "gelu", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    "hps-v2.1": ("openai", "hps", "pad", "gelu", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    "open-clip": ("openai", "clip", "center-crop", "gelu", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    "aesthetic": ("aesthetic", "aesthetic", "center-crop", "", ""),
    "pickscore": ("hf", "pickscore", "center-crop", "", ""),
    "hf-clip": ("hf", "clip", "center-crop", "", ""),
    "imagereward": ("imagereward", "imagereward", "center-crop", "gelu", "bert-base-uncased"),
    "mps": ("mps", "mps", "center-crop", "gelu", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    "hpsv3": ("hpsv3", "hpsv3", "pad", "", ""),
}

# Precisions a scorer runs in (prefalign.scoring.precision chooses for "auto"), and their --help.
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8")
PRECISION_HELP = (
    "auto (default; the rule is ours): bf16 on CPUs with native bf16 dot products (AVX-512 BF16 or AMX, as torch "
    "reports them) and on CUDA GPUs with bf16, fp16 on older GPUs, fp32 elsewhere; or fp32, bf16, "
    "fp16, int8 (torchao dynamic int8 linear layers: pip install 'prefalign[int8]'). Heads and "
    "cosines stay fp32; the choice is printed and recorded in the output's metadata"
)
