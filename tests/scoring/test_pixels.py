"""The differentiable path: ``score_pixels`` equals the file path and has gradients at the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from prefalign.scoring import PixelScorerLike, convert_checkpoint, load_scorer
from prefalign.scoring.pixels import WeightedReward, pil_bicubic
from prefalign.testing import save_tiny_clip
from prefalign.testing.clip import tiny_clip_model, tiny_clip_tokenizer

from . import reference_clip as rclip
from . import reference_imagereward as rir
from . import reference_mps as rmps

PROMPT = "a photo of a red circle"
# (input, output) sizes: plain downscales, upscales, and mixes where Pillow 13 runs the vertical
# pass first (python-pillow/Pillow#9549).
SIZE_PAIRS = [
    ((512, 512), (224, 224)),
    ((512, 768), (224, 336)),
    ((50, 87), (32, 55)),
    ((20, 30), (64, 96)),
    ((7, 300), (224, 9)),
    ((100, 300), (150, 250)),
    ((183, 165), (155, 107)),
    ((300, 300), (100, 400)),
]


def to_pixels(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize(("size", "out"), SIZE_PAIRS)
def test_pil_bicubic_is_bit_exact(size, out):
    img = rclip.random_images(1, size, seed=sum(size))[0]
    expected = np.asarray(img.resize(out, Image.Resampling.BICUBIC)).astype(np.int64)
    got = pil_bicubic(to_pixels(img), out[1], out[0])[0].permute(1, 2, 0).double() * 255
    assert np.array_equal(got.round().numpy().astype(np.int64), expected)


def test_pil_bicubic_has_gradients():
    px = torch.rand(1, 3, 40, 30, requires_grad=True)
    pil_bicubic(px, 16, 12).square().sum().backward()
    assert torch.isfinite(px.grad).all() and px.grad.abs().sum() > 0


def _smooth_image(seed: int, w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        draw.ellipse([x, y, x + 50, y + 90], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


@pytest.fixture(scope="module")
def scorers(tmp_path_factory):
    """One tiny 224-px scorer per family (so 512-px images shrink as with the real models)."""
    tmp = tmp_path_factory.mktemp("pixels")
    clip = save_tiny_clip(tmp / "clip", image_size=224, patch_size=32)
    out = {}
    for kind, mode in (("hps", "pad"), ("clip", "center-crop"), ("pickscore", "center-crop")):
        out[kind] = load_scorer(
            convert_checkpoint("hf-clip", clip, tmp / f"s-{kind}", kind=kind, preprocess=mode), device="cpu"
        )
    torch.save(rclip.random_aesthetic_state_dict(input_dim=32), tmp / "aesthetic.pth")
    out["aesthetic"] = load_scorer(
        convert_checkpoint("aesthetic", tmp / "aesthetic.pth", tmp / "aesthetic", base=clip), device="cpu"
    )
    tok = rir.write_bert_tokenizer(tmp / "bert")
    torch.save(rir.random_checkpoint(len(tok), image_size=224, patch=32), tmp / "ir.pt")
    out["imagereward"] = load_scorer(
        convert_checkpoint("imagereward", tmp / "ir.pt", tmp / "ir", tokenizer=tmp / "bert"), device="cpu"
    )
    mps_clip = tiny_clip_model(seed=3, hidden_act="gelu", image_size=224, patch_size=32)
    mps_state = {f"model.{k}": v for k, v in mps_clip.state_dict().items()}
    mps_state.update(rmps.random_cross_state(mps_clip.config.projection_dim))
    torch.save(mps_state, tmp / "mps.pt")
    tiny_clip_tokenizer().save_pretrained(tmp / "clip-tok")
    out["mps"] = load_scorer(
        convert_checkpoint(
            "mps", tmp / "mps.pt", tmp / "mps", tokenizer=tmp / "clip-tok", vision_heads=2, text_heads=2
        ),
        device="cpu",
    )
    return out


FAMILIES = ("hps", "clip", "pickscore", "aesthetic", "imagereward", "mps")


@pytest.mark.parametrize("family", FAMILIES)
def test_score_pixels_equals_the_file_path(scorers, family):
    """Measured distance: 0 on CPU fp32 (the preprocessing is bit-exact); asserted to 1e-5."""
    scorer = scorers[family]
    assert isinstance(scorer, PixelScorerLike)
    images = [_smooth_image(1, 512, 512), _smooth_image(2, 512, 768), _smooth_image(3, 768, 512)]
    for img in images:
        expected = scorer.score([img], PROMPT).double()
        got = scorer.score_pixels(to_pixels(img), PROMPT).detach().double()
        assert got.shape == (1,)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_the_pixels(scorers, family):
    px = to_pixels(_smooth_image(4, 256, 320)).repeat(2, 1, 1, 1).requires_grad_(True)
    scores = scorers[family].score_pixels(px, [PROMPT, "two cats on a blue square"])
    assert scores.shape == (2,)
    scores.sum().backward()
    assert torch.isfinite(px.grad).all()
    assert (px.grad.flatten(1).abs().sum(1) > 0).all()


def test_weighted_reward_is_the_weighted_sum(scorers):
    px = to_pixels(_smooth_image(5, 300, 300)).requires_grad_(True)
    hps, ir = scorers["hps"], scorers["imagereward"]
    reward = WeightedReward([(0.7, hps), (-2.0, ir)])
    total = reward.score_pixels(px, PROMPT)
    expected = 0.7 * hps.score_pixels(px, PROMPT) - 2.0 * ir.score_pixels(px, PROMPT)
    torch.testing.assert_close(total, expected)
    (grad,) = torch.autograd.grad(total.sum(), px)
    (g1,) = torch.autograd.grad(hps.score_pixels(px, PROMPT).sum(), px)
    (g2,) = torch.autograd.grad(ir.score_pixels(px, PROMPT).sum(), px)
    torch.testing.assert_close(grad, 0.7 * g1 - 2.0 * g2, rtol=1e-4, atol=1e-7)
    with pytest.raises(TypeError, match="score_pixels"):
        WeightedReward([(1.0, object())])


def test_bad_pixels_are_refused(scorers):
    scorer = scorers["hps"]
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        scorer.score_pixels(torch.rand(3, 32, 32), PROMPT)
    with pytest.raises(ValueError, match="uint8"):
        scorer.score_pixels(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), PROMPT)
    with pytest.raises(ValueError, match="2 prompts for 3 images"):
        scorer.score_pixels(torch.rand(3, 3, 32, 32), ["a", "b"])
