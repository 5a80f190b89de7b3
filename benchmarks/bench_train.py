"""Step time and peak memory of the HPS paper's partial unfreezing against full fine-tuning.

Same model (a random CLIP of the chosen size), same batch (records x images of random pixels and
random prompt tokens), same optimizer (AdamW with the trainer's parameter groups). Each variant
runs in its own process so that its peak resident memory (ru_maxrss) is its own.

    python benchmarks/bench_train.py                          # ViT-L/14, 5 records x 2 images
    python benchmarks/bench_train.py --size vit-b-16 --images 4 --steps 5

Prints one row per variant: trainable parameters, Adam state, median step time (forward,
backward, optimizer step), peak RSS, and the RSS growth from the built model to the peak
(gradients, optimizer state, activations kept for backward).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# name -> (vision width, layers, heads, patch, image size, text width, layers, heads, projection)
SIZES = {
    "vit-l-14": (1024, 24, 16, 14, 224, 768, 12, 12, 768),
    "vit-b-16": (768, 12, 12, 16, 224, 512, 12, 8, 512),
    "tiny": (64, 2, 2, 8, 32, 64, 2, 2, 32),
}
# variant -> (vision blocks, text blocks): the paper's partial unfreezing, and everything.
VARIANTS = {"partial (paper: 10 vision + 6 text blocks)": (10, 6), "full fine-tuning": (-1, -1)}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_model(size: str):
    from transformers import CLIPConfig, CLIPModel

    vw, vl, vh, patch, image, tw, tl, th, proj = SIZES[size]
    config = CLIPConfig(
        vision_config=dict(
            hidden_size=vw,
            num_hidden_layers=vl,
            num_attention_heads=vh,
            intermediate_size=4 * vw,
            patch_size=patch,
            image_size=image,
            projection_dim=proj,
        ),
        text_config=dict(
            hidden_size=tw,
            num_hidden_layers=tl,
            num_attention_heads=th,
            intermediate_size=4 * tw,
            projection_dim=proj,
        ),
        projection_dim=proj,
    )
    return CLIPModel(config), image, config.text_config.vocab_size


def run_variant(args: argparse.Namespace) -> dict:
    import torch

    from prefalign.train.freezing import count_parameters, parameter_groups, unfreeze_last_blocks
    from prefalign.train.losses import choice_loss
    from prefalign.train.preference_trainer import ChoiceModel

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    clip, image, vocab = build_model(args.size)
    vision_blocks, text_blocks = VARIANTS[args.variant]
    unfreeze_last_blocks(clip, vision_blocks, text_blocks)
    model = ChoiceModel(clip).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, 3.1e-3), lr=1.7e-5)
    trainable, total = count_parameters(model)

    b, n = args.records, args.images
    pixels = torch.randn(b, n, 3, image, image)
    mask = torch.ones(b, n, dtype=torch.bool)
    ids = torch.randint(0, vocab - 2, (b, 20))
    ids[:, -1] = vocab - 1  # end-of-text: the pooled position
    attention = torch.ones_like(ids)
    chosen = torch.zeros(b, dtype=torch.long)

    before = rss_mb()
    times = []
    for step in range(args.steps + 1):  # the first step allocates the optimizer state: not timed
        t0 = time.perf_counter()
        loss = choice_loss(model(pixels, mask, ids, attention), mask, chosen)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
    adam_values = sum(
        t.numel() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim()
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {
        "variant": args.variant,
        "trainable": trainable,
        "total": total,
        "adam_values": adam_values,
        "step_s": statistics.median(times),
        "steps": times,
        "peak_rss_mb": peak,
        "growth_mb": peak - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="vit-l-14", help="random CLIP size (default vit-l-14)"
    )
    parser.add_argument(
        "--records", type=int, default=5, help="records per batch (default 5, the paper's batch)"
    )
    parser.add_argument("--images", type=int, default=2, help="images per record (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return

    print(
        f"CLIP {args.size} (random weights), batch {args.records} records x {args.images} images, "
        f"{args.steps} timed steps after a warm-up, {args.threads} threads, fp32, CPU"
    )
    rows = []
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for variant in VARIANTS:
        command = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--size",
            args.size,
            "--records",
            str(args.records),
        ]
        command += ["--images", str(args.images), "--steps", str(args.steps), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            sys.exit(f"{variant} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{'variant':44} {'trainable':>16} {'Adam state':>11} {'step (median)':>14} {'peak RSS':>10} {'growth':>9}"
    )
    for r in rows:
        print(
            f"{r['variant']:44} {r['trainable'] / 1e6:7.1f}M of {r['total'] / 1e6:5.1f}M "
            f"{r['adam_values'] * 4 / 2**20:8.0f} MB {r['step_s']:12.2f} s {r['peak_rss_mb']:7.0f} MB "
            f"{r['growth_mb']:6.0f} MB"
        )
    partial, full = rows
    print(
        f"partial unfreezing: {full['step_s'] / partial['step_s']:.2f}x faster per step, "
        f"{full['peak_rss_mb'] - partial['peak_rss_mb']:.0f} MB less peak memory "
        f"(steps: {', '.join(f'{s:.2f}' for s in partial['steps'])} vs {', '.join(f'{s:.2f}' for s in full['steps'])} s)"
    )


if __name__ == "__main__":
    main()
