"""Scoring throughput per precision, against this machine's rooflines and a naive loop.

Scores N JPEG files (512 px) for a few prompts with a CLIP of the chosen size (random weights
built from the config: the speed does not depend on the values) and prints, measured side by
side in one run (configurations interleaved, each repeated, medians reported):

* the fp32, bf16 and int8 matmul rooflines of this machine (GFLOP/s, GOP/s for int8), and
  what ``--precision auto`` chooses here and why;
* prefalign's ``score_records`` end to end from the files with ``auto``, fp32, bf16, int8
  (``--precisions``): images/s, the image tower's GFLOP/s, its fraction of that precision's
  roofline, the speed-up over the naive loop, and the ranking against fp32 (Spearman, and
  the pairs whose fp32 gap exceeds 2% of the spread that changed order);
* the model alone (the image tower on preprocessed pixels) for the ``auto`` precision;
* a naive reference that loops one image at a time in fp32 and re-encodes the prompt for each
  image (how the public HPS v2 ``score`` function works);
* with ``--memory 1000,10000``: peak RSS of scoring that many images from a dataset (each in a
  fresh process), which should stay flat.

Usage:
  python benchmarks/bench_score.py                       # ViT-L/14, 24 images, 3 repeats
  python benchmarks/bench_score.py --model-size tiny --images 24 --repeats 2   # a quick check
  python benchmarks/bench_score.py --device cuda --batch-size 64 --images 512 --precisions auto,fp16,bf16
  python benchmarks/bench_score.py --model-size tiny --memory 1000,10000
  python benchmarks/bench_score.py --compile --precisions auto   # torch.compile against eager
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from PIL import Image

MODEL_SIZES = ("tiny", "base", "vit-l")


def clip_config(size: str, vocab_size: int):
    """A CLIP config: ``vit-l`` is ViT-L/14 (HPS v1, PickScore's tower), ``base`` ViT-B/32-like,
    ``tiny`` a 2-layer 64-wide model on the same 224-px input (the pipeline, not the model)."""
    from transformers import CLIPConfig

    from prefalign.testing import tiny_clip_config

    if size == "tiny":
        return tiny_clip_config(vocab_size=vocab_size, image_size=224, patch_size=32)
    wide = size == "vit-l"
    text = dict(
        vocab_size=vocab_size,
        hidden_size=768 if wide else 512,
        intermediate_size=3072 if wide else 2048,
        num_hidden_layers=12,
        num_attention_heads=12 if wide else 8,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    vision = dict(
        hidden_size=1024 if wide else 768,
        intermediate_size=4096 if wide else 3072,
        num_hidden_layers=24 if wide else 12,
        num_attention_heads=16 if wide else 12,
        image_size=224,
        patch_size=14 if wide else 32,
        hidden_act="quick_gelu",
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768 if wide else 512)


def image_tower_gflop(cfg) -> float:
    """Multiply-adds x 2 of the ViT image tower for one image (projections, MLP, attention)."""
    v = cfg.vision_config
    tokens = (v.image_size // v.patch_size) ** 2 + 1
    w, mlp = v.hidden_size, v.intermediate_size
    per_layer = 4 * tokens * w * w + 2 * tokens * w * mlp + 2 * tokens * tokens * w
    patch = (tokens - 1) * 3 * v.patch_size**2 * w
    return 2 * (v.num_hidden_layers * per_layer + patch + w * cfg.projection_dim) / 1e9


def matmul_rate(kind: str, device: str, n: int = 1024, seconds: float = 1.0) -> float:
    """Median G(FL)OP/s of n x n products of ``kind`` (fp32, bf16, fp16, int8) on ``device``."""
    if kind == "int8":
        a = torch.randint(-127, 127, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-127, 127, (n, n), dtype=torch.int8, device=device)
        mm: Callable = torch._int_mm
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[kind]
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        mm = torch.mm
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    mm(a, b)
    sync()
    rates: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(rates) < 3:
        t0 = time.perf_counter()
        mm(a, b)
        sync()
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
        if len(rates) >= 3 and time.perf_counter() - t0 > seconds:  # one product too slow to repeat
            break
    return statistics.median(rates)


def write_jpegs(directory: Path, n: int, size: int = 512) -> list[str]:
    rng = np.random.RandomState(0)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1)
        noise = rng.randint(0, 40, (size, size, 3))
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        path = directory / f"img{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def naive_reference(model, tokenizer, preprocess, records, device: str) -> list[float]:
    """One image at a time in fp32, the prompt re-encoded for each (as HPS v2's ``score``)."""
    out = []
    with torch.no_grad():
        for prompt, paths in records:
            for path in paths:
                pixels = preprocess(Image.open(path)).unsqueeze(0).to(device)
                text = tokenizer(
                    [prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
                )
                res = model(input_ids=text["input_ids"].to(device), pixel_values=pixels)
                img = res.image_embeds / res.image_embeds.norm(dim=-1, keepdim=True)
                txt = res.text_embeds / res.text_embeds.norm(dim=-1, keepdim=True)
                out.append(float(100 * (img * txt).sum()))
    return out


def peak_rss_mb(n_images: int, size: str, batch_size: int) -> float:
    """Peak RSS (MB) of a fresh process scoring ``n_images`` from a dataset with the tiny-or-given model."""
    code = f"""
import resource, sys, tempfile, warnings
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
import bench_score as b
from prefalign.data import Record, load_dataset, save_dataset
from prefalign.scoring import Scorer, ScorerSpec
from prefalign.data.images import Preprocess
from prefalign.testing import tiny_clip_tokenizer
from transformers import CLIPModel
tok = tiny_clip_tokenizer()
model = CLIPModel(b.clip_config({size!r}, len(tok))).eval()
tmp = Path(tempfile.mkdtemp(prefix="bench-rss-"))
(tmp / "images").mkdir()
paths = b.write_jpegs(tmp / "images", 50, size=256)
records = [Record(prompt=f"a photo {{k % 97}}", images=["images/" + Path(paths[k % 50]).name])
           for k in range({n_images})]
save_dataset(records, tmp)
data = load_dataset(tmp)
scorer = Scorer(model, tok, ScorerSpec(kind="hps", preprocess=Preprocess()), device="cpu")
result = scorer.score_records([(r.prompt, [data.image_path(i) for i in r.images]) for r in data],
                              batch_size={batch_size}, progress=False)
assert not result.failures, result.failures[:3]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=24, help="JPEG files to score per run (default 24)")
    parser.add_argument("--prompts", type=int, default=3, help="distinct prompts (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.add_argument("--model-size", choices=MODEL_SIZES, default="vit-l", help="default vit-l (ViT-L/14)")
    parser.add_argument(
        "--precisions",
        default=None,
        help="comma-separated (default auto,fp32,bf16,int8, less those torch reports as emulated on this CPU)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--decode-workers", type=int, default=None, help="default: sized to the device")
    parser.add_argument(
        "--compile", action="store_true", help="also auto with torch.compile (warm-up excluded)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop (slow on big runs)")
    parser.add_argument(
        "--memory", default="", help="also report peak RSS scoring these image counts, e.g. 1000,10000"
    )
    args = parser.parse_args()

    from transformers import CLIPModel

    from prefalign.data.images import Preprocess
    from prefalign.scoring import Scorer, ScorerSpec
    from prefalign.scoring.precision import choose_precision, cpu_features, native_cpu_bf16, ranking_agreement
    from prefalign.testing import tiny_clip_tokenizer

    device = args.device
    if args.precisions is None:
        precisions = ["auto", "fp32", "bf16", "int8"]
        if device == "cpu":
            f = cpu_features()
            emulated = {
                "bf16": native_cpu_bf16(f) is False,
                "int8": f.get("vnni") is False and not f.get("amx_tile"),
            }
            for p, slow in emulated.items():
                if slow:
                    precisions.remove(p)
                    print(f"skipping {p}: emulated on this CPU (pass --precisions to measure it anyway)")
    else:
        precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    auto = choose_precision("auto", device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, device {device}"
    )
    if device == "cpu":
        print(f"CPU features (torch): {cpu_features()}")
    print(f"--precision auto -> {auto.precision} ({auto.reason})")

    roof_kinds = ["fp32", "bf16", "int8"] if device == "cpu" else ["fp32", "bf16", "fp16", "int8"]
    roofline: dict[str, float] = {}
    for kind in roof_kinds:
        try:
            roofline[kind] = matmul_rate(kind, device)
        except RuntimeError as exc:  # e.g. no int8 kernel on this device
            print(f"{kind} matmul: unavailable ({str(exc).splitlines()[0]})")
    print(
        "matmul rooflines: "
        + ", ".join(f"{k} {v:.3g} G{'OP' if k == 'int8' else 'FLOP'}/s" for k, v in roofline.items())
    )

    tokenizer = tiny_clip_tokenizer()
    cfg = clip_config(args.model_size, len(tokenizer))
    torch.manual_seed(0)
    base = CLIPModel(cfg).eval()
    gflop = image_tower_gflop(cfg)
    spec = ScorerSpec(kind="hps", preprocess=Preprocess(mode="pad", size=224))
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    paths = write_jpegs(tmp, args.images)
    prompts = [f"a photo number {k} of a red circle on a blue background" for k in range(args.prompts)]
    records = [(prompts[k], paths[k :: args.prompts]) for k in range(args.prompts)]

    scorers: dict[str, Scorer] = {}
    for p in precisions:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # emulated precisions warn; the table shows their speed
            try:
                scorers[p] = Scorer(copy.deepcopy(base), tokenizer, spec, device=device, precision=p)
            except Exception as exc:
                print(f"{p}: cannot run here ({str(exc).splitlines()[0]})")
    results: dict[str, np.ndarray] = {}
    if args.compile:
        scorers["auto+compile"] = Scorer(copy.deepcopy(base), tokenizer, spec, device=device, compile=True)
        t0 = time.perf_counter()
        scorers["auto+compile"].score_records(records, batch_size=args.batch_size, progress=False)
        print(
            f"torch.compile warm-up {time.perf_counter() - t0:.1f} s (excluded), compiled={scorers['auto+compile'].compiled}"
        )

    def run_scorer(name: str) -> None:
        scorer = scorers[name]
        scorer._text_cache.clear()  # every run encodes its prompts, as a fresh process would
        res = scorer.score_records(
            records, batch_size=args.batch_size, progress=False, workers=args.decode_workers
        )
        assert not res.failures, res.failures[:3]
        results[name] = np.concatenate(res.scores)

    pixels = spec.preprocess.batch(paths[: args.batch_size])

    def model_alone() -> None:
        scorer = scorers["auto"]
        for _ in range(0, args.images, args.batch_size):
            scorer.encode_pixels(pixels)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    configs: dict[str, Callable[[], None]] = {f"prefalign {p}": (lambda p=p: run_scorer(p)) for p in scorers}
    if "auto" in scorers:
        configs["model alone (auto)"] = model_alone
    naive_scores: list[float] = []
    if not args.no_naive:
        naive_model = copy.deepcopy(base).to(device)
        configs["naive loop (HPS v2 style)"] = lambda: naive_scores.__setitem__(
            slice(None), naive_reference(naive_model, tokenizer, spec.preprocess, records, device)
        )

    times: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(args.repeats):
        for name, fn in configs.items():  # interleaved, so load drifts hit every configuration alike
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()))

    def precision_of(name: str) -> str:
        if name.startswith("naive"):
            return "fp32"
        p = name.split()[-1].strip("()")
        return scorers[p].precision if p in scorers else p

    naive = statistics.median(times["naive loop (HPS v2 style)"]) if not args.no_naive else None
    print(
        f"\n{args.model_size} CLIP: image tower {gflop:.2f} GFLOP/image; {args.images} JPEG files (512 px), "
        f"{args.prompts} prompts, batch {args.batch_size}, {args.repeats} repeats, medians"
    )
    print("'of roofline' = achieved tower GFLOP/s / that precision's matmul roofline measured above;")
    print("ranking vs fp32: Spearman, and pairs (fp32 gap > 2% of the spread) that changed order\n")
    header = f"{'configuration':28s} {'prec':>5s} {'img/s':>8s} {'GFLOP/s':>8s} {'of roofline':>11s} {'vs naive':>9s}  ranking vs fp32"
    print(header)
    reference = results.get("fp32")
    for name, ts in times.items():
        t = statistics.median(ts)
        rate = args.images / t
        prec = precision_of(name)
        roof = roofline.get(prec)
        frac = f"{rate * gflop / roof:11.2f}" if roof else f"{'-':>11s}"
        speed = f"{naive / t:8.2f}x" if naive else f"{'-':>9s}"
        key = name.split()[-1] if name.startswith("prefalign") else None
        rank = ""
        if key in results and reference is not None:
            a = ranking_agreement(reference, results[key])
            rank = f"{a.spearman:.4f}, {a.pairs_flipped}/{a.pairs_checked} flipped"
        elif name.startswith("naive") and reference is not None and naive_scores:
            a = ranking_agreement(reference, naive_scores)
            rank = f"{a.spearman:.4f}, {a.pairs_flipped}/{a.pairs_checked} flipped"
        print(f"{name:28s} {prec:>5s} {rate:8.2f} {rate * gflop:8.1f} {frac} {speed}  {rank}")
    if "int8" in scorers and "bf16" in scorers:
        ratio = statistics.median(times["prefalign bf16"]) / statistics.median(times["prefalign int8"])
        print(f"\nint8 / bf16 throughput: {ratio:.2f}x")
    print(f"\ncommand: python benchmarks/bench_score.py {' '.join(sys.argv[1:])}")

    if args.memory:
        print("\npeak RSS scoring a dataset (fresh process each):")
        for n in (int(x) for x in args.memory.split(",")):
            print(f"  {n:>7d} images: {peak_rss_mb(n, args.model_size, args.batch_size):8.0f} MB")


if __name__ == "__main__":
    main()
