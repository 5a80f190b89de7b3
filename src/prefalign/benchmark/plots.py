"""Leaderboard figures (matplotlib's object API, no pyplot state), in the palette of ``evaluate.plots``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from prefalign.evaluate.plots import COLOURS


def score_intervals(
    models: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    scorer: str,
    level: float,
) -> Figure:
    """One row per model (best on top): the mean score and its bootstrap interval."""
    fig = Figure(figsize=(6.4, 0.45 * len(models) + 1.4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(models))[::-1]
    means = np.asarray(means, float)
    err = np.vstack([means - np.asarray(lows, float), np.asarray(highs, float) - means])
    for i, (yi, m) in enumerate(zip(y, means)):
        ax.errorbar(
            m, yi, xerr=np.nan_to_num(err[:, i : i + 1]), fmt="o", capsize=4, color=COLOURS[i % len(COLOURS)]
        )
        ax.annotate(f"{m:.3f}", (m, yi), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    ax.set_yticks(y, list(models))
    ax.set_ylim(-0.7, len(models) - 0.3)
    ax.set_xlabel(f"mean {scorer} score ({level:.0%} bootstrap interval over prompts)")
    ax.set_title(f"{scorer}: mean score per model")
    ax.grid(axis="x", alpha=0.3)
    return fig


def category_heatmap(
    models: Sequence[str], categories: Sequence[str], values: np.ndarray, *, scorer: str
) -> Figure:
    """Models x categories, each cell the model's mean score on that category."""
    fig = Figure(
        figsize=(max(5.0, 0.8 * len(categories) + 2.5), 0.5 * len(models) + 2.2),
        dpi=110,
        layout="constrained",
    )
    ax = fig.add_subplot()
    im = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(categories)), list(categories), rotation=35, ha="right")
    ax.set_yticks(range(len(models)), list(models))
    finite = values[np.isfinite(values)]
    middle = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v < middle else "black",
                )
    fig.colorbar(im, ax=ax, label=f"mean {scorer}")
    ax.set_title(f"{scorer}: mean score per category")
    return fig


def win_matrix(models: Sequence[str], rates: np.ndarray, *, scorer: str) -> Figure:
    """Row model's win rate against column model (0.5 = even), paired by prompt and seed."""
    fig = Figure(figsize=(0.7 * len(models) + 3.0, 0.6 * len(models) + 2.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rates, vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(models)), list(models), rotation=35, ha="right")
    ax.set_yticks(range(len(models)), list(models))
    for i in range(len(models)):
        for j in range(len(models)):
            if i != j and np.isfinite(rates[i, j]):
                colour = "white" if abs(rates[i, j] - 0.5) > 0.3 else "black"  # readable on dark cells
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(im, ax=ax, label="win rate of row over column")
    ax.set_xlabel("against")
    ax.set_title(f"{scorer}: paired win rates")
    return fig
