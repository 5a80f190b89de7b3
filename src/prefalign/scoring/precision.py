"""Which precision a scorer runs in: detected from the hardware, never assumed.

``--precision auto`` (the default everywhere a scorer is loaded) chooses:

* CUDA: bf16 where the GPU computes it natively (``torch.cuda.is_bf16_supported``), else fp16;
* CPU: bf16 where torch reports native bf16 dot products (AVX-512 BF16 or AMX tiles, from
  ``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``); fp32 where it reports
  that they are missing (an x86 CPU with AVX2 alone runs bf16 matmuls emulated, many times slower
  than fp32). Where the query cannot tell (another architecture, or a torch without the query), a
  one-off micro-benchmark of fp32 against bf16 matrix products decides, cached per machine in
  ``$PREFALIGN_HOME/cache/precision.json``;
* anything else: fp32.

``auto`` does not choose int8 (ours): torchao's dynamic int8 keeps the ranking on the tiny models
of the tests (and ``benchmarks/bench_score.py`` checks it on a ViT-L/14-shaped one), but no machine
we measured ran it faster than bf16 end to end; the benchmark prints its ratio to bf16, so a
machine where it wins shows it.

Whatever the precision, the score heads, the final L2 normalisation and the cosine run in fp32
(``Scorer.encode_pixels`` / ``score_embeddings``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from prefalign.errors import PrefalignError, first_line
from prefalign.scoring.catalog import PRECISION_CHOICES

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# int8: weights int8, activations quantised per token at run time; everything else stays fp32.
INT8_BASE_DTYPE = torch.float32
# The micro-benchmark's verdict: bf16 only when it is clearly faster (ours: 1.3x, above noise).
BF16_MIN_SPEEDUP = 1.3
CACHE_FILE = "precision.json"


class PrecisionError(PrefalignError, ValueError):
    """A precision that cannot be used here (unknown name, int8 without torchao...)."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a scorer runs in and why (logged and written in output metadata)."""

    precision: str  # fp32 | bf16 | fp16 | int8
    requested: str  # what the user asked for (auto, or the same as precision)
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def runtime_metadata(self, scorer: str, device: object) -> dict[str, str]:
        """What a scorer's output metadata records: which scorer, where, in which precision and why."""
        return {
            "scorer": scorer,
            "device": str(device),
            "precision": self.precision,
            "precision_requested": self.requested,
            "precision_reason": self.reason,
        }


def cpu_features() -> dict[str, bool | None]:
    """What torch reports about this CPU's low-precision dot products (None: cannot tell).

    Keys: ``avx512_bf16``, ``amx_tile``, ``amx_fp16``, ``vnni``, and ``capability`` (the string
    of ``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX2``, ``AVX512``).
    """
    queries = {
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_tile": "_is_amx_tile_supported",
        "amx_fp16": "_is_amx_fp16_supported",
        "vnni": "_is_vnni_supported",
    }
    out: dict[str, bool | None] = {}
    for key, name in queries.items():
        fn = getattr(torch.cpu, name, None)
        try:
            out[key] = bool(fn()) if fn is not None else None
        except Exception:  # a query that breaks tells nothing
            out[key] = None
    try:
        out["capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:
        out["capability"] = None
    return out


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def native_cpu_bf16(features: dict | None = None) -> bool | None:
    """True/False where torch's query answers for this CPU, None where it cannot tell."""
    f = cpu_features() if features is None else features
    if f.get("avx512_bf16") or f.get("amx_tile"):
        return True
    if _is_x86() and f.get("avx512_bf16") is False and f.get("amx_tile") is False:
        return False
    return None  # another architecture (ARM bf16 is not in the query), or no query


def choose_precision(
    requested: str = "auto", device: str | torch.device = "cpu", *, features: dict | None = None
) -> PrecisionChoice:
    """Resolve ``requested`` (``auto`` or an explicit precision) for ``device``.

    Args:
        requested: one of ``PRECISION_CHOICES``.
        device: where the model runs.
        features: ``cpu_features()`` (passed by tests; queried when None).

    Raises:
        PrecisionError: an unknown precision name.
    """
    if requested not in PRECISION_CHOICES:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {requested!r}")
    device = torch.device(device)
    if requested != "auto":
        _warn_if_emulated(requested, device, features)
        return PrecisionChoice(requested, requested, "asked for")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return PrecisionChoice("bf16", "auto", f"CUDA GPU {_cuda_name(device)} computes bf16 natively")
        return PrecisionChoice("fp16", "auto", f"CUDA GPU {_cuda_name(device)} has no native bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", "auto", f"{device.type} device: fp32 (ours)")
    f = cpu_features() if features is None else features
    native = native_cpu_bf16(f)
    if native:
        which = "AMX" if f.get("amx_tile") else "AVX-512 BF16"
        return PrecisionChoice(
            "bf16", "auto", f"CPU has native bf16 dot products ({which}, as torch reports)"
        )
    if native is False:
        return PrecisionChoice(
            "fp32", "auto", f"CPU has no native bf16 dot products (torch reports {f.get('capability')})"
        )
    speedup = measured_bf16_speedup()
    if speedup >= BF16_MIN_SPEEDUP:
        return PrecisionChoice("bf16", "auto", f"bf16 matmul measured {speedup:.1f}x fp32 on this CPU")
    return PrecisionChoice("fp32", "auto", f"bf16 matmul measured {speedup:.2f}x fp32 on this CPU")


def _cuda_name(device: torch.device) -> str:
    try:
        return torch.cuda.get_device_name(device)
    except Exception:  # pragma: no cover - a device that cannot be named
        return str(device)


def _warn_if_emulated(precision: str, device: torch.device, features: dict | None) -> None:
    """An explicit bf16/fp16/int8 on a CPU without the instructions for it runs emulated: say so."""
    if device.type != "cpu" or precision == "fp32":
        return
    f = cpu_features() if features is None else features
    missing = {
        "bf16": native_cpu_bf16(f) is False,
        "fp16": _is_x86() and f.get("amx_fp16") is False,
        "int8": _is_x86() and f.get("vnni") is False and f.get("amx_tile") is False,
    }[precision]
    if missing:
        warnings.warn(
            f"{precision} on this CPU has no native dot products (torch reports {f.get('capability')}): "
            "it runs emulated, usually slower than fp32; --precision auto chooses for you",
            stacklevel=4,
        )


def _machine_key() -> str:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}|{model}|{os.cpu_count()} cpus|torch {torch.__version__}"


def measured_bf16_speedup(*, n: int = 512, seconds: float = 0.3, cache: bool = True) -> float:
    """bf16 over fp32 matmul throughput on this CPU, measured once per machine and cached.

    Used only when torch's capability query cannot tell. The cache lives in
    ``$PREFALIGN_HOME/cache/precision.json``, keyed by architecture, CPU model, core count and torch
    version; an unreadable cache is measured again.
    """
    from prefalign.files import write_json_atomic
    from prefalign.scoring.load import prefalign_home

    path = prefalign_home() / "cache" / CACHE_FILE
    key = _machine_key()
    stored: dict = {}
    if cache and path.exists():
        try:
            stored = json.loads(path.read_text())
            return float(stored[key]["bf16_speedup"])
        except (OSError, ValueError, KeyError, TypeError):
            stored = stored if isinstance(stored, dict) else {}
    rates = {dt: _matmul_rate(dt, n, seconds) for dt in (torch.float32, torch.bfloat16)}
    speedup = rates[torch.bfloat16] / rates[torch.float32]
    logger.info("bf16 matmul measured at %.2fx fp32 on this CPU (%s)", speedup, key)
    if cache:
        stored[key] = {
            "bf16_speedup": speedup,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            write_json_atomic(path, stored, indent=1)
        except OSError as exc:  # a read-only home only costs a re-measure next time
            logger.debug("cannot cache the precision benchmark in %s: %s", path, exc)
    return speedup


def _matmul_rate(dtype: torch.dtype, n: int, seconds: float) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
    return count / (time.perf_counter() - start)


def quantize_int8(model: nn.Module) -> int:
    """Make the linear layers of both transformer encoders int8 (weights, and activations per token
    at run time) with torchao's ``Int8DynamicActivationInt8WeightConfig``; embeddings, layer norms
    and the projections stay fp32. Returns the number of layers quantised.

    Raises:
        PrecisionError: torchao is not installed or does not work with this torch.
    """
    try:
        torchao_log = logging.getLogger("torchao")
        level = torchao_log.level
        torchao_log.setLevel(logging.ERROR)  # its CUDA-only kernels fail to load on CPU builds
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        finally:
            torchao_log.setLevel(level)
    except Exception as exc:
        raise PrecisionError(
            f"--precision int8 needs torchao ({first_line(exc)}); install it with "
            "`pip install 'prefalign[int8]'` or use --precision auto"
        ) from None

    count = 0

    def in_encoder(module: nn.Module, fqn: str) -> bool:
        nonlocal count
        hit = isinstance(module, nn.Linear) and ".encoder.layers." in f".{fqn}"
        count += hit
        return hit

    try:
        quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=in_encoder)
    except Exception as exc:
        raise PrecisionError(
            f"torchao could not quantise the model to int8 ({first_line(exc)}); use --precision auto"
        ) from None
    return count


@dataclass(frozen=True)
class RankingAgreement:
    """How well scores in a lower precision keep the fp32 ranking (the guarantee we test).

    ``spearman``: rank correlation with fp32; ``pairs_checked``: pairs whose fp32 gap exceeds
    ``min_gap`` of the fp32 spread; ``pairs_flipped``: of those, pairs whose order changed.
    """

    spearman: float
    pairs_checked: int
    pairs_flipped: int

    def holds(self, min_spearman: float = 0.99) -> bool:
        """The guarantee: Spearman >= 0.99 and no clear pair (gap > 2% of the spread) flipped."""
        return self.spearman >= min_spearman and self.pairs_flipped == 0


def ranking_agreement(reference, other, *, min_gap: float = 0.02) -> RankingAgreement:
    """Compare scores ``other`` against ``reference`` (fp32), both 1-d of the same length (n >= 2)."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64).ravel()
    got = np.asarray(other, dtype=np.float64).ravel()
    if ref.shape != got.shape or ref.size < 2:
        raise ValueError(f"need two score vectors of the same length >= 2, got {ref.shape} and {got.shape}")
    rank_ref = np.argsort(np.argsort(ref)).astype(np.float64)
    rank_got = np.argsort(np.argsort(got)).astype(np.float64)
    spearman = float(np.corrcoef(rank_ref, rank_got)[0, 1])
    gap = ref[:, None] - ref[None, :]
    clear = np.triu(np.abs(gap) > min_gap * (ref.max() - ref.min()), k=1)
    flipped = clear & (np.sign(gap) != np.sign(got[:, None] - got[None, :]))
    return RankingAgreement(spearman, int(clear.sum()), int(flipped.sum()))


def float_precision(
    requested: str, device: str | torch.device, *, who: str = "this scorer"
) -> tuple[PrecisionChoice, torch.dtype]:
    """``choose_precision`` for models that run in a floating-point dtype only (no int8 path),
    e.g. joint image-text scorers: the choice and its dtype.

    Raises:
        PrecisionError: an unknown name, or int8.
    """
    if requested in PRECISION_CHOICES and requested != "auto" and requested not in DTYPES:
        raise PrecisionError(f"{who}: {requested} is not available; use auto, fp32, bf16 or fp16")
    choice = choose_precision(requested, device)
    return choice, DTYPES[choice.precision]
