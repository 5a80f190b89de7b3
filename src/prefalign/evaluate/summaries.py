"""The report of each evaluation: its tables, figures and words, written by ``report.write_report``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from prefalign.evaluate import plots
from prefalign.evaluate.image_metrics import score_correlation
from prefalign.evaluate.labels import human_ranks
from prefalign.evaluate.preference import Estimate
from prefalign.evaluate.report import Section, fmt, write_report
from prefalign.evaluate.runs import AgreementRun, CompareRun, ImagesRun, PreferenceRun

# Preference metrics in table order: (field, column heading, the chance level of a random scorer).
PREFERENCE_METRICS = (
    ("top1", "top-1", None),
    ("pairwise_pooled", "pairwise (pooled)", 0.5),
    ("pairwise_per_prompt", "pairwise (per prompt)", 0.5),
    ("inversion", "inversion score", None),
    ("tie_aware", "tie-aware", None),
)
MAX_HISTOGRAMS = 4


def _ci(e: Estimate | None) -> str:
    return "–" if e is None else f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "scorer"


def _flat(scores: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(s, dtype=np.float64) for s in scores]) if scores else np.zeros(0)


def hps_clip_pair(names: list[str], kinds: list[str]) -> tuple[str, str] | None:
    """The first HPS-kind and the first CLIP-kind scorer, for the paper's Fig. 6 scatter."""
    hps = next((n for n, k in zip(names, kinds) if k == "hps"), None)
    clip = next((n for n, k in zip(names, kinds) if k == "clip"), None)
    return (hps, clip) if hps and clip else None


# ---------------------------------------------------------------------------- preference
def write_preference_report(run: PreferenceRun, out: str | Path) -> dict[str, Path]:
    """Table 2 style: every scorer's accuracies with 95% CIs, bars, scatter and histograms."""
    present = [m for m in PREFERENCE_METRICS if any(getattr(r, m[0]) for r in run.results.values())]
    rows = []
    for name, kind in zip(run.scorers, run.kinds):
        r = run.results[name]
        rows.append([name, kind] + [_ci(getattr(r, f)) for f, _, _ in present] + [str(r.n_records)])
    first = next(iter(run.results.values()))
    paragraphs = [
        f"Dataset `{run.dataset}`: {first.n_records} records evaluated, {first.n_pairs} labelled image "
        f"pairs, {first.n_skipped} records skipped (no label or a failed image); records of the "
        "validation split only tune the tie threshold. "
        + (f"Evaluated: {run.selection['how']}. " if run.selection else "")
        + "Brackets hold 95% bootstrap confidence intervals over records (over prompts for the "
        "per-prompt column)."
    ]
    if first.random_baseline is not None:
        paragraphs.append(f"Random baseline of top-1 (the mean of 1/n): {first.random_baseline:.3f}.")
    for name, r in run.results.items():
        if r.tie_threshold is not None:
            paragraphs.append(f"Tie threshold of `{name}`: {r.tie_threshold:.4g} (score difference).")
        paragraphs += [f"Note ({name}): {n}" for n in r.notes]
    table = Section(
        "Preference accuracy",
        paragraphs,
        ["scorer", "kind"] + [h for _, h, _ in present] + ["records"],
        rows,
    )
    data = run.to_dict()
    if present:
        field_, heading, chance = present[0]
        ests = [getattr(run.results[n], field_) for n in run.scorers]
        keep = [(n, e) for n, e in zip(run.scorers, ests) if e is not None]
        baseline = first.random_baseline if field_ == "top1" else chance
        table.figures.append(
            (
                "accuracy",
                plots.accuracy_bars(
                    [n for n, _ in keep],
                    [e.value for _, e in keep],
                    [e.low for _, e in keep],
                    [e.high for _, e in keep],
                    title=f"Preference accuracy ({heading}) with 95% CIs",
                    ylabel=f"{heading} accuracy",
                    baseline=baseline,
                ),
                f"{heading} accuracy of each scorer; error bars are 95% bootstrap intervals",
            )
        )
    sections = [table]
    figures = Section("Scores")
    pair = hps_clip_pair(run.scorers, run.kinds)
    if pair:
        x, y = _flat(run.scores[pair[1]]), _flat(run.scores[pair[0]])
        corr = score_correlation(x, y)
        data["hps_clip_correlation"] = corr
        if corr:
            figures.figures.append(
                (
                    "hps_vs_clip",
                    plots.score_scatter(
                        x,
                        y,
                        xlabel=f"CLIP score ({pair[1]})",
                        ylabel=f"HPS ({pair[0]})",
                        title="HPS vs CLIP score per image",
                        pearson=corr["pearson"],
                    ),
                    f"HPS against CLIP score of every image (Pearson {corr['pearson']:.3f}, "
                    f"Spearman {corr['spearman']:.3f})",
                )
            )
    best = [_best_index(r) for r in run.records]
    if any(b is not None for b in best):
        shown = [(n, k) for n, k in zip(run.scorers, run.kinds) if k != "random"][:MAX_HISTOGRAMS]
        for name, _ in shown:
            pref, non = _split_by_preference(run.scores[name], best)
            if len(pref) and len(non):
                figures.figures.append(
                    (
                        f"scores_{_slug(name)}",
                        plots.score_histograms(pref, non, scorer=name),
                        f"Scores of the chosen images and of the others: {name}",
                    )
                )
    if figures.figures:
        sections.append(figures)
    return write_report(out, "Preference accuracy", sections, data)


def _best_index(record) -> int | None:
    ranks = human_ranks(record)
    if ranks is None or len(ranks) < 2 or np.sum(ranks == ranks.min()) != 1:
        return None
    return int(np.argmin(ranks))


def _split_by_preference(scores: list[np.ndarray], best: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    pref, non = [], []
    for s, b in zip(scores, best):
        if b is None:
            continue
        pref.append(s[b])
        non.extend(np.delete(s, b))
    pref_a, non_a = np.array(pref, dtype=np.float64), np.array(non, dtype=np.float64)
    return pref_a[np.isfinite(pref_a)], non_a[np.isfinite(non_a)]


# ---------------------------------------------------------------------------- agreement
def write_agreement_report(run: AgreementRun, out: str | Path) -> dict[str, Path]:
    """Table 3: each scorer's and each participant's agreement with the participants."""
    r = run.result
    rows, labels, means, stds = [], [], [], []
    entries = list(r.scorers.items()) + ([("human (each vs the others)", r.human)] if r.human else [])
    for name, stats in entries:
        if stats is None:
            rows.append([name, "–", "0"])
            continue
        rows.append([name, f"{stats.mean:.3f} ± {stats.std:.3f}", str(stats.n_participants)])
        labels.append(name)
        means.append(stats.mean)
        stds.append(stats.std)
    section = Section(
        "Agreement with participants",
        [
            f"Votes `{run.votes}`: {r.n_votes} votes ({r.n_ties} ties, skipped) by {r.n_participants} "
            f"participants on {r.n_items} pairs. Each value is computed per participant (the fraction "
            "of their votes it agrees with), then averaged: mean ± standard deviation over participants.",
        ],
        ["", "agreement (mean ± std)", "participants"],
        rows,
    )
    if labels:
        m, s = np.array(means), np.array(stds)
        section.figures.append(
            (
                "agreement",
                plots.accuracy_bars(
                    labels,
                    m,
                    m - s,
                    m + s,
                    title="Agreement with participants (± std)",
                    ylabel="agreement",
                    baseline=0.5,
                    baseline_label="chance",
                ),
                "Agreement with each participant, mean ± std over participants",
            )
        )
    per = Section(
        "Per participant", columns=["participant"] + list(r.scorers) + (["others"] if r.human else [])
    )
    users = sorted({u for st in [*r.scorers.values(), r.human] if st for u in st.per_participant})
    for u in users:
        cells = [fmt(st.per_participant.get(u)) if st else "–" for st in r.scorers.values()]
        if r.human:
            cells.append(fmt(r.human.per_participant.get(u)))
        per.rows.append([u, *cells])
    return write_report(out, "Agreement with people", [section, per], run.to_dict())


# ---------------------------------------------------------------------------- images
def write_images_report(run: ImagesRun, out: str | Path) -> dict[str, Path]:
    """Tables 1 and 4: IS, FID, mean scores, overall and for preferred vs non-preferred images."""
    columns = ["images"]
    for m in run.metrics:
        columns.append(
            {
                "is": "IS (mean ± std)",
                "fid": "FID",
                "clip": "CLIP score",
                "aesthetic": "aesthetic",
                "hps": "HPS",
            }[m]
        )
    rows = []
    for group, values in run.groups.items():
        row = [group]
        for m in run.metrics:
            v = values.get(m)
            if v is None:
                row.append("–")
            elif m == "is":
                row.append(f"{v['mean']:.3f} ± {v['std']:.3f}")
            elif m == "fid":
                row.append(f"{v['value']:.3f}")
            else:
                row.append(f"{v['mean']:.4f} ± {v['std']:.4f}")
        rows.append(row)
    paragraphs = [
        f"Images `{run.images}`" + (f", reference `{run.reference}`" if run.reference else "") + ". "
        "IS is the mean ± std over its splits; CLIP score is cos(image, prompt) (0.28 scale); HPS is "
        "100·cos with the HPS model; ± is the standard deviation over images."
    ]
    paragraphs += [f"Note: {n}" for n in run.notes]
    section = Section("Image metrics", paragraphs, columns, rows)
    if run.correlation:
        section.figures.append(
            (
                "hps_vs_clip",
                plots.score_scatter(
                    run.scores["clip"],
                    run.scores["hps"],
                    xlabel="CLIP score",
                    ylabel="HPS",
                    title="HPS vs CLIP score per image",
                    pearson=run.correlation["pearson"],
                ),
                f"HPS against CLIP score (Pearson {run.correlation['pearson']:.3f})",
            )
        )
    if np.any(run.preferred == 1):
        for m, values in run.scores.items():
            pref, non = values[run.preferred == 1], values[run.preferred == 0]
            pref, non = pref[np.isfinite(pref)], non[np.isfinite(non)]
            if len(pref) and len(non):
                section.figures.append(
                    (
                        f"scores_{m}",
                        plots.score_histograms(pref, non, scorer=m),
                        f"{m}: preferred vs non-preferred",
                    )
                )
    return write_report(out, "Image metrics", [section], run.to_dict())


# ---------------------------------------------------------------------------- compare
def write_compare_report(run: CompareRun, out: str | Path) -> dict[str, Path]:
    """Per scorer: means of A and B, B's paired win rate with its CI, the sign test; the A/B study."""
    rows = []
    labels, rates, lows, highs = [], [], [], []
    for name, r in run.results.items():
        if r is None:
            rows.append([name] + ["–"] * 6)
            continue
        low, high = run.win_rate_ci[name]
        rows.append(
            [
                name,
                f"{r.mean_a:.4f}",
                f"{r.mean_b:.4f}",
                f"{r.mean_difference:+.4f}",
                f"{r.win_rate_b:.3f} [{low:.3f}, {high:.3f}]",
                f"{r.wins_b} / {r.wins_a} / {r.ties}",
                f"{r.sign_test_p:.3g}",
            ]
        )
        labels.append(name)
        rates.append(r.win_rate_b)
        lows.append(low)
        highs.append(high)
    section = Section(
        "B against A",
        [
            f"A = `{run.a}`, B = `{run.b}`: {run.n_pairs} image pairs of the same prompt and seed. "
            "Win rate: the share of pairs in which B scores higher (ties count half), with a 95% "
            "bootstrap interval; p: two-sided sign test of B's wins against A's (ties left out)."
        ],
        ["scorer", "mean A", "mean B", "B − A", "B win rate", "wins B / A / ties", "sign test p"],
        rows,
    )
    if labels:
        section.figures.append(
            (
                "win_rate",
                plots.accuracy_bars(
                    labels,
                    rates,
                    lows,
                    highs,
                    title="Paired win rate of B over A (95% CI)",
                    ylabel="B win rate",
                    baseline=0.5,
                    baseline_label="no difference",
                ),
                "Share of image pairs in which each scorer prefers B",
            )
        )
    sections = [section]
    if run.votes:
        v = run.votes
        study = Section(
            "A/B study",
            [
                f"{v['votes_b']} votes for B, {v['votes_a']} for A, {v['ties']} ties on {v['items']} pairs "
                f"(B's share of decided votes {fmt(v['share_b'])}; {v['unmatched']} votes not on an A/B pair)."
            ],
        )
        study.figures.append(
            ("votes", plots.vote_histogram(run.vote_shares_b), "Share of votes for B on each image pair")
        )
        sections.append(study)
    return write_report(out, "Comparison of two generated sets", sections, run.to_dict())
