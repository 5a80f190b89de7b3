"""ImageReward: a random checkpoint in the released layout, converted, loaded and scored, agrees
with ``reference_imagereward`` (the original forward pass in float64) to 1e-4."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prefalign.scoring import ConversionError, convert_checkpoint, load_scorer

from . import reference_clip as rclip
from . import reference_imagereward as ref

PROMPTS = (
    "a photo of a red circle",
    "Two cats, on a BLUE square!",
    "weird image " * 20,
)  # the last truncates
RTOL = 1e-4
SIZE = 32


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imagereward")
    tok = ref.write_bert_tokenizer(tmp / "bert")
    sd = ref.random_checkpoint(len(tok), image_size=SIZE)
    torch.save(sd, tmp / "ImageReward.pt")
    return tmp, sd, tok


@pytest.fixture(scope="module")
def converted(release):
    tmp, _, _ = release
    return convert_checkpoint("imagereward", tmp / "ImageReward.pt", tmp / "out", tokenizer=tmp / "bert")


def test_scores_match_the_original(release, converted):
    _, sd, tok = release
    scorer = load_scorer(converted, device="cpu")
    assert scorer.kind == "imagereward"
    images = rclip.random_images(2, (50, 87), seed=1) + rclip.random_images(1, (87, 50), seed=2)
    px = rclip.pixels(images, "center-crop", SIZE)
    for prompt in PROMPTS:
        expected = ref.scores(sd, tok, px, prompt, vision_heads=2, text_heads=2)
        actual = scorer.score(images, prompt, batch_size=2)
        assert actual.dtype == torch.float32 and actual.shape == (3,)
        torch.testing.assert_close(actual.double(), expected, rtol=RTOL, atol=RTOL)
    # the prompt matters (cross-attention and text are wired in) and so does the image
    a, b = scorer.score(images, PROMPTS[0]), scorer.score(images, PROMPTS[1])
    assert (a - b).abs().max() > 1e-3 and (a[0] - a[1]).abs() > 1e-3


def test_wrong_head_count_is_detected(release, converted):
    """The trap of the feasibility check: transformers' BLIP default of 8 heads, not width/64."""
    tmp, sd, tok = release
    wrong = convert_checkpoint(
        "imagereward", tmp / "ImageReward.pt", tmp / "wrong", tokenizer=tmp / "bert", text_heads=4
    )
    images = rclip.random_images(2, SIZE, seed=3)
    expected = ref.scores(sd, tok, rclip.pixels(images, None, SIZE), PROMPTS[0], vision_heads=2, text_heads=2)
    got = load_scorer(wrong, device="cpu").score(images, PROMPTS[0]).double()
    assert (got - expected).abs().max() > 1e-3


def test_score_records_and_failures(converted, tmp_path):
    scorer = load_scorer(converted, device="cpu")
    images = rclip.random_images(2, SIZE, seed=4)
    result = scorer.score_records(
        [(PROMPTS[0], [images[0], tmp_path / "missing.png", images[1]]), ("", [images[0]])]
    )
    assert len(result.failures) == 2
    torch.testing.assert_close(
        torch.tensor(result.scores[0][[0, 2]]).float(), scorer.score(images, PROMPTS[0]), rtol=1e-5, atol=1e-5
    )
    assert torch.isnan(torch.tensor(result.scores[0][1])) and torch.isnan(torch.tensor(result.scores[1][0]))


def test_bad_checkpoint_names_the_keys(release, tmp_path):
    tmp, sd, _ = release
    broken = {k: v for k, v in sd.items() if "mlp.layers.7" not in k and "blocks.1.norm2" not in k}
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ConversionError, match=r"broken\.pt.*mlp\.layers\.7\.weight"):
        convert_checkpoint("imagereward", tmp_path / "broken.pt", tmp_path / "o", tokenizer=tmp / "bert")
    assert not (tmp_path / "o").exists()


def test_wrong_tokenizer_is_refused(release, tmp_path):
    tmp, sd, _ = release
    sd = dict(sd)
    sd["blip.text_encoder.embeddings.word_embeddings.weight"] = torch.zeros(500, 128)
    torch.save(sd, tmp_path / "big.pt")
    with pytest.raises(ConversionError, match="bert-base-uncased"):
        convert_checkpoint("imagereward", tmp_path / "big.pt", tmp_path / "o", tokenizer=tmp / "bert")


def test_real_weights(tmp_path):
    """With ``PREFALIGN_IMAGEREWARD=ImageReward.pt`` and ``PREFALIGN_BERT_TOKENIZER``, converts the release."""
    import os

    src, tok = os.environ.get("PREFALIGN_IMAGEREWARD"), os.environ.get("PREFALIGN_BERT_TOKENIZER")
    if not src or not Path(src).exists() or not tok:
        pytest.skip("set PREFALIGN_IMAGEREWARD and PREFALIGN_BERT_TOKENIZER to run against the release")
    out = convert_checkpoint("imagereward", src, tmp_path / "ir", tokenizer=tok)
    scorer = load_scorer(out, device="cpu")
    assert scorer.model.config.text_config.num_attention_heads == 12
    assert scorer.model.config.vision_config.layer_norm_eps == 1e-6


def test_is_a_scorer_like_and_a_reward(converted, tmp_path):
    # ImageReward has no encode_images (image and prompt go through one forward pass): it is a
    # ScorerLike all the same, and the diffusion trainers take it as a reward.
    from PIL import Image

    from prefalign.adapt.rewards import as_reward_fn
    from prefalign.scoring import PixelScorerLike, ScorerLike

    scorer = load_scorer(converted, device="cpu")
    assert isinstance(scorer, ScorerLike) and isinstance(scorer, PixelScorerLike)
    assert not hasattr(scorer, "encode_images")
    images = [Image.new("RGB", (SIZE, SIZE), c) for c in ("red", "blue", "green")]
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    reward = as_reward_fn(scorer)(images, prompts)
    expected = torch.cat(
        [scorer.score([images[0], images[2]], PROMPTS[0]), scorer.score([images[1]], PROMPTS[1])]
    )
    torch.testing.assert_close(reward, expected[[0, 2, 1]])
