"""Which records an evaluation measures: one split, stated, never a silent mix.

Rules (ours; the papers evaluate on their test splits):

* ``split=None`` (the default): the ``test`` split when the data have one; else, when the data
  hold a single split (records without a split count as one), that split; else refuse and
  ask for ``--split NAME`` or ``--split all``. Evaluating a mix of splits, or records a model may
  have been trained on, is never the silent default.
* ``split="all"``: every record, whatever its split (validation records still tune the tie
  threshold when other splits exist).
* ``split=NAME``: the records of that split.

Records of a validation split (``labels.VALIDATION_SPLITS``) that are not evaluated tune the tie
threshold; when the validation split itself is evaluated, nothing else tunes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prefalign.evaluate.errors import EvaluationError, NothingEvaluated
from prefalign.evaluate.labels import VALIDATION_SPLITS

ALL = "all"
DEFAULT_SPLIT = "test"
NO_SPLIT = "(no split)"


@dataclass
class Selection:
    """The records an evaluation measures (``evaluated``) and those that tune it (``tuning``)."""

    split: str  # the split evaluated, "all", or NO_SPLIT
    how: str  # one sentence for tables and reports
    evaluated: list[int]
    tuning: list[int]
    counts: dict[str, int] = field(default_factory=dict)  # records per split in the data

    @property
    def what(self) -> str:
        """``split test`` or ``all splits``, for messages."""
        return "all splits" if self.split == ALL else f"split {self.split}"

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "how": self.how,
            "n_evaluated": len(self.evaluated),
            "splits": self.counts,
        }


def _name(split: str | None) -> str:
    return NO_SPLIT if split is None else split


def _listing(counts: Counter) -> str:
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))


def select_split(splits: list[str | None], split: str | None, *, where: str) -> Selection:
    """Pick the records to evaluate from each record's split (see the module docstring).

    Args:
        splits: each record's ``split`` (None where it has none), in dataset order.
        split: ``None`` (default rule), ``"all"`` or a split name.
        where: the dataset, for messages.

    Raises:
        EvaluationError: the default rule cannot decide (several splits, no test split), or a split
            is named and the data hold none (exit 2 in the CLI, with the `data split` command).
        NothingEvaluated: the named split has no record.
    """
    names = [_name(s) for s in splits]
    counts = Counter(names)
    if not names:
        raise NothingEvaluated(f"{where}: the dataset has no records")
    evaluated_splits = sorted(n for n in counts if n not in VALIDATION_SPLITS)
    if split == ALL:
        chosen = set(evaluated_splits) or set(counts)
        how = (
            f"all splits together (--split all): {_listing(counts)}; may include records a model was "
            "trained on" + ("; validation records tune the tie threshold" if chosen != set(counts) else "")
        )
    elif split is not None:
        if set(counts) == {NO_SPLIT}:  # a usage error (exit 2): unsplit data cannot hold that split
            raise EvaluationError(
                f"{where}: the data are not split (no record has a split), so there is no split {split!r}: "
                f"split them once with `prefalign data split {where} --test-size 0.1 --out {where}-split` "
                f"and evaluate {where}-split with --split {split}, or pass --split all"
            )
        if split not in counts:
            raise NothingEvaluated(
                f"{where}: no record of split {split!r} (--split); the data hold {_listing(counts)}"
            )
        chosen = {split}
        how = f"split {split} ({counts[split]} records), chosen with --split"
    elif DEFAULT_SPLIT in counts:
        chosen = {DEFAULT_SPLIT}
        how = f"split {DEFAULT_SPLIT} ({counts[DEFAULT_SPLIT]} records), the default; the data hold {_listing(counts)}"
    elif len(counts) == 1 or len(evaluated_splits) == 1:
        only = evaluated_splits[0] if evaluated_splits else next(iter(counts))
        chosen = {only}
        how = f"split {only} ({counts[only]} records): the only split the data hold" + (
            "" if len(counts) == 1 else f" besides validation ({_listing(counts)})"
        )
        if only == "train":
            how += "; these may be records a model was trained on"
    else:
        raise EvaluationError(
            f"{where}: the data hold splits {_listing(counts)} and no {DEFAULT_SPLIT} split: choose one with "
            f"--split NAME, or --split all to evaluate them together (records a model was trained on included)"
        )
    evaluated = [i for i, n in enumerate(names) if n in chosen]
    tuning = [i for i, n in enumerate(names) if n in VALIDATION_SPLITS and n not in chosen]
    label = split if split is not None else next(iter(chosen))
    return Selection(label, how, evaluated, tuning, dict(counts))
