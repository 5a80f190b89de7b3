"""Acceptance tests of ``convert_checkpoint``: converted scorers agree with the originals.

Random checkpoints are written in the ORIGINAL layouts (OpenAI CLIP, open_clip DDP saves, the
LAION aesthetic MLP, a Hugging Face CLIP directory), converted, loaded with ``load_scorer``, and
scored; the expected scores come from ``reference_clip``, an independent float64
re-implementation of the original forward passes that reads the raw state dicts. Agreement is
required to 1e-4 relative to the score's scale.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPTokenizer

from prefalign.errors import PrefalignError
from prefalign.scoring import ConversionError, convert_checkpoint, load_scorer

from . import reference_clip as ref

PROMPTS = (
    "a photo of a red circle",
    "Two cats, on a BLUE background!",
    "weird image. three yellow squares and one green triangle",
)
SIZE = 32  # image size of every random checkpoint here (patch 8 -> a 4x4 grid)
RTOL = 1e-4

# Non-square sizes (width, height) where the original arithmetic matters:
#  * pad: 33x64 -> scale 0.5 -> width round(16.5) = 16 (half to even, not 17), pasted at x = 8.
#  * center-crop: 50x87 -> short side 32, long side int(55.68) = 55 (truncated, not 56),
#    crop offset int(round(23 / 2.0)) = round(11.5) = 12 (not floor 11).
PAD_SIZE = (33, 64)
CROP_SIZES = ((50, 87), (87, 50))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def vocab_size(tokenizer) -> int:
    return len(tokenizer)


def assert_scores(actual: torch.Tensor, expected: torch.Tensor, scale: float) -> None:
    assert isinstance(actual, torch.Tensor), type(actual)
    assert actual.dtype == torch.float32, actual.dtype
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual.double(), expected.double(), rtol=RTOL, atol=RTOL * scale)


def check_cosine_family(
    scorer,
    sd,
    tokenizer,
    images,
    *,
    factor: float,
    vision_heads: int,
    text_heads: int,
    act: str,
    mode: str | None = None,
) -> None:
    """``factor * cos`` of every image with each prompt, as the original computes it."""
    px = ref.pixels([Image.open(i) if isinstance(i, Path) else i for i in images], mode, SIZE)
    for prompt in PROMPTS:
        tokens = ref.tokenize(tokenizer, prompt)
        expected = factor * ref.cosine(
            sd, px, tokens, vision_heads=vision_heads, text_heads=text_heads, act=act
        )
        assert_scores(scorer.score(images, prompt), expected, scale=factor)


def assert_preprocess(scorer, mode: str | None, size: int = SIZE) -> None:
    pre = scorer.preprocess
    if mode is not None:
        assert pre.mode == mode
    assert pre.size == size
    assert pre.mean == pytest.approx(ref.CLIP_MEAN)
    assert pre.std == pytest.approx(ref.CLIP_STD)


def convert_and_load(family, src, out, **kwargs):
    path = convert_checkpoint(family, src, out, **kwargs)
    assert isinstance(path, Path)
    return load_scorer(path)


@pytest.fixture(scope="module")
def openai_sd(vocab_size):
    return ref.random_clip_state_dict(seed=1, vocab_size=vocab_size)


@pytest.fixture(scope="module")
def open_clip_sd(vocab_size):
    return ref.random_clip_state_dict(seed=2, vocab_size=vocab_size)


@pytest.fixture(scope="module")
def square_images():
    return ref.random_images(3, SIZE, seed=10)


# --------------------------------------------------------------------------------------------
# The yardstick itself
# --------------------------------------------------------------------------------------------


def test_reference_matches_transformers_clip(tokenizer):
    """The reference reproduces transformers' CLIPModel (QuickGELU) on the same weights."""
    from prefalign.testing import tiny_clip_model

    model = tiny_clip_model(seed=3).double()
    sd = ref.hf_clip_to_openai_layout(model.state_dict())
    heads = model.config.vision_config.num_attention_heads
    px = ref.pixels(ref.random_images(2, SIZE, seed=0), None, SIZE)
    tokens = ref.tokenize(tokenizer, PROMPTS[1])
    with torch.no_grad():
        hf_img = model.get_image_features(pixel_values=px).pooler_output
        hf_txt = model.get_text_features(input_ids=tokens).pooler_output
    torch.testing.assert_close(ref.encode_image(sd, px, heads=heads, act="quick_gelu"), hf_img)
    torch.testing.assert_close(ref.encode_text(sd, tokens, heads=heads, act="quick_gelu"), hf_txt)


def test_reference_is_discriminative(openai_sd, tokenizer, square_images):
    """Wrong head counts or the other GELU move scores far beyond the tolerance."""
    px = ref.pixels(square_images, None, SIZE)
    tokens = ref.tokenize(tokenizer, PROMPTS[0])
    base = ref.cosine(openai_sd, px, tokens, vision_heads=2, text_heads=2, act="gelu")
    for kwargs in (
        dict(vision_heads=2, text_heads=2, act="quick_gelu"),
        dict(vision_heads=4, text_heads=2, act="gelu"),
        dict(vision_heads=2, text_heads=4, act="gelu"),
    ):
        other = ref.cosine(openai_sd, px, tokens, **kwargs)
        assert (other - base).abs().max() > 10 * RTOL, kwargs


# --------------------------------------------------------------------------------------------
# 1. HPS v1 / OpenAI CLIP (OpenAI layout, QuickGELU, heads = width // 64)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [True, False], ids=["hpc-state_dict", "bare"])
def test_hps_v1_matches_openai_clip_reference(
    wrap, openai_sd, tokenizer, tiny_tokenizer_dir, square_images, tmp_path
):
    src = ref.save_openai(openai_sd, tmp_path / "hpc.pt", wrap=wrap)
    scorer = convert_and_load("hps-v1", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.kind == "hps"
    assert_preprocess(scorer, mode=None)
    images = square_images
    if not wrap:  # paths work as well as PIL images
        images = []
        for i, img in enumerate(square_images):
            img.save(tmp_path / f"{i}.png")
            images.append(tmp_path / f"{i}.png")
    check_cosine_family(
        scorer, openai_sd, tokenizer, images, factor=100.0, vision_heads=2, text_heads=2, act="quick_gelu"
    )


@pytest.mark.parametrize(("vision_width", "text_width"), [(192, 256), (64, 192)])
def test_hps_v1_heads_are_width_over_64(
    vision_width, text_width, vocab_size, tokenizer, tiny_tokenizer_dir, tmp_path
):
    """OpenAI ``build_model``: vision heads = vision_width // 64, text heads = text_width // 64."""
    sd = ref.random_clip_state_dict(
        seed=4, vocab_size=vocab_size, vision_width=vision_width, text_width=text_width, embed_dim=48
    )
    src = ref.save_openai(sd, tmp_path / "hpc.pt", wrap=True)
    scorer = convert_and_load("hps-v1", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    check_cosine_family(
        scorer,
        sd,
        tokenizer,
        ref.random_images(2, SIZE, seed=11),
        factor=100.0,
        vision_heads=vision_width // 64,
        text_heads=text_width // 64,
        act="quick_gelu",
    )


def test_openai_clip_scores_cosine(openai_sd, tokenizer, tiny_tokenizer_dir, square_images, tmp_path):
    src = ref.save_openai(openai_sd, tmp_path / "ViT-tiny.pt", wrap=False)
    scorer = convert_and_load("openai-clip", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.kind == "clip"
    assert_preprocess(scorer, mode="center-crop")
    check_cosine_family(
        scorer,
        openai_sd,
        tokenizer,
        square_images,
        factor=1.0,
        vision_heads=2,
        text_heads=2,
        act="quick_gelu",
    )


def test_openai_clip_center_crop_non_square(openai_sd, tokenizer, tiny_tokenizer_dir, tmp_path):
    """torchvision Resize(short side, bicubic) + CenterCrop arithmetic, as OpenAI's ``_transform``."""
    src = ref.save_openai(openai_sd, tmp_path / "ViT-tiny.pt", wrap=False)
    scorer = convert_and_load("openai-clip", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    images = [ref.random_images(1, s, seed=12 + i)[0] for i, s in enumerate(CROP_SIZES)]
    check_cosine_family(
        scorer,
        openai_sd,
        tokenizer,
        images,
        factor=1.0,
        vision_heads=2,
        text_heads=2,
        act="quick_gelu",
        mode="center-crop",
    )


def test_hps_v1_preprocess_is_the_originals_center_crop(openai_sd, tokenizer, tiny_tokenizer_dir, tmp_path):
    """HPS v1 is scored with OpenAI CLIP's own preprocessing, i.e. centre crop, not padding.

    tgxs002/align_sd: the README snippet and ``evaluate_hps.py`` both use the ``preprocess``
    returned by ``clip.load("ViT-L/14")`` (Resize(224, bicubic) + CenterCrop(224)), and
    ``process_diffusion_db.py`` uses open_clip's default val transform (also Resize +
    CenterCrop). No HPS v1 code path pads.
    """
    src = ref.save_openai(openai_sd, tmp_path / "hpc.pt", wrap=True)
    scorer = convert_and_load("hps-v1", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.preprocess.mode == "center-crop"
    images = [ref.random_images(1, s, seed=14 + i)[0] for i, s in enumerate(CROP_SIZES)]
    check_cosine_family(
        scorer,
        openai_sd,
        tokenizer,
        images,
        factor=100.0,
        vision_heads=2,
        text_heads=2,
        act="quick_gelu",
        mode="center-crop",
    )


# --------------------------------------------------------------------------------------------
# 2. HPS v2 / v2.1 / open_clip (open_clip layout, exact GELU, DDP ``module.`` prefix)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "kind", "factor"),
    [("hps-v2", "hps", 100.0), ("hps-v2.1", "hps", 100.0), ("open-clip", "clip", 1.0)],
)
def test_open_clip_families_match_reference(
    family, kind, factor, open_clip_sd, tokenizer, tiny_tokenizer_dir, square_images, tmp_path
):
    src = ref.save_open_clip(open_clip_sd, tmp_path / "HPS_v2.pt", ddp=True)
    scorer = convert_and_load(family, src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.kind == kind
    assert_preprocess(scorer, mode="pad" if kind == "hps" else None)
    check_cosine_family(
        scorer,
        open_clip_sd,
        tokenizer,
        square_images,
        factor=factor,
        vision_heads=2,
        text_heads=2,
        act="gelu",
    )


def test_open_clip_family_preprocess_is_center_crop(open_clip_sd, tiny_tokenizer_dir, tmp_path):
    """Plain open_clip evaluates with ``image_transform(is_train=False)``: Resize + CenterCrop."""
    src = ref.save_open_clip(open_clip_sd, tmp_path / "epoch_1.pt", ddp=True)
    scorer = convert_and_load("open-clip", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.preprocess.mode == "center-crop"


@pytest.mark.parametrize(
    ("ddp", "extras"),
    [
        (False, None),  # HPS_v2_compressed.pt: img_score.py loads checkpoint['state_dict'] as is
        (True, {"epoch": 1, "name": "hps", "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]}}),
    ],
    ids=["no-prefix", "open_clip-training-checkpoint"],
)
def test_hps_v2_checkpoint_variants(
    ddp, extras, open_clip_sd, tokenizer, tiny_tokenizer_dir, square_images, tmp_path
):
    src = ref.save_open_clip(open_clip_sd, tmp_path / "ckpt.pt", ddp=ddp, extras=extras)
    scorer = convert_and_load("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    check_cosine_family(
        scorer, open_clip_sd, tokenizer, square_images, factor=100.0, vision_heads=2, text_heads=2, act="gelu"
    )


def test_hps_v2_vision_width_192_has_3_heads(vocab_size, tokenizer, tiny_tokenizer_dir, tmp_path):
    sd = ref.random_clip_state_dict(seed=5, vocab_size=vocab_size, vision_width=192, vision_layers=1)
    src = ref.save_open_clip(sd, tmp_path / "hps.pt")
    scorer = convert_and_load("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    check_cosine_family(
        scorer,
        sd,
        tokenizer,
        ref.random_images(2, SIZE, seed=16),
        factor=100.0,
        vision_heads=3,
        text_heads=2,
        act="gelu",
    )


@pytest.mark.parametrize(
    ("vision_width", "text_width", "vision_heads", "text_heads"),
    [(160, 128, 2, None), (128, 128, 4, 4)],
    ids=["width160-head_width80", "heads4-both-towers"],
)
def test_open_clip_explicit_head_counts(
    vision_width, text_width, vision_heads, text_heads, vocab_size, tokenizer, tiny_tokenizer_dir, tmp_path
):
    """Heads are not in the weights: ``vision_heads`` / ``text_heads`` given to the converter win."""
    sd = ref.random_clip_state_dict(
        seed=6, vocab_size=vocab_size, vision_width=vision_width, text_width=text_width, vision_layers=1
    )
    src = ref.save_open_clip(sd, tmp_path / "hps.pt")
    kwargs = {"vision_heads": vision_heads}
    if text_heads is not None:
        kwargs["text_heads"] = text_heads
    scorer = convert_and_load("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir, **kwargs)
    check_cosine_family(
        scorer,
        sd,
        tokenizer,
        ref.random_images(2, SIZE, seed=17),
        factor=100.0,
        vision_heads=vision_heads,
        text_heads=text_heads or text_width // 64,
        act="gelu",
    )


def test_hps_v2_vit_h_widths_default_to_16_heads(vocab_size, tokenizer, tiny_tokenizer_dir, tmp_path):
    """ViT-H-14 (HPS v2's tower): vision width 1280 with head_width 80 = 16 heads (not 1280 // 64 = 20);
    text width 1024 with 16 heads. One layer each, patch 14 on 28 px, to stay small."""
    sd = ref.random_clip_state_dict(
        seed=7,
        vocab_size=vocab_size,
        image_size=28,
        patch_size=14,
        vision_width=1280,
        vision_layers=1,
        text_width=1024,
        text_layers=1,
        embed_dim=64,
    )
    src = ref.save_open_clip(sd, tmp_path / "HPS_v2_compressed.pt", ddp=False)
    scorer = convert_and_load("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.preprocess.size == 28
    images = ref.random_images(2, 28, seed=18)
    px = ref.pixels(images, None, 28)
    for prompt in PROMPTS[:2]:
        tokens = ref.tokenize(tokenizer, prompt)
        expected = 100.0 * ref.cosine(sd, px, tokens, vision_heads=16, text_heads=16, act="gelu")
        assert_scores(scorer.score(images, prompt), expected, scale=100.0)


def test_open_clip_mlp_width_is_read_from_the_weights(vocab_size, tokenizer, tiny_tokenizer_dir, tmp_path):
    """open_clip's ``mlp_ratio`` is not always 4 (ViT-g-14, ViT-bigG-14: 4.9231)."""
    sd = ref.random_clip_state_dict(
        seed=8, vocab_size=vocab_size, vision_layers=1, text_layers=1, vision_mlp=320, text_mlp=384
    )
    src = ref.save_open_clip(sd, tmp_path / "hps.pt")
    scorer = convert_and_load("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    check_cosine_family(
        scorer,
        sd,
        tokenizer,
        ref.random_images(2, SIZE, seed=19),
        factor=100.0,
        vision_heads=2,
        text_heads=2,
        act="gelu",
    )


def test_hps_v2_pad_non_square(open_clip_sd, tokenizer, tiny_tokenizer_dir, tmp_path):
    """open_clip ``ResizeMaxSize`` as HPS v2 evaluates: longest side to size, black centred padding."""
    src = ref.save_open_clip(open_clip_sd, tmp_path / "hps.pt")
    scorer = convert_and_load("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert scorer.preprocess.mode == "pad"
    images = [
        ref.random_images(1, PAD_SIZE, seed=20)[0],
        ref.random_images(1, PAD_SIZE[::-1], seed=21)[0],
        ref.random_images(1, (50, 87), seed=22)[0],
    ]
    check_cosine_family(
        scorer,
        open_clip_sd,
        tokenizer,
        images,
        factor=100.0,
        vision_heads=2,
        text_heads=2,
        act="gelu",
        mode="pad",
    )


# --------------------------------------------------------------------------------------------
# 3. LAION aesthetic predictor (MLP on the normalised image embedding of a base CLIP)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_clip(tiny_clip_dir) -> CLIPModel:
    return CLIPModel.from_pretrained(tiny_clip_dir).double().eval()


def _hf_image_embeddings(model: CLIPModel, px: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.get_image_features(pixel_values=px.double()).pooler_output


@pytest.mark.parametrize("non_square", [False, True], ids=["square", "center-crop"])
def test_aesthetic_matches_reference(non_square, base_clip, tiny_clip_dir, tmp_path):
    dim = base_clip.config.projection_dim
    mlp = ref.random_aesthetic_state_dict(seed=9, input_dim=dim)
    src = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(mlp, src)
    scorer = convert_and_load("aesthetic", src, tmp_path / "out", base=tiny_clip_dir)
    assert scorer.kind == "aesthetic"
    assert_preprocess(scorer, mode="center-crop")
    if non_square:
        images = [ref.random_images(1, s, seed=23 + i)[0] for i, s in enumerate(CROP_SIZES)]
    else:
        images = ref.random_images(3, SIZE, seed=25)
    px = ref.pixels(images, "center-crop" if non_square else None, SIZE)
    expected = ref.aesthetic_mlp(mlp, _hf_image_embeddings(base_clip, px))
    scale = float(expected.abs().max())
    assert scale > 1e-3  # the head is not degenerate
    first = scorer.score(images, PROMPTS[0])
    assert_scores(first, expected, scale=scale)
    # the prompt is ignored
    torch.testing.assert_close(scorer.score(images, PROMPTS[2]), first)


def test_aesthetic_relu_variant_matches_reference(base_clip, tiny_clip_dir, tmp_path):
    """``ava+logos-l14-reluMSE.pth`` (layers.0/3/6/9/11, ReLU between) is detected by its keys and
    scores exactly as the released MLP with ReLU; read as the linear layout it would differ."""
    dim = base_clip.config.projection_dim
    mlp = ref.random_aesthetic_state_dict(seed=4, input_dim=dim, relu=True)
    src = tmp_path / "ava+logos-l14-reluMSE.pth"
    torch.save(mlp, src)
    scorer = convert_and_load("aesthetic", src, tmp_path / "out", base=tiny_clip_dir)
    assert scorer.kind == "aesthetic"
    assert scorer.spec.head["type"] == "aesthetic-relu-mlp"
    images = ref.random_images(4, SIZE, seed=31)
    px = ref.pixels(images, None, SIZE)
    embeddings = _hf_image_embeddings(base_clip, px)
    expected = ref.aesthetic_relu_mlp(mlp, embeddings)
    scale = float(expected.abs().max())
    assert scale > 1e-3
    assert_scores(scorer.score(images, PROMPTS[0]), expected, scale=scale)
    # The ReLUs matter for these weights: without them the numbers are different.
    no_relu = embeddings / embeddings.norm(dim=-1, keepdim=True)
    for i in (0, 3, 6, 9, 11):
        no_relu = no_relu @ mlp[f"layers.{i}.weight"].double().T + mlp[f"layers.{i}.bias"].double()
    assert not torch.allclose(no_relu[:, 0], expected, rtol=1e-2)


def test_aesthetic_unknown_layout_names_both(tmp_path, tiny_clip_dir):
    mlp = ref.random_aesthetic_state_dict(seed=4, input_dim=8, relu=True)
    mlp["layers.13.weight"] = torch.zeros(1, 1)
    src = tmp_path / "odd.pth"
    torch.save(mlp, src)
    with pytest.raises(ConversionError, match=r"odd\.pth: not a LAION aesthetic MLP layout.*ReLU"):
        convert_checkpoint("aesthetic", src, tmp_path / "out", base=tiny_clip_dir)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# 4. PickScore (a Hugging Face CLIP directory, logit_scale.exp() * cos)
# --------------------------------------------------------------------------------------------


def test_pickscore_matches_transformers(base_clip, tiny_clip_dir, tokenizer, tmp_path):
    scorer = convert_and_load("pickscore", tiny_clip_dir, tmp_path / "out")
    assert scorer.kind == "pickscore"
    assert_preprocess(scorer, mode="center-crop")
    images = ref.random_images(4, SIZE, seed=26)
    px = ref.pixels(images, None, SIZE)
    scale = float(base_clip.logit_scale.detach().exp())
    img = ref.l2_normalise(_hf_image_embeddings(base_clip, px))
    for prompt in PROMPTS:
        tokens = ref.tokenize(tokenizer, prompt)
        with torch.no_grad():
            txt = ref.l2_normalise(base_clip.get_text_features(input_ids=tokens).pooler_output)
        expected = scale * (img @ txt.T)[:, 0]
        assert_scores(scorer.score(images, prompt), expected, scale=scale)
        probs = scorer.probabilities(images, prompt)
        assert probs.shape == (len(images),)
        torch.testing.assert_close(probs.double(), expected.softmax(0), rtol=RTOL, atol=RTOL)
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_missing_key_is_named(openai_sd, tiny_tokenizer_dir, tmp_path):
    sd = dict(openai_sd)
    del sd["visual.ln_post.bias"]
    src = ref.save_openai(sd, tmp_path / "hpc-missing.pt", wrap=True)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint("hps-v1", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    message = str(info.value)
    assert "visual.ln_post.bias" in message
    assert src.name in message
    assert isinstance(info.value, PrefalignError) and isinstance(info.value, ValueError)
    assert not (tmp_path / "out" / "prefalign.json").exists()


def test_unexpected_key_is_named(open_clip_sd, tiny_tokenizer_dir, tmp_path):
    sd = dict(open_clip_sd)
    sd["visual.extra_head.weight"] = torch.zeros(3, 3)
    src = ref.save_open_clip(sd, tmp_path / "hps-extra.pt", ddp=True)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint("hps-v2", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    message = str(info.value)
    assert "visual.extra_head.weight" in message
    assert src.name in message


class _Payload:
    """Unpickling this runs ``exec``: the attack a pickled checkpoint can carry."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({str(self.sentinel)!r}, 'w').write('pwned')",))


class _Config:
    """A harmless but arbitrary class instance (e.g. a training config object)."""

    def __init__(self):
        self.lr = 1e-5


@pytest.mark.parametrize("kind", ["exec-payload", "class-instance"])
def test_pickled_object_is_refused_without_running_it(kind, openai_sd, tiny_tokenizer_dir, tmp_path):
    sentinel = tmp_path / "pwned.txt"
    extra = _Payload(sentinel) if kind == "exec-payload" else _Config()
    src = tmp_path / "evil.pt"
    torch.save({"state_dict": openai_sd, "extra": extra}, src)
    assert not sentinel.exists()
    with pytest.raises(ConversionError) as info:
        convert_checkpoint("hps-v1", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert not sentinel.exists(), "the pickled object's code ran"
    message = str(info.value)
    assert src.name in message
    assert re.search(r"(?i)weights.only|unsafe|pickle|refus|not allowed|untrusted|arbitrary", message), (
        message
    )


def test_resnet_openai_checkpoint_is_not_supported(vocab_size, tiny_tokenizer_dir, tmp_path):
    sd = ref.random_resnet_clip_state_dict(vocab_size=vocab_size)
    src = ref.save_openai(sd, tmp_path / "RN50.pt", wrap=False)
    with pytest.raises(ConversionError, match=r"(?i)not supported|unsupported"):
        convert_checkpoint("openai-clip", src, tmp_path / "out", tokenizer=tiny_tokenizer_dir)


def test_aesthetic_input_dim_must_match_base(base_clip, tiny_clip_dir, tmp_path):
    dim = base_clip.config.projection_dim
    assert dim != 48
    src = tmp_path / "aesthetic-48.pth"
    torch.save(ref.random_aesthetic_state_dict(input_dim=48), src)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint("aesthetic", src, tmp_path / "out", base=tiny_clip_dir)
    message = str(info.value)
    assert re.search(r"\b48\b", message) and re.search(rf"\b{dim}\b", message), message


def test_existing_model_needs_overwrite(vocab_size, tokenizer, tiny_tokenizer_dir, tmp_path):
    images = ref.random_images(2, SIZE, seed=27)
    out = tmp_path / "out"
    first = ref.random_clip_state_dict(seed=30, vocab_size=vocab_size, vision_layers=1, text_layers=1)
    second = ref.random_clip_state_dict(seed=31, vocab_size=vocab_size, vision_layers=1, text_layers=1)
    src1 = ref.save_openai(first, tmp_path / "first.pt", wrap=True)
    src2 = ref.save_openai(second, tmp_path / "second.pt", wrap=True)
    kw = dict(factor=100.0, vision_heads=2, text_heads=2, act="quick_gelu")

    convert_checkpoint("hps-v1", src1, out, tokenizer=tiny_tokenizer_dir)
    with pytest.raises(PrefalignError):
        convert_checkpoint("hps-v1", src2, out, tokenizer=tiny_tokenizer_dir)
    check_cosine_family(load_scorer(out), first, tokenizer, images, **kw)  # left intact

    convert_checkpoint("hps-v1", src2, out, tokenizer=tiny_tokenizer_dir, overwrite=True)
    check_cosine_family(load_scorer(out), second, tokenizer, images, **kw)


def test_cli_convert_hps_v1(openai_sd, tokenizer, tiny_tokenizer_dir, square_images, tmp_path):
    from prefalign.cli.main import main

    src = ref.save_openai(openai_sd, tmp_path / "hpc.pt", wrap=True)
    out = tmp_path / "hps-v1"
    argv = [
        "convert",
        "--from",
        "hps-v1",
        str(src),
        "--out",
        str(out),
        "--tokenizer",
        str(tiny_tokenizer_dir),
    ]
    assert main(argv) == 0
    scorer = load_scorer(out)
    assert scorer.kind == "hps"
    check_cosine_family(
        scorer,
        openai_sd,
        tokenizer,
        square_images,
        factor=100.0,
        vision_heads=2,
        text_heads=2,
        act="quick_gelu",
    )
