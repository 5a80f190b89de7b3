"""One benchmark run: images (generated, resumable, or found), scores of every scorer, leaderboard."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prefalign.benchmark.images import (
    BenchmarkError,
    GenerationCounts,
    ImageTable,
    ModelSpec,
    find_images,
    generate_images,
    generated_table,
)
from prefalign.benchmark.leaderboard import Leaderboard, ScoreGrid, compute_leaderboard
from prefalign.benchmark.prompts import PromptSet

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkResult:
    """What ``run_benchmark`` made: the leaderboard, the files written, the generation counts."""

    leaderboard: Leaderboard
    paths: dict[str, Path] = field(default_factory=dict)
    generation: GenerationCounts | None = None


def run_benchmark(
    prompt_set: PromptSet,
    scorers: Sequence,
    out: str | Path,
    *,
    models: Sequence[ModelSpec] = (),
    seeds: Sequence[int] = (0,),
    images: str | Path | None = None,
    settings=None,
    device: str = "cpu",
    batch_size: int = 4,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    progress: bool | None = None,
) -> BenchmarkResult:
    """Generate (or find) images, score them with every scorer, write the leaderboard into ``out``.

    Args:
        prompt_set: the prompts (``load_prompt_set``).
        scorers: loaded scorers (anything with ``name`` and ``score_records``, e.g.
            ``load_eval_scorer``'s); the first ranks the models.
        out: the run directory: ``images/`` (when generating), ``scores.parquet``,
            ``leaderboard.{json,md,html}``, ``plots/``.
        models: models to generate with (``parse_model``); with ``images``, folder names to use
            (default: all folders).
        seeds: one image per prompt and seed.
        images: a folder of images generated elsewhere, one folder per model (``find_images``).
        settings: ``GenerationSettings`` for generating.
        device: where generation runs (scorers carry their own device).
        batch_size: images per scorer forward pass.
        n_bootstrap, level: the bootstrap intervals.
        progress: scorer progress bars (default: on a terminal).

    Under ``accelerate launch`` each process generates and scores a share; process 0 writes.

    Raises:
        BenchmarkError: no scorer, no model, duplicate model names, or images that cannot be paired.
    """
    from prefalign.evaluate.distributed import process_group
    from prefalign.evaluate.runs import unique_names

    out = Path(out)
    if not scorers:
        raise BenchmarkError("no scorers given (--scorers NAME ...)")
    counts = None
    if images is not None:
        table = find_images(images, prompt_set, seeds or None, [m.name for m in models] or None)
        model_info = [{"name": name, "images": str(Path(images) / name)} for name in table.paths]
    else:
        if not models:
            raise BenchmarkError("no models given (--models NAME=BASE ... or --images DIR)")
        if not seeds:
            raise BenchmarkError("no seeds given (--seeds 0-3)")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise BenchmarkError(f"two models share a name in {names}; name them with NAME=BASE")
        counts = generate_images(models, prompt_set, seeds, out, settings=settings, device=device)
        table = generated_table(models, prompt_set, seeds, out)
        model_info = [m.to_dict() for m in models]
    keys, notes = _common_keys(table)
    text_of = {p.index: p.text for p in prompt_set.prompts}
    scorer_names = unique_names(scorers)
    grids: dict[str, ScoreGrid] = {}
    for scorer, sname in zip(scorers, scorer_names):
        grids[sname] = ScoreGrid(keys, {})
        for model in table.paths:
            logger.info("scoring %d images of %s with %s", len(keys), model, sname)
            grids[sname].values[model] = _score(
                scorer, table.paths[model], keys, text_of, batch_size, progress
            )
    scorer_info = [{"name": n, "kind": getattr(s, "kind", None)} for s, n in zip(scorers, scorer_names)]
    seeds_used = sorted({s for _, s in keys})
    gen_settings = {}
    if settings is not None and images is None:
        from dataclasses import asdict

        gen_settings = {"generation": asdict(settings)}
    board = compute_leaderboard(
        prompt_set,
        seeds_used,
        model_info,
        scorer_info,
        grids,
        n_bootstrap=n_bootstrap,
        level=level,
        settings=gen_settings,
        notes=table.notes + notes,
    )
    result = BenchmarkResult(board, generation=counts)
    if process_group()[0] == 0:
        from prefalign.benchmark.report import write_leaderboard

        _write_scores(out / "scores.parquet", keys, grids, text_of)
        result.paths = write_leaderboard(board, out, images=table.paths, prompts=text_of)
        result.paths["scores"] = out / "scores.parquet"
    return result


def _common_keys(table: ImageTable) -> tuple[list[tuple[int, int]], list[str]]:
    """The (prompt, seed) keys every model has, sorted; a note per model that had more."""
    sets = [set(p) for p in table.paths.values()]
    common = set.intersection(*sets) if sets else set()
    if not common:
        raise BenchmarkError("the models share no (prompt, seed): nothing can be compared")
    notes = []
    for model, paths in table.paths.items():
        extra = len(paths) - len(common)
        if extra:
            notes.append(
                f"{model}: {extra} images left out (their prompt and seed are missing for another model)"
            )
    return sorted(common), notes


def _score(scorer, paths: dict, keys, text_of, batch_size: int, progress) -> np.ndarray:
    """Scores of one model's images in ``keys`` order (NaN where an image failed; logged)."""
    from prefalign.scoring.distributed import score_records_sharded

    by_prompt: dict[int, list[int]] = {}
    for i, (p, _) in enumerate(keys):
        by_prompt.setdefault(p, []).append(i)
    records = [(text_of[p], [paths[keys[i]] for i in idx]) for p, idx in by_prompt.items()]
    # Any ScorerLike shards across processes (the random baseline too: its scores depend on the
    # image, not on which process scores it).
    result = score_records_sharded(scorer, records, batch_size=batch_size, progress=progress)
    for failure in result.failures:
        logger.warning("%s: could not score %s", scorer.name, failure)
    values = np.full(len(keys), np.nan)
    for idx, scores in zip(by_prompt.values(), result.scores):
        values[idx] = scores
    return values


def _write_scores(path: Path, keys, grids: dict[str, ScoreGrid], text_of) -> None:
    """Every image's score: one row per scorer, model, prompt and seed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prefalign.files import write_atomic

    rows = {"scorer": [], "model": [], "prompt_index": [], "seed": [], "prompt": [], "score": []}
    for sname, grid in grids.items():
        for model, values in grid.values.items():
            for (p, s), v in zip(keys, values):
                rows["scorer"].append(sname)
                rows["model"].append(model)
                rows["prompt_index"].append(int(p))
                rows["seed"].append(int(s))
                rows["prompt"].append(text_of[p])
                rows["score"].append(float(v) if np.isfinite(v) else None)
    table = pa.table(rows)
    write_atomic(path, lambda fh: pq.write_table(table, fh))
