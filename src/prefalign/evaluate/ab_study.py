"""The result of an A/B user study (HPS §5: people choose between the base and the adapted image).

Input: votes in the convention of :mod:`prefalign.evaluate.agreement` (what ``annotate export``
writes): one record per vote, ``images = [a, b]``, ``chosen`` 0 (A) or 1 (B), ``user``,
``meta["item"]`` shared by the votes on one pair, optionally ``meta["shown_order"]`` and
``meta["shown_position"]`` (which image was on the left, which position was clicked).

Reported, overall and per prompt:

* the share of votes for B with a 95% **Wilson score interval** (Wilson 1927; it stays inside
  [0, 1] and keeps its coverage for small counts, unlike the normal approximation);
* a two-sided **exact binomial (sign) test** of "share for B = 1/2" (scipy's ``binomtest``);
* inter-annotator agreement: on items with two or more votes, the raw pairwise agreement (the
  share of same-item vote couples that pick the same image), **Fleiss' kappa** (Fleiss 1971, in
  its form for a varying number of raters per item), and each participant's agreement with the
  others as mean ± std over participants (the HPS paper's Table 3 "human" row, from
  :func:`prefalign.evaluate.agreement.agreement`);
* position bias: the share of votes for the image shown on the left, when the votes record it.

Votes are counted as cast: a person who voted on ten pairs counts ten times. Ties (``ranks``
``[0, 0]``) are counted and left out of the shares and tests.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from prefalign.evaluate.errors import EvaluationError

# The 97.5% quantile of the standard normal: a two-sided 95% interval.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion; ``(nan, nan)`` when ``n == 0``.

    Example:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def sign_test_p(votes_b: int, n: int) -> float:
    """Two-sided exact binomial test of ``votes_b`` out of ``n`` against 1/2 (1.0 when n == 0)."""
    from scipy.stats import binomtest

    return float(binomtest(votes_b, n, 0.5).pvalue) if n else 1.0


@dataclass
class ShareOfB:
    """Votes for A and B, the share for B with its 95% Wilson interval, and the sign test."""

    votes: int
    votes_a: int
    votes_b: int
    share_b: float
    ci_low: float
    ci_high: float
    sign_test_p: float

    @classmethod
    def of(cls, votes_a: int, votes_b: int) -> ShareOfB:
        n = votes_a + votes_b
        low, high = wilson_interval(votes_b, n)
        return cls(n, votes_a, votes_b, votes_b / n if n else math.nan, low, high, sign_test_p(votes_b, n))


@dataclass
class AnnotatorAgreement:
    """Agreement among people on the items that two or more of them voted on."""

    items: int
    pairwise: float
    fleiss_kappa: float
    per_participant_mean: float
    per_participant_std: float
    per_participant: dict[str, float] = field(default_factory=dict)


@dataclass
class ABStudyResult:
    """Everything ``annotate results`` reports about one A/B study."""

    overall: ShareOfB
    per_prompt: dict[str, ShareOfB]
    shares_per_item: dict[str, float]
    agreement: AnnotatorAgreement | None
    participants: int
    ties: int
    left_share: float | None  # share of votes for the image shown on the left
    left_votes: int

    def to_dict(self) -> dict:
        return asdict(self)


def fleiss_kappa(counts: Sequence[tuple[int, int]]) -> float:
    """Fleiss' kappa for two categories, ``counts[i] = (votes for A, votes for B)`` on item i.

    Items with fewer than two votes are left out; each item's observed agreement is
    ``(sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`` so items may have different numbers of raters.
    NaN when no item has two votes or the chance agreement is 1 (every vote for one side).
    """
    rows = [(a, b) for a, b in counts if a + b >= 2]
    if not rows:
        return math.nan
    observed = sum((a * a + b * b - (a + b)) / ((a + b) * (a + b - 1)) for a, b in rows) / len(rows)
    total = sum(a + b for a, b in rows)
    p_a = sum(a for a, _ in rows) / total
    chance = p_a**2 + (1 - p_a) ** 2
    return math.nan if chance >= 1 else (observed - chance) / (1 - chance)


def ab_study_result(records: Sequence) -> ABStudyResult:
    """Tally an A/B study's votes (records as :mod:`prefalign.evaluate.agreement` reads them).

    Raises:
        EvaluationError: a record that is not one person's vote on a pair (names it), or no votes.
    """
    from prefalign.evaluate.agreement import Vote, agreement

    per_prompt: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_item: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    votes: list[Vote] = []
    ties = left = positioned = 0
    for index, rec in enumerate(records):
        where = f"vote {rec.id or index}"
        if len(rec.images) != 2:
            raise EvaluationError(f"{where}: an A/B vote needs exactly 2 images, found {len(rec.images)}")
        if rec.ranks is not None and len(rec.ranks) == 2 and rec.ranks[0] == rec.ranks[1]:
            ties += 1
            continue
        if rec.ranks is not None and len(rec.ranks) == 2:
            winner = int(rec.ranks[1] < rec.ranks[0])
        elif rec.chosen in (0, 1):
            winner = int(rec.chosen)
        else:
            raise EvaluationError(f"{where}: an A/B vote needs `chosen` (0 = A, 1 = B) or `ranks`")
        item = str(rec.meta.get("item") or "\0".join(rec.images))
        per_prompt[rec.prompt][winner] += 1
        per_item[item][winner] += 1
        votes.append(
            Vote(index, str(rec.user or f"anonymous-{index}"), item, rec.prompt, tuple(rec.images), winner)
        )
        shown = rec.meta.get("shown_order")
        if shown is not None and len(shown) == 2:
            positioned += 1
            left += int(shown[0] == winner)
    if not votes:
        raise EvaluationError(f"no A/B votes to count ({ties} ties)" if ties else "no A/B votes to count")
    overall = ShareOfB.of(sum(a for a, _ in per_prompt.values()), sum(b for _, b in per_prompt.values()))
    shared = {item: ab for item, ab in per_item.items() if sum(ab) >= 2}
    agreement_result = None
    if shared:
        couples = sum(a * (a - 1) / 2 + b * (b - 1) / 2 for a, b in shared.values())
        all_couples = sum((a + b) * (a + b - 1) / 2 for a, b in shared.values())
        human = agreement(votes, {}).human
        agreement_result = AnnotatorAgreement(
            items=len(shared),
            pairwise=couples / all_couples,
            fleiss_kappa=fleiss_kappa([(ab[0], ab[1]) for ab in shared.values()]),
            per_participant_mean=human.mean if human else math.nan,
            per_participant_std=human.std if human else math.nan,
            per_participant=dict(human.per_participant) if human else {},
        )
    return ABStudyResult(
        overall=overall,
        per_prompt={prompt: ShareOfB.of(a, b) for prompt, (a, b) in sorted(per_prompt.items())},
        shares_per_item={item: b / (a + b) for item, (a, b) in per_item.items()},
        agreement=agreement_result,
        participants=len({v.user for v in votes}),
        ties=ties,
        left_share=left / positioned if positioned else None,
        left_votes=positioned,
    )


def ab_study_report(
    result: ABStudyResult, out, *, title: str, label_a: str = "A", label_b: str = "B"
) -> dict:
    """Write the study's table, numbers and vote histogram as report.json/.md/.html (+ plots/)."""
    import numpy as np

    from prefalign.evaluate import plots
    from prefalign.evaluate.report import Section, fmt, write_report

    columns = [
        "prompt",
        "votes",
        f"for A ({label_a})",
        f"for B ({label_b})",
        "share for B",
        "95% CI",
        "sign test p",
    ]

    def row(name: str, s: ShareOfB) -> list[str]:
        return [
            name,
            str(s.votes),
            str(s.votes_a),
            str(s.votes_b),
            fmt(s.share_b),
            f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]",
            fmt(s.sign_test_p, 4),
        ]

    rows = [row("all prompts", result.overall)] + [
        row(p or "(no prompt)", s) for p, s in result.per_prompt.items()
    ]
    paragraphs = [
        f"A = `{label_a}`, B = `{label_b}`. {result.overall.votes} votes by {result.participants} "
        f"participant(s) on {len(result.shares_per_item)} pair(s); {result.ties} tie(s) left out.",
        "Interval: 95% Wilson score interval; test: two-sided exact binomial (sign) test of share = 0.5.",
    ]
    if result.left_share is not None:
        paragraphs.append(
            f"Position bias: {fmt(result.left_share)} of {result.left_votes} votes went to the image shown on the left."
        )
    agreement_rows = []
    if result.agreement is not None:
        a = result.agreement
        agreement_rows = [
            ["items voted on by 2+ people", str(a.items)],
            ["pairwise agreement", fmt(a.pairwise)],
            ["Fleiss' kappa", fmt(a.fleiss_kappa)],
            [
                "each participant vs the others (mean ± std)",
                f"{fmt(a.per_participant_mean)} ± {fmt(a.per_participant_std)}",
            ],
        ]
    histogram = plots.vote_histogram(
        np.array(list(result.shares_per_item.values())), label_a=label_a, label_b=label_b
    )
    sections = [
        Section("Share of votes for B", paragraphs, columns, rows),
        Section(
            "Inter-annotator agreement",
            [] if agreement_rows else ["No pair was voted on by two or more people."],
            ["measure", "value"] if agreement_rows else None,
            agreement_rows,
        ),
        Section("Votes per pair", figures=[("votes", histogram, "Share of votes for B on each image pair")]),
    ]
    data = {
        "label_a": label_a,
        "label_b": label_b,
        "interval": "wilson-95",
        "test": "exact-binomial-two-sided",
        **result.to_dict(),
    }
    return write_report(out, title, sections, data)
