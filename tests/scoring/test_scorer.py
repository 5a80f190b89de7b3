"""The Scorer: each kind computes exactly its formula; the batch path equals the simple path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prefalign.data.images import ImageLoadError
from prefalign.scoring import ScorerLoadError, convert_checkpoint, load_scorer
from prefalign.scoring.heads import AestheticMLP
from prefalign.scoring.scorer import ScoreError


def reference_embeddings(scorer, images, prompt):
    """Embeddings straight from the HF model, the way the transformers docs compute them."""
    pixels = torch.stack([scorer.preprocess(im) for im in images])
    with torch.no_grad():
        img = scorer.model.get_image_features(pixel_values=pixels).pooler_output
        enc = scorer.tokenizer([prompt], return_tensors="pt", padding=True)
        txt = scorer.model.get_text_features(**enc).pooler_output
    return img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("kind", ["hps", "clip", "pickscore"])
def test_each_kind_is_its_formula(tiny_hps_dir, images, kind):
    scorer = load_scorer(f"{kind}:{tiny_hps_dir}", device="cpu")
    assert scorer.kind == kind
    img, txt = reference_embeddings(scorer, images, "a red circle")
    cos = (img @ txt.T).squeeze(1)
    expected = {"hps": 100 * cos, "clip": cos, "pickscore": scorer.model.logit_scale.exp() * cos}[kind]
    torch.testing.assert_close(scorer.score(images, "a red circle"), expected, rtol=1e-5, atol=1e-5)


def test_probabilities_are_a_softmax_over_the_prompts_images(tiny_hps_dir, images):
    scorer = load_scorer(f"pickscore:{tiny_hps_dir}", device="cpu")
    p = scorer.probabilities(images, "a cat")
    assert p.shape == (len(images),)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))
    torch.testing.assert_close(p, torch.softmax(scorer.score(images, "a cat"), 0))


def test_aesthetic_ignores_the_prompt(tiny_clip_dir, tmp_path, images):
    torch.manual_seed(0)
    head = AestheticMLP([32, 1024, 128, 64, 16, 1])
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, tmp_path / "mlp.safetensors")
    out = convert_checkpoint("aesthetic", tmp_path / "mlp.safetensors", tmp_path / "aes", base=tiny_clip_dir)
    scorer = load_scorer(out, device="cpu")
    img, _ = reference_embeddings(scorer, images, "x")
    with torch.no_grad():
        expected = head.eval()(img)
    torch.testing.assert_close(scorer.score(images, "anything"), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scorer.score(images, "something else"), expected, rtol=1e-5, atol=1e-5)


def test_batch_path_equals_single_path_and_encodes_each_prompt_once(tiny_hps_dir, images):
    scorer = load_scorer(tiny_hps_dir, device="cpu")
    records = [("a red circle", images[:2]), ("a blue square", images[2:5]), ("a red circle", images[1:4])]
    calls = []
    original = scorer.model.get_text_features

    def counting(**kw):
        calls.append(kw["input_ids"].shape[0])
        return original(**kw)

    scorer.model.get_text_features = counting
    result = scorer.score_records(records, batch_size=3, progress=False)
    assert sum(calls) == 2  # two distinct prompts, each encoded once
    assert not result.failures
    for (prompt, imgs), got in zip(records, result.scores):
        np.testing.assert_allclose(got, scorer.score(imgs, prompt).numpy(), rtol=1e-5, atol=1e-4)


def test_failures_are_recorded_and_the_run_goes_on(tiny_hps_dir, images, tmp_path):
    scorer = load_scorer(tiny_hps_dir, device="cpu")
    (tmp_path / "empty.png").write_bytes(b"")
    records = [
        ("a red circle", [images[0], str(tmp_path / "missing.png"), images[1]]),
        ("", [images[2]]),
        ("a cat", [str(tmp_path / "empty.png")]),
    ]
    result = scorer.score_records(records, batch_size=2, progress=False)
    assert np.isnan(result.scores[0][1]) and not np.isnan(result.scores[0][[0, 2]]).any()
    assert np.isnan(result.scores[1]).all() and np.isnan(result.scores[2]).all()
    reasons = sorted(f.reason for f in result.failures)
    assert reasons == ["empty file (0 bytes)", "empty prompt", "file not found"]
    with pytest.raises(ImageLoadError, match=r"missing\.png: file not found"):
        scorer.score_records(records[:1], strict=True, progress=False)
    with pytest.raises(ScoreError, match="record 1: empty prompt"):
        scorer.score_records(records, strict=True, progress=False)


def test_long_prompts_are_truncated_with_a_warning(tiny_hps_dir, images):
    scorer = load_scorer(tiny_hps_dir, device="cpu")
    long_prompt = " ".join(["red circle"] * 60)
    with pytest.warns(UserWarning, match="truncated to 77"):
        a = scorer.score(images[:1], long_prompt)
    assert torch.isfinite(a).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once per prompt
        scorer.score(images[:1], long_prompt)


def test_empty_prompt_is_an_error(tiny_hps_dir, images):
    scorer = load_scorer(tiny_hps_dir, device="cpu")
    with pytest.raises(ValueError, match="empty prompt"):
        scorer.score(images[:1], "  ")


def test_precision_is_applied(tiny_hps_dir, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warns on CPUs without native bf16 (test_precision.py)
        scorer = load_scorer(tiny_hps_dir, device="cpu", precision="bf16")
    assert scorer.model.text_projection.weight.dtype == torch.bfloat16
    full = load_scorer(tiny_hps_dir, device="cpu").score(images, "a cat")
    torch.testing.assert_close(scorer.score(images, "a cat"), full, rtol=0.05, atol=2.0)


def test_compile_failure_falls_back_to_eager(tiny_hps_dir, images, monkeypatch):
    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager = load_scorer(tiny_hps_dir, device="cpu").score(images, "a cat")
    scorer = load_scorer(tiny_hps_dir, device="cpu", compile=True)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        got = scorer.score(images, "a cat")
    assert not scorer.compiled
    torch.testing.assert_close(got, eager)


@pytest.mark.slow
def test_compiled_scorer_matches_eager(tiny_hps_dir, images):
    eager = load_scorer(tiny_hps_dir, device="cpu")
    compiled = load_scorer(tiny_hps_dir, device="cpu", compile=True)
    records = [("a red circle", images)]  # 5 images, batch 4: the last batch is padded
    got = compiled.score_records(records, batch_size=4, progress=False).scores[0]
    assert compiled.compiled
    np.testing.assert_allclose(got, eager.score(images, "a red circle").numpy(), rtol=1e-4, atol=1e-3)


def test_load_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(ScorerLoadError, match="no such model directory"):
        load_scorer(tmp_path / "nowhere")
    monkeypatch.setenv("PREFALIGN_HOME", str(tmp_path))
    with pytest.raises(ScorerLoadError, match="prefalign convert --from hps-v2"):
        load_scorer("hps-v2")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ScorerLoadError, match="not a model directory"):
        load_scorer(tmp_path / "junk")


def test_named_models_resolve_under_prefalign_home(tiny_hps_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("PREFALIGN_HOME", str(tmp_path))
    shutil.copytree(tiny_hps_dir, tmp_path / "models" / "hps-v2.1")
    assert load_scorer("hps-v2.1", device="cpu").kind == "hps"


def test_plain_hf_directory_gets_clip_defaults(tiny_clip_dir):
    scorer = load_scorer(tiny_clip_dir, device="cpu")
    assert scorer.kind == "clip" and scorer.preprocess.mode == "center-crop"
    assert scorer.preprocess.size == 32
