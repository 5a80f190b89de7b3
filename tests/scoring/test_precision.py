"""Precision: chosen from detected capabilities, recorded, and keeping the fp32 ranking."""

from __future__ import annotations

import io
import itertools
import json
import warnings

import pytest
import torch

from prefalign.scoring import load_scorer
from prefalign.scoring import precision as prec
from prefalign.scoring.precision import PrecisionError, choose_precision, ranking_agreement
from prefalign.testing import BACKGROUNDS, COLOURS, SHAPES, draw_shape

AVX2 = {"avx512_bf16": False, "amx_tile": False, "amx_fp16": False, "vnni": False, "capability": "AVX2"}
AVX512_BF16 = {**AVX2, "avx512_bf16": True, "vnni": True, "capability": "AVX512"}
AMX = {**AVX2, "amx_tile": True, "capability": "AVX512"}
UNKNOWN = dict.fromkeys(AVX2, None)


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """48 JPEGs: every shape x colour x background x size of the shape."""
    out = []
    for shape, colour, bg, jitter in itertools.product(SHAPES, COLOURS, BACKGROUNDS, (0, 6)):
        buf = io.BytesIO()
        draw_shape(shape, colour, bg, size=96, jitter=jitter).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


@pytest.fixture
def x86(monkeypatch):
    monkeypatch.setattr(prec, "_is_x86", lambda: True)


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    ("features", "expected", "why"),
    [
        (AVX512_BF16, "bf16", "AVX-512 BF16"),
        (AMX, "bf16", "AMX"),
        (AVX2, "fp32", "no native bf16 dot products (torch reports AVX2)"),
    ],
)
def test_auto_on_cpu_follows_the_capability_query(x86, features, expected, why):
    choice = choose_precision("auto", "cpu", features=features)
    assert (choice.precision, choice.requested) == (expected, "auto")
    assert why in choice.reason


@pytest.mark.parametrize(("speedup", "expected"), [(3.4, "bf16"), (0.5, "fp32")])
def test_auto_measures_when_the_query_cannot_tell(monkeypatch, speedup, expected):
    monkeypatch.setattr(prec, "_is_x86", lambda: False)  # e.g. an ARM CPU: not in torch's query
    monkeypatch.setattr(prec, "measured_bf16_speedup", lambda: speedup)
    choice = choose_precision("auto", "cpu", features=UNKNOWN)
    assert choice.precision == expected
    assert "measured" in choice.reason


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda(monkeypatch, bf16, expected):
    seen = {}

    def is_bf16_supported(including_emulation=True):
        seen["emulation"] = including_emulation
        return bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    choice = choose_precision("auto", "cuda")
    assert choice.precision == expected
    assert seen["emulation"] is False  # emulated bf16 is slow: only native counts


def test_auto_elsewhere_is_fp32():
    assert choose_precision("auto", "meta").precision == "fp32"


def test_explicit_precision_is_kept_and_emulation_is_named(x86):
    with pytest.warns(UserWarning, match="bf16 on this CPU has no native dot products"):
        choice = choose_precision("bf16", "cpu", features=AVX2)
    assert (choice.precision, choice.requested) == ("bf16", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("bf16", "cpu", features=AVX512_BF16).precision == "bf16"


def test_unknown_precision_is_one_clear_error():
    with pytest.raises(PrecisionError, match="precision must be one of auto, fp32"):
        choose_precision("fp8", "cpu")


def test_micro_benchmark_is_cached_per_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFALIGN_HOME", str(tmp_path))
    calls = []

    def rate(dtype, n, seconds):
        calls.append(dtype)
        return 4.0 if dtype == torch.bfloat16 else 2.0

    monkeypatch.setattr(prec, "_matmul_rate", rate)
    assert prec.measured_bf16_speedup() == pytest.approx(2.0)
    assert prec.measured_bf16_speedup() == pytest.approx(2.0)
    assert len(calls) == 2  # measured once (fp32 + bf16), then read from the cache
    cache = tmp_path / "cache" / prec.CACHE_FILE
    assert prec._machine_key() in json.loads(cache.read_text())
    cache.write_text("{not json")  # a broken cache is measured again, not trusted
    assert prec.measured_bf16_speedup() == pytest.approx(2.0)
    assert len(calls) == 4


# ----------------------------------------------------------------------------- the ranking guarantee
def test_ranking_agreement_detects_a_flipped_clear_pair():
    ref = [0.0, 1.0, 2.0, 3.0, 10.0]
    assert ranking_agreement(ref, [0.01, 1.0, 2.0, 3.0, 10.0]).holds()
    bad = ranking_agreement(ref, [0.0, 1.0, 3.0, 2.0, 10.0])  # gap 1.0 > 2% of the spread of 10
    assert bad.pairs_flipped == 1 and not bad.holds()
    assert ranking_agreement(ref, [0.0, 1.0, 2.0, 3.0, 10.0]).pairs_checked == 10


@pytest.mark.parametrize("precision", ["bf16", "fp16", "int8"])
def test_every_lower_precision_keeps_the_fp32_ranking(tiny_hps_dir, jpegs, precision):
    if precision == "int8":
        pytest.importorskip("torchao")
    reference = load_scorer(tiny_hps_dir, device="cpu", precision="fp32").score(jpegs, "a red circle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emulated on CPUs without the instructions: slow, still exact enough
        scorer = load_scorer(tiny_hps_dir, device="cpu", precision=precision)
    got = scorer.score(jpegs, "a red circle", batch_size=16)
    agreement = ranking_agreement(reference, got)
    assert agreement.pairs_checked > 500
    assert agreement.holds(), agreement
    assert got.dtype == torch.float32


def test_real_cpu_bf16_path(tiny_hps_dir, jpegs):
    """Not mocked: the tower runs in bf16 on this CPU; embeddings, head inputs and cosine are fp32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = load_scorer(tiny_hps_dir, device="cpu", precision="bf16")
    assert scorer.model.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    seen = []
    hook = scorer.model.visual_projection.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    embeds = scorer.encode_images(jpegs[:4])
    hook.remove()
    assert seen == [torch.bfloat16]
    assert embeds.dtype == torch.float32
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(4))
    assert scorer.encode_text(["a red circle"]).dtype == torch.float32
    assert scorer.runtime_metadata()["precision"] == "bf16"


def test_int8_quantises_the_encoders_only(tiny_hps_dir):
    pytest.importorskip("torchao")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = load_scorer(tiny_hps_dir, device="cpu", precision="int8")
    fc1 = scorer.model.vision_model.encoder.layers[0].mlp.fc1.weight
    assert type(fc1.data).__module__.startswith("torchao")  # an int8 torchao tensor
    assert type(scorer.model.visual_projection.weight.data) is torch.Tensor  # projections stay fp32
    assert scorer.model.visual_projection.weight.dtype == torch.float32


def test_int8_without_torchao_is_one_clear_error(tiny_hps_dir, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ModuleNotFoundError("No module named 'torchao'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PrecisionError, match=r"int8 needs torchao .*pip install 'prefalign\[int8\]'"):
            load_scorer(tiny_hps_dir, device="cpu", precision="int8")


def test_auto_is_the_default_and_is_recorded(tiny_hps_dir, caplog):
    with caplog.at_level("INFO", logger="prefalign.scoring.scorer"):
        scorer = load_scorer(tiny_hps_dir, device="cpu")
    meta = scorer.runtime_metadata()
    assert meta["precision_requested"] == "auto"
    assert meta["precision"] == choose_precision("auto", "cpu").precision
    assert meta["precision_reason"] in caplog.text


# ----------------------------------------------------------------------------- attention
def test_sdpa_equals_eager(tiny_clip_dir, tiny_hps_dir, jpegs):
    from transformers import CLIPModel

    from prefalign.scoring.vision import image_features

    scorer = load_scorer(tiny_hps_dir, device="cpu", precision="fp32")
    assert scorer.runtime_metadata()["attn_implementation"] == "sdpa"
    eager = CLIPModel.from_pretrained(tiny_clip_dir, attn_implementation="eager").eval()
    sdpa = CLIPModel.from_pretrained(tiny_clip_dir, attn_implementation="sdpa").eval()
    pixels = scorer.preprocess.batch(jpegs[:8])
    tokens = scorer.tokenize(["a red circle", "a photo of a blue square on a black background"])
    with torch.no_grad():
        torch.testing.assert_close(image_features(sdpa, pixels), image_features(eager, pixels))
        torch.testing.assert_close(
            sdpa.get_text_features(**tokens).pooler_output, eager.get_text_features(**tokens).pooler_output
        )


def test_pickscore_scale_stays_fp32_in_bf16(tiny_clip_dir):
    import math

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = load_scorer(f"pickscore:{tiny_clip_dir}", device="cpu", precision="bf16")
    scorer.model.logit_scale.data.fill_(4.6)  # cast anyway: only the fp32 copy may be used
    one = torch.nn.functional.normalize(torch.ones(1, 4), dim=-1)
    got = scorer.score_embeddings(one, one)
    expected = math.exp(scorer._logit_scale.item())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-6)
    init = scorer.model.config.logit_scale_init_value  # what the weights hold, before any cast
    assert scorer._logit_scale.item() == pytest.approx(init, rel=1e-6)
    assert torch.tensor(init).bfloat16().item() != pytest.approx(init, rel=1e-4)  # bf16 would round it


def test_float_precision_for_models_without_int8(x86):
    choice, dtype = prec.float_precision("auto", "cpu")
    assert dtype == prec.DTYPES[choice.precision]
    with pytest.raises(PrecisionError, match="ImageReward: int8 is not available"):
        prec.float_precision("int8", "cpu", who="ImageReward")
