"""``prefalign benchmark``: rank text-to-image models by preference scorers on standard prompt sets.

* ``load_prompt_set``: PartiPrompts (shipped), Lee et al.'s compositional prompts, any file;
  ``--limit`` / ``--categories`` subsets that keep each prompt's index;
* ``generate_images`` (resumable) or ``find_images`` (images made elsewhere), then
  ``run_benchmark``: scores, ``compute_leaderboard`` (means with bootstrap intervals over
  prompts, paired win rates with a sign test, per-category means) and ``write_leaderboard``;
* ``compare_leaderboards``: two leaderboards, model by model.
"""

from __future__ import annotations

from prefalign._lazy import lazy_attributes

_LAZY = {
    "BUILTIN_SETS": "prefalign.benchmark.prompts",
    "BenchmarkPrompt": "prefalign.benchmark.prompts",
    "PromptSet": "prefalign.benchmark.prompts",
    "PromptSetError": "prefalign.benchmark.prompts",
    "load_prompt_set": "prefalign.benchmark.prompts",
    "BenchmarkError": "prefalign.benchmark.images",
    "ModelSpec": "prefalign.benchmark.images",
    "parse_model": "prefalign.benchmark.images",
    "generate_images": "prefalign.benchmark.images",
    "find_images": "prefalign.benchmark.images",
    "Leaderboard": "prefalign.benchmark.leaderboard",
    "compute_leaderboard": "prefalign.benchmark.leaderboard",
    "write_leaderboard": "prefalign.benchmark.report",
    "BenchmarkResult": "prefalign.benchmark.run",
    "run_benchmark": "prefalign.benchmark.run",
    "compare_leaderboards": "prefalign.benchmark.compare",
    "read_leaderboard": "prefalign.benchmark.compare",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
