"""``prefalign benchmark``: rank text-to-image models by preference scorers on standard prompt sets.

* ``load_prompt_set``: PartiPrompts (shipped), Lee et al.'s compositional prompts, any file;
  ``--limit`` / ``--categories`` subsets that keep each prompt's index;
* ``generate_images`` (resumable) or ``find_images`` (images made elsewhere), then
  ``run_benchmark``: scores, ``compute_leaderboard`` (means with bootstrap intervals over
  prompts, paired win rates with a sign test, per-category means) and ``write_leaderboard``;
* ``compare_leaderboards``: two leaderboards, model by model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.benchmark.compare import compare_leaderboards, read_leaderboard
    from prefalign.benchmark.images import (
        BenchmarkError,
        ModelSpec,
        find_images,
        generate_images,
        parse_model,
    )
    from prefalign.benchmark.leaderboard import Leaderboard, compute_leaderboard
    from prefalign.benchmark.prompts import (
        BUILTIN_SETS,
        BenchmarkPrompt,
        PromptSet,
        PromptSetError,
        load_prompt_set,
    )
    from prefalign.benchmark.report import write_leaderboard
    from prefalign.benchmark.run import BenchmarkResult, run_benchmark

__all__ = [
    "BUILTIN_SETS",
    "BenchmarkError",
    "BenchmarkPrompt",
    "BenchmarkResult",
    "Leaderboard",
    "ModelSpec",
    "PromptSet",
    "PromptSetError",
    "compare_leaderboards",
    "compute_leaderboard",
    "find_images",
    "generate_images",
    "load_prompt_set",
    "parse_model",
    "read_leaderboard",
    "run_benchmark",
    "write_leaderboard",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
