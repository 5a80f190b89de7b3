"""The embedded default: the whole toolkit end to end, offline, on tiny models it builds itself.

Each step appends a section to ``report.md`` in the output directory; later parts of the
toolkit (training, evaluation, adaptation) add their steps to ``STEPS``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DemoContext:
    """What the steps share: the output directory, what earlier steps made, the report."""

    out: Path
    seed: int = 0
    artifacts: dict[str, Path] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)

    def add(self, title: str, body: str) -> None:
        self.sections.append(f"## {title}\n\n{body.strip()}\n")
        print(f"[demo] {title}")


def step_dataset(ctx: DemoContext) -> None:
    """A synthetic choice dataset: prompts name a colour and shape only the chosen image shows."""
    from prefalign.data import load_dataset
    from prefalign.testing import make_choice_dataset

    path = make_choice_dataset(ctx.out / "data", 24, n_images=(2, 3, 4), size=64, seed=ctx.seed)
    ds = load_dataset(path)
    ctx.artifacts["data"] = path
    n_images = sum(len(r.images) for r in ds)
    ctx.add(
        "Synthetic choice data",
        f"{len(ds)} choices over {n_images} images in `{path.name}/` (2 to 4 images per prompt), "
        f'e.g. "{ds[0].prompt}".',
    )


def step_scorer(ctx: DemoContext) -> None:
    """A tiny random CLIP saved in the prefalign model format and scored as HPS = 100·cos."""
    from prefalign.scoring import convert_checkpoint
    from prefalign.testing import save_tiny_clip

    hf_dir = save_tiny_clip(ctx.out / "models" / ".tiny-clip-hf", seed=ctx.seed, image_size=64, patch_size=16)
    model_dir = convert_checkpoint(
        "hf-clip", hf_dir, ctx.out / "models" / "tiny-hps", kind="hps", overwrite=True
    )
    shutil.rmtree(hf_dir, ignore_errors=True)
    ctx.artifacts["scorer"] = model_dir
    ctx.add("Tiny scorer", f"A random tiny CLIP (64 px, 2 layers) in `models/{model_dir.name}/`, kind `hps`.")


def step_score(ctx: DemoContext) -> None:
    """Score every image and measure top-1 preference accuracy against the random baseline."""
    from prefalign.cli.common import write_table
    from prefalign.data import load_dataset
    from prefalign.scoring import load_scorer

    ds = load_dataset(ctx.artifacts["data"])
    scorer = load_scorer(ctx.artifacts["scorer"], device="cpu")
    t0 = time.perf_counter()
    result = scorer.score_records(
        [(r.prompt, [ds.image_path(i) for i in r.images]) for r in ds], progress=False
    )
    seconds = time.perf_counter() - t0
    rows = [
        {"id": r.id, "index": i, "image": img, "prompt": r.prompt, "score": float(s)}
        for r, scores in zip(ds, result.scores)
        for i, (img, s) in enumerate(zip(r.images, scores))
    ]
    write_table(rows, ctx.out / "scores.parquet", ("id", "index", "image", "prompt", "score"))
    hits = [int(np.nanargmax(s) == r.chosen) for r, s in zip(ds, result.scores)]
    accuracy = float(np.mean(hits))
    baseline = float(np.mean([1 / len(r.images) for r in ds]))
    n = sum(len(s) for s in result.scores)
    ctx.add(
        "Scores",
        f"Scored {n} images in {seconds:.2f} s ({len(result.failures)} failures) into `scores.parquet`.\n\n"
        "| scorer | top-1 accuracy | random baseline |\n|---|---|---|\n"
        f"| tiny untrained HPS | {accuracy:.3f} | {baseline:.3f} |\n\n"
        "An untrained model sits near the random baseline; training a preference model "
        "(`prefalign train scorer`) is what moves it.",
    )


# Prompts of the adaptation demo: words the tiny tokenizer knows.
DEMO_PROMPTS = (
    "a red circle",
    "a blue square",
    "a green triangle",
    "a yellow cat",
    "a white dog",
    "a black circle",
)


def step_adapt(ctx: DemoContext) -> None:
    """The HPS alignment loop on a tiny Stable Diffusion: generate a pool, select by α, train the
    LoRA with the identifier, then generate base vs adapted on the same seeds (``step_compare``
    compares them)."""
    import torch

    from prefalign.adapt.config import LoraTrainingConfig
    from prefalign.adapt.generate import GenerationSettings, generate
    from prefalign.adapt.identifier import DEFAULT_IDENTIFIER
    from prefalign.adapt.lora import train_lora
    from prefalign.adapt.selection import scorer_score_fn, select_training_set
    from prefalign.data import load_dataset
    from prefalign.scoring import load_scorer
    from prefalign.testing.diffusion import save_tiny_sd

    # The tiny UNet's kernels are too small to split across threads: on a busy 2-core machine
    # two threads wait for each other and run tens of times slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        base = save_tiny_sd(ctx.out / "models" / "tiny-sd", seed=ctx.seed)
        fast = GenerationSettings(steps=10)
        pool = generate(base, DEMO_PROMPTS, range(4), ctx.out / "adapt" / "pool", settings=fast).out
        scorer = load_scorer(ctx.artifacts.get("trained_scorer", ctx.artifacts["scorer"]), device="cpu")
        alpha = 1.0  # a random tiny scorer spreads HPS by a point or two: the paper's α = 2 rarely fires
        report = select_training_set(
            load_dataset(pool),
            scorer_score_fn(scorer, progress=False),
            ctx.out / "adapt" / "selected",
            alpha=alpha,
        )
        config = LoraTrainingConfig(
            data=str(report.out),
            base=str(base),
            output_dir=str(ctx.out / "adapt" / "lora"),
            max_steps=20,
            per_device_train_batch_size=4,
            resolution=32,
            rank=4,
            learning_rate=1e-3,
            save_steps=0,
            logging_steps=5,
            cpu=True,
            seed=ctx.seed,
        )
        lora = train_lora(config)
        seeds = [100, 101]
        runs = {
            "base": generate(base, DEMO_PROMPTS, seeds, ctx.out / "adapt" / "gen-base", settings=fast),
            "adapted": generate(
                base, DEMO_PROMPTS, seeds, ctx.out / "adapt" / "gen-lora", lora=lora, settings=fast
            ),
        }
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    ctx.artifacts.update(sd=base, lora=lora, gen_base=runs["base"].out, gen_adapted=runs["adapted"].out)
    log = [json.loads(line) for line in (lora / "training_log.jsonl").read_text().splitlines()]
    ctx.add(
        "Aligning a tiny Stable Diffusion",
        f"A random tiny Stable Diffusion (32 px) drew {len(DEMO_PROMPTS)} prompts x 4 seeds into `adapt/pool/`. "
        f"`adapt select` (α = {alpha}) kept {report.preferred} preferred and {report.non_preferred} non-preferred "
        f'images (captions of the latter start with "{DEFAULT_IDENTIFIER}"), in `adapt/selected/`. '
        f"A rank-4 LoRA trained {config.max_steps} steps (loss {log[0]['loss']:.4f} at step {log[0]['step']}, "
        f"{log[-1]['loss']:.4f} at step {log[-1]['step']}) into `adapt/lora/`. "
        f"Base and adapted models then drew the same prompts and seeds (negative prompt "
        f"`{runs['adapted'].negative_prompt}` for the adapted one) into `adapt/gen-base/` and `adapt/gen-lora/` "
        f"({seconds:.1f} s in all); `eval compare` below pairs them by prompt and seed.",
    )


def step_train(ctx: DemoContext) -> None:
    """Train the tiny scorer into a preference model and measure it on the same held-out choices."""
    from prefalign.testing import make_choice_dataset
    from prefalign.train import PreferenceConfig, PreferenceTrainer

    n_train = 160
    train_data = make_choice_dataset(
        ctx.out / "train-data", n_train, n_images=(2, 3, 4), size=64, seed=ctx.seed + 1
    )
    config = PreferenceConfig(
        data=str(train_data),
        eval_data=str(ctx.artifacts["data"]),  # the choices scored above, never trained on
        base=str(ctx.artifacts["scorer"]),
        output_dir=str(ctx.out / "models" / "tiny-hps-trained"),
        # Tiny-model settings: the paper's lr (1.7e-5, for ViT-L/14) would need thousands of steps here.
        vision_blocks=1,
        text_blocks=1,
        learning_rate=1e-3,
        weight_decay=0.0,
        per_device_train_batch_size=8,
        max_steps=150,
        eval_steps=0,
        save_steps=0,
        seed=ctx.seed,
        overwrite=True,
        progress=False,
    )
    t0 = time.perf_counter()
    result = PreferenceTrainer(config).train()
    seconds = time.perf_counter() - t0
    ctx.artifacts["trained_scorer"] = result.model_dir
    before, after = result.eval_before or {}, result.eval_after or {}
    ctx.add(
        "Training a preference model",
        f"`prefalign train scorer` fine-tuned the tiny scorer on {n_train} choices of a second synthetic "
        f"set ({result.state.step} steps of 8, last block of each tower, {seconds:.1f} s) into "
        f"`models/{result.model_dir.name}/`.\n\n"
        "| held-out choices | top-1 accuracy | random baseline |\n|---|---|---|\n"
        f"| before training | {before.get('eval_accuracy', float('nan')):.3f} | {before.get('eval_chance', float('nan')):.3f} |\n"
        f"| after training | {after.get('eval_accuracy', float('nan')):.3f} | {after.get('eval_chance', float('nan')):.3f} |\n\n"
        "The training log (loss, accuracy, learning rate per step) is "
        f"`models/{result.model_dir.name}/training_log.jsonl`.",
    )


def step_evaluate(ctx: DemoContext) -> None:
    """Table 2 of the HPS paper on the synthetic data: random vs the tiny model as CLIP score and as HPS."""
    from prefalign.data import load_dataset
    from prefalign.evaluate import load_eval_scorer, run_preference, write_preference_report

    model = ctx.artifacts["scorer"]
    scorers = [
        load_eval_scorer("random"),
        load_eval_scorer(f"clip:{model}", device="cpu"),
        load_eval_scorer(str(model), device="cpu"),
    ]
    for scorer, name in zip(scorers[1:], (f"clip:{model.name}", model.name)):
        scorer.name = name  # short names for the tables
    run = run_preference(
        load_dataset(ctx.artifacts["data"]), scorers, n_bootstrap=200, batch_size=8, progress=False
    )
    paths = write_preference_report(run, ctx.out / "eval-preference")
    ctx.artifacts["eval_report"] = paths["html"]
    rows = "".join(
        f"| {name} | {r.top1.value:.3f} [{r.top1.low:.3f}, {r.top1.high:.3f}] | "
        f"{r.pairwise_pooled.value:.3f} |\n"
        for name, r in run.results.items()
    )
    baseline = next(iter(run.results.values())).random_baseline
    ctx.add(
        "Do metrics agree with people? (Table 2 style)",
        "`prefalign eval preference` with the seeded random scorer and the tiny model scored as CLIP "
        "score (`clip:`) and as HPS (100·cos). Top-1 accuracy with its 95% bootstrap interval:\n\n"
        "| scorer | top-1 [95% CI] | pairwise |\n|---|---|---|\n"
        f"{rows}\nRandom baseline (the mean of 1/n): {baseline:.3f}. CLIP score and HPS of one model "
        "rank images identically (HPS is 100 x the cosine), so their accuracies match; an untrained "
        f"model's intervals straddle the baseline. Full report: `eval-preference/{paths['html'].name}`.",
    )


def step_compare(ctx: DemoContext) -> None:
    """``eval compare``: the adapted model's images against the base's, pair by pair (prompt, seed)."""
    from prefalign.data import load_dataset
    from prefalign.evaluate import load_eval_scorer, run_compare, write_compare_report

    model = ctx.artifacts.get("trained_scorer", ctx.artifacts["scorer"])
    scorer = load_eval_scorer(str(model), device="cpu")
    scorer.name = model.name
    run = run_compare(
        load_dataset(ctx.artifacts["gen_base"]),
        load_dataset(ctx.artifacts["gen_adapted"]),
        [scorer],
        n_bootstrap=200,
        progress=False,
    )
    paths = write_compare_report(run, ctx.out / "eval-compare")
    r = run.results[scorer.name]
    low, high = run.win_rate_ci[scorer.name]
    ctx.add(
        "Base against adapted (`eval compare`)",
        f"A = base, B = base + LoRA with the negative prompt: {run.n_pairs} image pairs of the same prompt "
        "and seed, scored by the demo's preference model (the trained tiny HPS model).\n\n"
        "| scorer | mean HPS A | mean HPS B | B − A | B win rate [95% CI] | sign test p |\n"
        "|---|---|---|---|---|---|\n"
        f"| {scorer.name} | {r.mean_a:.3f} | {r.mean_b:.3f} | {r.mean_difference:+.3f} | "
        f"{r.win_rate_b:.3f} [{low:.3f}, {high:.3f}] | {r.sign_test_p:.3g} |\n\n"
        "Random tiny models make these numbers meaningless; with real weights this is the paper's "
        f"comparison. Full report: `eval-compare/{paths['html'].name}`.",
    )


def step_dpo(ctx: DemoContext) -> None:
    """Diffusion-DPO on the demo's choices: pairs (the chosen image against each other one), a short
    ``adapt train-dpo`` run on the tiny Stable Diffusion, generation with the DPO model on the seeds
    of ``step_adapt``'s base images, and ``eval compare`` base vs DPO."""
    import torch

    from prefalign.adapt.dpo import PAPER_BETA, DPOConfig, train_dpo
    from prefalign.adapt.generate import GenerationSettings, generate
    from prefalign.data import load_dataset
    from prefalign.evaluate import load_eval_scorer, run_compare, write_compare_report

    base_run = load_dataset(ctx.artifacts["gen_base"])
    seeds = sorted({int(r.meta["seed"]) for r in base_run})
    config = DPOConfig(
        data=str(ctx.artifacts["data"]),
        base=str(ctx.artifacts["sd"]),
        output_dir=str(ctx.out / "adapt" / "dpo"),
        max_steps=10,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        resolution=32,
        rank=4,
        learning_rate=1e-3,
        save_steps=0,
        logging_steps=1,
        cpu=True,
        seed=ctx.seed,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny UNet runs fastest on one thread (see step_adapt)
    try:
        t0 = time.perf_counter()
        dpo = train_dpo(config)
        gen = generate(
            ctx.artifacts["sd"],
            DEMO_PROMPTS,
            seeds,
            ctx.out / "adapt" / "gen-dpo",
            lora=dpo,
            settings=GenerationSettings(steps=10),
        )
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    ctx.artifacts.update(dpo=dpo, gen_dpo=gen.out)
    info = json.loads((dpo / "prefalign_adapter.json").read_text())
    log = [json.loads(line) for line in (dpo / "training_log.jsonl").read_text().splitlines()]
    model = ctx.artifacts.get("trained_scorer", ctx.artifacts["scorer"])
    scorer = load_eval_scorer(str(model), device="cpu")
    scorer.name = model.name
    run = run_compare(base_run, load_dataset(gen.out), [scorer], n_bootstrap=200, progress=False)
    paths = write_compare_report(run, ctx.out / "eval-compare-dpo")
    r = run.results[scorer.name]
    low, high = run.win_rate_ci[scorer.name]
    accuracy = sum(x["implicit_accuracy"] for x in log[-5:]) / len(log[-5:])
    ctx.add(
        "Diffusion-DPO on the choices (`adapt train-dpo`, `eval compare`)",
        f"The {info['pairs']} preference pairs of the synthetic choices (the chosen image against each other one) "
        f"trained a rank-4 LoRA with the Diffusion-DPO loss for {config.max_steps} steps "
        f"(β = {PAPER_BETA['sd1']:g}, the paper's for SD 1.5; reference = the base with the adapter disabled) "
        f"into `adapt/dpo/`: loss {log[0]['loss']:.4f} at step 1 (log 2 = 0.6931: the model starts as its "
        f"reference), {log[-1]['loss']:.4f} at step {log[-1]['step']}; implicit accuracy "
        f"{log[0]['implicit_accuracy']:.2f} at step 1, {accuracy:.2f} over the last 5 steps. The DPO model drew "
        f"the base's prompts and seeds into `adapt/gen-dpo/` ({seconds:.1f} s with training).\n\n"
        "| scorer | mean HPS base | mean HPS DPO | DPO − base | DPO win rate [95% CI] | sign test p |\n"
        "|---|---|---|---|---|---|\n"
        f"| {scorer.name} | {r.mean_a:.3f} | {r.mean_b:.3f} | {r.mean_difference:+.3f} | "
        f"{r.win_rate_b:.3f} [{low:.3f}, {high:.3f}] | {r.sign_test_p:.3g} |\n\n"
        f"{run.n_pairs} image pairs. Ten steps on a random tiny model prove only that the loop runs; "
        "that DPO learns is tested on a tiny model with a learnable property (tests/adapt/test_dpo_learns.py). "
        f"Full report: `eval-compare-dpo/{paths['html'].name}`.",
    )


def step_benchmark(ctx: DemoContext) -> None:
    """``benchmark run``: base and adapted models on a prompt set with categories, a leaderboard."""
    import torch

    from prefalign.adapt.generate import GenerationSettings
    from prefalign.benchmark import load_prompt_set, run_benchmark
    from prefalign.benchmark.images import ModelSpec
    from prefalign.evaluate import load_eval_scorer

    prompts = ctx.out / "benchmark-prompts.tsv"
    rows = [f"{p}\t{'animals' if p.endswith(('cat', 'dog')) else 'shapes'}" for p in DEMO_PROMPTS]
    prompts.write_text("prompt\tcategory\n" + "\n".join(rows) + "\n", encoding="utf-8")
    model = ctx.artifacts.get("trained_scorer", ctx.artifacts["scorer"])
    scorer = load_eval_scorer(str(model), device="cpu")
    scorer.name = model.name
    models = [
        ModelSpec("base", str(ctx.artifacts["sd"])),
        ModelSpec("adapted", str(ctx.artifacts["sd"]), str(ctx.artifacts["lora"])),
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny UNet runs fastest on one thread (see step_adapt)
    try:
        result = run_benchmark(
            load_prompt_set(prompts),
            [scorer, load_eval_scorer("random")],
            ctx.out / "benchmark",
            models=models,
            seeds=range(2),
            settings=GenerationSettings(steps=10),
            n_bootstrap=200,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    board = result.leaderboard
    lines = [
        "| rank | model | mean HPS [95% CI] | win rate vs the other | sign test p |",
        "|---|---|---|---|---|",
    ]
    for i, m in enumerate(board.ranking, 1):
        r = board.results[m][scorer.name]
        other = next(o for o in board.ranking if o != m)
        w = board.win_rates[scorer.name][m][other]
        lines.append(
            f"| {i} | {m} | {r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {w['win_rate']:.3f} | "
            f"{w['sign_test_p']:.3g} |"
        )
    ctx.add(
        "Leaderboard (`benchmark run`)",
        f"`prefalign benchmark run` drew {len(DEMO_PROMPTS)} prompts (two categories) x 2 seeds from the base "
        "and the adapted model into `benchmark/images/`, scored them with the trained tiny HPS model and the random "
        "baseline, and wrote `benchmark/leaderboard.html` (plots, category heat map, win-rate matrix, image grid).\n\n"
        + "\n".join(lines)
        + "\n\nRe-running the same command reuses every image; `benchmark compare OLD NEW` diffs two leaderboards.",
    )


STEPS: list[Callable[[DemoContext], None]] = [
    step_dataset,
    step_scorer,
    step_score,
    step_evaluate,
    step_train,
    step_adapt,
    step_compare,
    step_dpo,
    step_benchmark,
]


def run_demo(out: str | Path, *, seed: int = 0) -> Path:
    """Run every demo step into ``out`` and write ``out/report.md``; returns the report path."""
    ctx = DemoContext(Path(out), seed=seed)
    ctx.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for step in STEPS:
        step(ctx)
    report = ctx.out / "report.md"
    report.write_text(
        "# prefalign demo\n\nEverything below ran offline on tiny models built in code "
        f"({time.perf_counter() - t0:.1f} s).\n\n" + "\n".join(ctx.sections),
        encoding="utf-8",
    )
    return report
