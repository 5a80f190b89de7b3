"""The report figures, drawn with matplotlib's object API (Agg canvas, no pyplot global state).

Each function returns a ``matplotlib.figure.Figure``; ``report.write_report`` saves it as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

# One palette for every figure, so a scorer keeps its colour across plots of a report.
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
PREFERRED, NON_PREFERRED = "#55A868", "#C44E52"


def _figure(width: float = 6.4, height: float = 4.0) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def accuracy_bars(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    title: str,
    ylabel: str = "accuracy",
    baseline: float | None = None,
    baseline_label: str = "random baseline",
) -> Figure:
    """Bars with error bars from ``lows`` to ``highs`` (confidence intervals or ± std)."""
    fig, ax = _figure(max(4.0, 1.1 * len(labels) + 2.0))
    values = np.asarray(values, dtype=float)
    err = np.vstack([values - np.asarray(lows, float), np.asarray(highs, float) - values])
    x = np.arange(len(labels))
    colours = [COLOURS[i % len(COLOURS)] for i in range(len(labels))]
    ax.bar(x, values, yerr=np.nan_to_num(err), capsize=5, color=colours, edgecolor="black", linewidth=0.6)
    for xi, v in zip(x, values):
        ax.annotate(f"{v:.3f}", (xi, v), xytext=(8, 3), textcoords="offset points", fontsize=8)
    if baseline is not None:
        ax.axhline(
            baseline, color="black", linestyle="--", linewidth=1, label=f"{baseline_label} {baseline:.3f}"
        )
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(x, [_short(label) for label in labels], rotation=15 if len(labels) > 3 else 0)
    top = np.nanmax(np.concatenate([np.asarray(highs, float), values, [baseline or 0]]))
    ax.set_ylim(0, min(1.05, top * 1.15) if top <= 1 else top * 1.15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def score_scatter(
    x: np.ndarray, y: np.ndarray, *, xlabel: str, ylabel: str, title: str, pearson: float
) -> Figure:
    """Per-image scores of two scorers against each other, with the least-squares line (Fig. 6)."""
    fig, ax = _figure(5.2, 4.4)
    ax.scatter(x, y, s=12, alpha=0.6, color=COLOURS[0], edgecolors="none")
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(np.min(x), np.max(x), 2)
        ax.plot(xs, slope * xs + intercept, color=COLOURS[3], linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\nPearson r = {pearson:.3f}, n = {len(x)}")
    ax.grid(alpha=0.3)
    return fig


def score_histograms(preferred: np.ndarray, non_preferred: np.ndarray, *, scorer: str) -> Figure:
    """Overlaid histograms of the scores of preferred and non-preferred images."""
    fig, ax = _figure(5.6, 3.8)
    both = np.concatenate([preferred, non_preferred])
    bins = np.histogram_bin_edges(both[np.isfinite(both)], bins=min(30, max(5, len(both) // 4)))
    for values, colour, label in (
        (preferred, PREFERRED, "preferred"),
        (non_preferred, NON_PREFERRED, "non-preferred"),
    ):
        v = values[np.isfinite(values)]
        # Densities, not counts: a choice among n has one preferred image and n - 1 others.
        ax.hist(
            v,
            bins=bins,
            density=True,
            alpha=0.55,
            color=colour,
            label=f"{label} (mean {v.mean():.3f}, n={len(v)})",
        )
        ax.axvline(v.mean(), color=colour, linestyle="--", linewidth=1)
    ax.set_xlabel(f"score ({_short(scorer)})")
    ax.set_ylabel("density")
    ax.set_title(f"Scores of preferred vs non-preferred images: {_short(scorer)}")
    ax.legend(fontsize=8)
    return fig


def vote_histogram(shares_b: np.ndarray, *, label_a: str = "A", label_b: str = "B") -> Figure:
    """How the votes on each compared pair split: the share of votes for B, one count per pair (Fig. 8)."""
    fig, ax = _figure(5.6, 3.8)
    ax.hist(shares_b, bins=np.linspace(0, 1, 11), color=COLOURS[0], edgecolor="black", linewidth=0.6)
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    overall = float(np.mean(shares_b)) if len(shares_b) else float("nan")
    ax.set_xlabel(f"share of votes for {label_b} (0 = all for {label_a})")
    ax.set_ylabel("image pairs")
    ax.set_title(f"A/B study: votes per pair (mean share for {label_b} {overall:.2f})")
    return fig


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]
