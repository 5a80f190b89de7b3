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

Names load on first use (the report writers import matplotlib, the runs torch), so importing
this room is cheap and every worker process of a sharded run pays only for what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefalign._lazy import lazy_attributes

# name -> module that defines it
_LAZY = {
    "ab_study_report": "prefalign.evaluate.ab_study",
    "ab_study_result": "prefalign.evaluate.ab_study",
    "wilson_interval": "prefalign.evaluate.ab_study",
    "Agreement": "prefalign.evaluate.agreement",
    "AgreementResult": "prefalign.evaluate.agreement",
    "Vote": "prefalign.evaluate.agreement",
    "agreement": "prefalign.evaluate.agreement",
    "vote_credit": "prefalign.evaluate.agreement",
    "votes_from_dataset": "prefalign.evaluate.agreement",
    "bootstrap_ci": "prefalign.evaluate.bootstrap",
    "PairedComparison": "prefalign.evaluate.compare",
    "PairedResult": "prefalign.evaluate.compare",
    "pair_generated_sets": "prefalign.evaluate.compare",
    "paired_comparison": "prefalign.evaluate.compare",
    "EvaluationError": "prefalign.evaluate.errors",
    "MeanScore": "prefalign.evaluate.image_metrics",
    "ScoreSummary": "prefalign.evaluate.image_metrics",
    "frechet_distance": "prefalign.evaluate.image_metrics",
    "inception_score": "prefalign.evaluate.image_metrics",
    "load_inception": "prefalign.evaluate.image_metrics",
    "mean_score": "prefalign.evaluate.image_metrics",
    "score_correlation": "prefalign.evaluate.image_metrics",
    "Estimate": "prefalign.evaluate.preference",
    "PreferenceAccuracy": "prefalign.evaluate.preference",
    "PreferenceResult": "prefalign.evaluate.preference",
    "preference_accuracy": "prefalign.evaluate.preference",
    "tie_aware_points": "prefalign.evaluate.preference",
    "tune_tie_threshold": "prefalign.evaluate.preference",
    "IMAGE_METRICS": "prefalign.evaluate.runs.common",
    "AgreementRun": "prefalign.evaluate.runs.agreement",
    "CompareRun": "prefalign.evaluate.runs.compare",
    "ImagesRun": "prefalign.evaluate.runs.images",
    "PreferenceRun": "prefalign.evaluate.runs.preference",
    "run_agreement": "prefalign.evaluate.runs.agreement",
    "run_compare": "prefalign.evaluate.runs.compare",
    "run_images": "prefalign.evaluate.runs.images",
    "run_preference": "prefalign.evaluate.runs.preference",
    "RandomScorer": "prefalign.evaluate.scorers",
    "load_eval_scorer": "prefalign.evaluate.scorers",
    "write_agreement_report": "prefalign.evaluate.summaries",
    "write_compare_report": "prefalign.evaluate.summaries",
    "write_images_report": "prefalign.evaluate.summaries",
    "write_preference_report": "prefalign.evaluate.summaries",
}

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
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
    from prefalign.evaluate.compare import (
        PairedComparison,
        PairedResult,
        pair_generated_sets,
        paired_comparison,
    )
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
    from prefalign.evaluate.runs.agreement import AgreementRun, run_agreement
    from prefalign.evaluate.runs.common import IMAGE_METRICS
    from prefalign.evaluate.runs.compare import CompareRun, run_compare
    from prefalign.evaluate.runs.images import ImagesRun, run_images
    from prefalign.evaluate.runs.preference import PreferenceRun, run_preference
    from prefalign.evaluate.scorers import RandomScorer, load_eval_scorer
    from prefalign.evaluate.summaries import (
        write_agreement_report,
        write_compare_report,
        write_images_report,
        write_preference_report,
    )

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

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
