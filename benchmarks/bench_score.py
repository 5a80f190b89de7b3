"""Scoring throughput against the machine's matmul roofline and against a naive loop.

Scores N JPEG files (512 px) for a few prompts with a ViT-L/14-sized CLIP (random weights built
from the config: the speed does not depend on the values) and prints, measured side by side in
one run, each configuration repeated and reported as a median:

* the machine's fp32 matmul GFLOP/s (4096 x 4096 products): the roofline;
* prefalign's ``score_records`` end to end from files (eager, and with ``--compile``):
  images/s, the image tower's achieved GFLOP/s and its ratio to the roofline;
* a naive reference that loops one image at a time and re-encodes the prompt for each image
  (how the public HPS v2 ``score`` function works), and the speed-up over it.

Usage:  python benchmarks/bench_score.py [--images 24] [--repeats 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from PIL import Image


def vit_l14_config(vocab_size: int):
    from transformers import CLIPConfig

    text = dict(
        vocab_size=vocab_size,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    vision = dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        hidden_act="quick_gelu",
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)


def image_tower_gflop(cfg) -> float:
    """Multiply-adds x 2 of the ViT image tower for one image (projections, MLP, attention)."""
    v = cfg.vision_config
    tokens = (v.image_size // v.patch_size) ** 2 + 1
    w, mlp = v.hidden_size, v.intermediate_size
    per_layer = 4 * tokens * w * w + 2 * tokens * w * mlp + 2 * tokens * tokens * w
    patch = (tokens - 1) * 3 * v.patch_size**2 * w
    return 2 * (v.num_hidden_layers * per_layer + patch + w * cfg.projection_dim) / 1e9


def pruned_gflop(cfg) -> float:
    """What prefalign executes: the last block's query, output projection and MLP run for the
    class token only (see prefalign/scoring/vision.py)."""
    v = cfg.vision_config
    others = (v.image_size // v.patch_size) ** 2
    w, mlp = v.hidden_size, v.intermediate_size
    return image_tower_gflop(cfg) - 2 * others * (2 * w * w + 2 * w * mlp) / 1e9


def matmul_gflops(n: int = 2048, seconds: float = 1.5) -> float:
    """Median GFLOP/s of fp32 n x n products over about ``seconds``: the machine's roofline now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    rates: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(rates) < 3:
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def write_jpegs(directory: Path, n: int, size: int = 512) -> list[str]:
    rng = np.random.RandomState(0)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1)
        noise = rng.randint(0, 40, (size, size, 3))
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        path = directory / f"img{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def naive_reference(model, tokenizer, preprocess, records) -> None:
    """One image at a time, the prompt re-encoded for each (as HPS v2's ``score``)."""
    with torch.no_grad():
        for prompt, paths in records:
            for path in paths:
                pixels = preprocess(Image.open(path)).unsqueeze(0)
                text = tokenizer(
                    [prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
                )
                out = model(input_ids=text["input_ids"], pixel_values=pixels)
                img = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
                txt = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
                float(100 * (img * txt).sum())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=24, help="JPEG files to score per run (default 24)")
    parser.add_argument("--prompts", type=int, default=3, help="distinct prompts (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (default 3)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile configuration")
    args = parser.parse_args()

    from transformers import CLIPModel

    from prefalign.data.images import Preprocess
    from prefalign.scoring import Scorer, ScorerSpec
    from prefalign.testing import tiny_clip_tokenizer

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    tokenizer = tiny_clip_tokenizer()
    cfg = vit_l14_config(len(tokenizer))
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    gflop = image_tower_gflop(cfg)
    spec = ScorerSpec(kind="hps", preprocess=Preprocess(mode="pad", size=224))

    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    paths = write_jpegs(tmp, args.images)
    prompts = [f"a photo number {k} of a red circle on a blue background" for k in range(args.prompts)]
    records = [(prompts[k], paths[k :: args.prompts]) for k in range(args.prompts)]

    configs: dict[str, callable] = {}
    eager = Scorer(model, tokenizer, spec, device="cpu")

    def run_scorer(scorer):
        scorer._text_cache.clear()  # every run encodes its prompts, as a fresh process would
        result = scorer.score_records(records, batch_size=args.batch_size, progress=False)
        assert not result.failures

    configs["prefalign eager"] = lambda: run_scorer(eager)
    if not args.no_compile:
        compiled = Scorer(model, tokenizer, spec, device="cpu", compile=True)
        t0 = time.perf_counter()
        run_scorer(compiled)  # one-off compilation, excluded from the timings below
        print(
            f"torch.compile warm-up: {time.perf_counter() - t0:.1f} s (one-off), compiled={compiled.compiled}"
        )
        configs["prefalign --compile"] = lambda: run_scorer(compiled)
    configs["naive loop (HPS v2 style)"] = lambda: naive_reference(model, tokenizer, spec.preprocess, records)

    # Each run is paired with a roofline measured right before it, and configurations are
    # interleaved, so drifts in machine load hit every configuration alike.
    times: dict[str, list[float]] = {name: [] for name in configs}
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    peaks: list[float] = []
    for r in range(args.repeats):
        for name, fn in configs.items():
            peaks.append(matmul_gflops())
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            ratios[name].append(args.images * gflop / times[name][-1] / peaks[-1])
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()))

    peak = statistics.median(peaks)
    naive = statistics.median(times["naive loop (HPS v2 style)"])
    print(f"\nmatmul fp32 roofline: {peak:.0f} GFLOP/s (median of {len(peaks)})")
    print(
        f"image tower: {gflop:.1f} GFLOP/image, the count used below for every configuration "
        f"(prefalign executes {pruned_gflop(cfg):.1f}: its last block is pruned to the class token)"
    )
    print(
        f"{args.images} JPEG files (512 px), {args.prompts} prompts, batch {args.batch_size}, {args.repeats} repeats"
    )
    print("(medians; 'of roofline' = median over runs of achieved / matmul GFLOP/s measured just before)\n")
    print(f"{'configuration':28s} {'img/s':>7s} {'GFLOP/s':>8s} {'of roofline':>12s} {'vs naive':>9s}")
    for name, ts in times.items():
        t = statistics.median(ts)
        rate = args.images / t
        print(
            f"{name:28s} {rate:7.2f} {rate * gflop:8.0f} {statistics.median(ratios[name]):12.2f} {naive / t:8.2f}x"
        )


if __name__ == "__main__":
    main()
