"""Evaluation: do metrics agree with people?

Metrics exist as functions and as torchmetrics classes (update / compute / reset) sharing one
implementation, so evaluations shard across processes and gather the 1-process result:

* ``preference_accuracy`` / ``PreferenceAccuracy``: top-1, pairwise (pooled and per prompt),
  HPS v2's inversion score and tie-aware accuracy, with bootstrap CIs (``bootstrap_ci``);
* ``agreement`` / ``Agreement``: scorers and participants against participants (Table 3);
* ``inception_score``, ``frechet_distance`` (torchmetrics IS and FID with an injectable feature
  extractor), ``mean_score`` / ``MeanScore``;
* ``paired_comparison`` / ``PairedComparison``: two generated sets, pair by pair;
* ``ab_study_result`` / ``ab_study_report``: an A/B user study's votes (share for B, Wilson
  interval, sign test, per prompt, inter-annotator agreement), ``wilson_interval``.

``run_preference``, ``run_agreement``, ``run_images`` and ``run_compare`` evaluate datasets with
scorers (``load_eval_scorer``, which adds ``random``); ``write_*_report`` write JSON, Markdown and
HTML reports with plots.
"""

from prefalign.evaluate.ab_study import ab_study_report, ab_study_result, wilson_interval
from prefalign.evaluate.agreement import (
    Agreement,
    AgreementResult,
    Vote,
    agreement,
    vote_credit,
    votes_from_dataset,
)
from prefalign.evaluate.bootstrap import bootstrap_ci
from prefalign.evaluate.compare import PairedComparison, PairedResult, pair_generated_sets, paired_comparison
from prefalign.evaluate.errors import EvaluationError
from prefalign.evaluate.image_metrics import (
    MeanScore,
    ScoreSummary,
    frechet_distance,
    inception_score,
    load_inception,
    mean_score,
    score_correlation,
)
from prefalign.evaluate.preference import (
    Estimate,
    PreferenceAccuracy,
    PreferenceResult,
    preference_accuracy,
    tie_aware_points,
    tune_tie_threshold,
)
from prefalign.evaluate.runs import (
    IMAGE_METRICS,
    AgreementRun,
    CompareRun,
    ImagesRun,
    PreferenceRun,
    run_agreement,
    run_compare,
    run_images,
    run_preference,
)
from prefalign.evaluate.scorers import RandomScorer, load_eval_scorer

# The report writers import matplotlib: loaded on first use, so evaluation alone (and every
# worker process of a sharded run) does not pay for it.
_REPORT_WRITERS = (
    "write_agreement_report",
    "write_compare_report",
    "write_images_report",
    "write_preference_report",
)


def __getattr__(name: str):
    if name in _REPORT_WRITERS:
        from prefalign.evaluate import summaries

        return getattr(summaries, name)
    raise AttributeError(f"module 'prefalign.evaluate' has no attribute {name!r}")


__all__ = [
    "IMAGE_METRICS",
    "Agreement",
    "AgreementResult",
    "AgreementRun",
    "CompareRun",
    "Estimate",
    "EvaluationError",
    "ImagesRun",
    "MeanScore",
    "PairedComparison",
    "PairedResult",
    "PreferenceAccuracy",
    "PreferenceResult",
    "PreferenceRun",
    "RandomScorer",
    "ScoreSummary",
    "Vote",
    "ab_study_report",
    "ab_study_result",
    "agreement",
    "bootstrap_ci",
    "frechet_distance",
    "inception_score",
    "load_eval_scorer",
    "load_inception",
    "mean_score",
    "pair_generated_sets",
    "paired_comparison",
    "preference_accuracy",
    "run_agreement",
    "run_compare",
    "run_images",
    "run_preference",
    "score_correlation",
    "tie_aware_points",
    "tune_tie_threshold",
    "vote_credit",
    "votes_from_dataset",
    "wilson_interval",
    "write_agreement_report",
    "write_compare_report",
    "write_images_report",
    "write_preference_report",
]
