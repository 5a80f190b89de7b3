"""HPSv3: a tiny random Qwen2-VL checkpoint in the release's layout, converted, loaded and scored,
agrees with ``reference_hpsv3`` (the original's pipeline, float64) to 1e-4; the original's 1-D
positions are matched (3-D ones would differ); a CPU is refused without ``allow_slow``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.scoring import ConversionError, convert_checkpoint, load_scorer
from prefalign.scoring.load import ScorerLoadError
from prefalign.testing.qwen2vl import to_release_key, write_tiny_hpsv3_release

from . import reference_hpsv3 as ref

RTOL = 1e-4
PROMPTS = ("a photo of a red circle", "Two cats, on a BLUE square!")


def _images():
    rng = np.random.RandomState(0)
    sizes = [(512, 512), (384, 512), (300, 200)]  # (w, h): square, portrait, small (upscaled)
    smooth = []
    for w, h in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 200 + rng.rand(h, w, 3) * 55
        smooth.append(Image.fromarray(base.astype(np.uint8)))
    return smooth


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hpsv3")
    ckpt, base = write_tiny_hpsv3_release(tmp)
    return tmp, ckpt, base


@pytest.fixture(scope="module")
def converted(release):
    tmp, ckpt, base = release
    return convert_checkpoint("hpsv3", ckpt, tmp / "out", base=base)


@pytest.fixture(scope="module")
def scorer(converted):
    return load_scorer(converted, device="cpu", allow_slow=True)


@pytest.fixture(scope="module")
def reference(release, scorer):
    """A float64 model holding the release's tensors (loaded by key, not through prefalign)."""
    from safetensors.torch import load_file
    from transformers import Qwen2VLForConditionalGeneration

    _, ckpt, _ = release
    state = load_file(str(ckpt))
    model = Qwen2VLForConditionalGeneration(scorer.model.config).double().eval()
    own = {to_release_key(k): k for k in model.state_dict()}
    missing, unexpected = model.load_state_dict(
        {own[k]: v.double() for k, v in state.items() if k in own}, strict=False
    )
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    tok = scorer.tokenizer  # the converted tokenizer: the base one plus <|Reward|>
    return model, ref.rm_head(state), tok


def test_template_tokens(scorer):
    ids = scorer.input_ids("a red car", 4)[0].tolist()
    assert ids.count(scorer.reward_id) == 1 and ids.count(scorer.image_id) == 4
    assert scorer.reward_id == len(scorer.tokenizer) - 1  # added last, as the original does


def test_scores_match_the_original(scorer, reference):
    model, head, tok = reference
    images = _images()
    for prompt in PROMPTS:
        got = scorer.score_with_variance(images, prompt)
        assert got.dtype == torch.float32 and got.shape == (3, 2)
        expected = torch.stack([ref.reward(model, head, tok, im, prompt) for im in images])
        torch.testing.assert_close(got.double(), expected, rtol=RTOL, atol=RTOL * expected.abs().max())
        torch.testing.assert_close(scorer.score(images, prompt), got[:, 0])
    a, b = scorer.score(images, PROMPTS[0]), scorer.score(images, PROMPTS[1])
    # the prompt and the image both move the score by far more than the tolerance
    tol = RTOL * a.abs().max()
    assert (a - b).abs().max() > 20 * tol and (a[0] - a[1]).abs() > 20 * tol


def test_one_dimensional_positions_as_the_original(scorer, reference):
    """Qwen2-VL's stock forward uses 3-D (t, h, w) rotary positions; HPSv3's forward passes
    position_ids=None, i.e. 1-D positions. The two differ; prefalign matches the 1-D one."""
    model, head, tok = reference
    image = _images()[1]
    one_d = ref.reward(model, head, tok, image, PROMPTS[0])
    three_d = ref.reward(model, head, tok, image, PROMPTS[0], positions_3d=True)
    got = scorer.score_with_variance([image], PROMPTS[0])[0].double()
    assert (one_d - three_d).abs().max() > 10 * RTOL * one_d.abs().max()
    torch.testing.assert_close(got, one_d, rtol=RTOL, atol=RTOL * one_d.abs().max())


def test_cpu_is_refused_without_allow_slow(converted):
    with pytest.raises(ScorerLoadError, match=r"refusing to score on the CPU.*--allow-slow"):
        load_scorer(converted, device="cpu")


def test_cli_refuses_then_scores_with_allow_slow(converted, tmp_path, capsys):
    from prefalign.cli.main import main

    img = tmp_path / "a.png"
    _images()[2].save(img)
    code = main(["score", "--model", str(converted), "--prompt", PROMPTS[0], str(img), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "--allow-slow" in err and "7B" in err
    out = tmp_path / "s.csv"
    code = main(
        ["score", "--model", str(converted), "--prompt", PROMPTS[0], str(img), "--device", "cpu"]
        + ["--allow-slow", "--out", str(out)]
    )
    assert code == 0 and out.exists()


def test_score_pixels_is_differentiable_and_matches_the_file_path(scorer):
    image = _images()[1]
    pixels = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None].requires_grad_(True)
    value = scorer.score_pixels(pixels, PROMPTS[0])
    value.sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    file_path = scorer.score([image], PROMPTS[0])
    torch.testing.assert_close(value.detach(), file_path, rtol=1e-5, atol=1e-6)


def test_spec_and_layout(converted):
    spec = json.loads((Path(converted) / "prefalign.json").read_text())
    assert spec["kind"] == "hpsv3" and spec["head"]["pixel_budget"] == 200704


def test_wrong_tokenizer_is_refused(release, tmp_path):
    from safetensors.torch import load_file, save_file

    _, ckpt, base = release
    state = load_file(str(ckpt))
    state["model.embed_tokens.weight"] = torch.zeros(state["model.embed_tokens.weight"].shape[0] + 5, 32)
    save_file(state, str(tmp_path / "big.safetensors"))
    with pytest.raises(ConversionError, match="embedding rows"):
        convert_checkpoint("hpsv3", tmp_path / "big.safetensors", tmp_path / "o", base=base)
    assert not (tmp_path / "o").exists()


def test_not_the_layout_names_the_keys(release, tmp_path):
    from safetensors.torch import load_file, save_file

    _, ckpt, base = release
    state = {k: v for k, v in load_file(str(ckpt)).items() if not k.startswith("rm_head.5")}
    save_file(state, str(tmp_path / "nohead.safetensors"))
    with pytest.raises(ConversionError, match=r"nohead\.safetensors.*rm_head"):
        convert_checkpoint("hpsv3", tmp_path / "nohead.safetensors", tmp_path / "o", base=base)
    with pytest.raises(ConversionError, match="--base"):
        convert_checkpoint("hpsv3", ckpt, tmp_path / "o")


def test_real_weights(tmp_path):
    """With ``PREFALIGN_HPSV3=HPSv3.safetensors`` and ``PREFALIGN_QWEN2VL=Qwen2-VL-7B-Instruct dir``
    (and a GPU), converts the release and scores the authors' README example."""
    src, base = os.environ.get("PREFALIGN_HPSV3"), os.environ.get("PREFALIGN_QWEN2VL")
    if not src or not Path(src).exists() or not base or not torch.cuda.is_available():
        pytest.skip("set PREFALIGN_HPSV3 and PREFALIGN_QWEN2VL, on a GPU, to run against the release")
    out = convert_checkpoint("hpsv3", src, tmp_path / "hpsv3", base=base)
    scorer = load_scorer(out, device="cuda", precision="bf16")
    assert scorer.head.layers[0].in_features == 3584


def test_transformers5_key_layout_converts_the_same(release, scorer, tmp_path):
    """A checkpoint re-saved under transformers >= 4.52 (``model.visual.*``,
    ``model.language_model.*``) converts to the same scorer as the release's 4.45 layout."""
    from safetensors.torch import load_file, save_file

    from prefalign.scoring.hpsv3 import _rename

    _, ckpt, base = release
    state = {_rename(k): v for k, v in load_file(str(ckpt)).items()}
    assert any(k.startswith("model.language_model.") for k in state)
    save_file(state, str(tmp_path / "new.safetensors"))
    out = convert_checkpoint("hpsv3", tmp_path / "new.safetensors", tmp_path / "o", base=base)
    image = _images()[2]
    again = load_scorer(out, device="cpu", allow_slow=True).score([image], PROMPTS[0])
    torch.testing.assert_close(again, scorer.score([image], PROMPTS[0]), rtol=0, atol=0)
