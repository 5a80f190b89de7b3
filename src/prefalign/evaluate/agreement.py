"""Agreement with people (the HPS paper's Table 3): each scorer against each participant, and
each participant against the others.

The votes convention (what ``eval agreement --votes`` reads and the annotation app exports): a
dataset in which each record is ONE participant's vote on one pair:

* ``images = [a, b]``; ``chosen = 0`` or ``1``, or ``ranks = [0, 0]`` for a tie
  (``ranks = [0, 1]`` / ``[1, 0]`` also name a winner);
* ``user``: the participant's id;
* ``meta["item"]``: an id shared by every vote on the same pair (absent: the unordered pair of
  image paths is the item), so the app may show the two images in either order.

A scorer agrees with a vote when it scores the voted image higher (equal scores earn 0.5).
Participant p agrees with the others in the fraction of (p's vote, another participant's vote on
the same item) couples that pick the same image. Each number is computed per participant, then
reported as mean ± std (population std, ddof=0) over participants. Tie votes are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torchmetrics import Metric

from prefalign.data.dataset import Dataset
from prefalign.evaluate.errors import EvaluationError
from prefalign.evaluate.labels import stable_key
from prefalign.scoring.ties import score_order


@dataclass
class Vote:
    """One participant's vote on one pair; ``winner`` is 0, 1, or None for a tie."""

    index: int
    user: str
    item: str
    prompt: str
    images: tuple[str, str]
    winner: int | None


@dataclass
class ParticipantStats:
    """Mean ± std over participants of their agreement, and each participant's value."""

    mean: float
    std: float
    n_participants: int
    per_participant: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AgreementResult:
    """Table 3: agreement of every scorer with the participants, and of people among themselves."""

    scorers: dict[str, ParticipantStats]
    human: ParticipantStats | None
    n_votes: int
    n_ties: int
    n_participants: int
    n_items: int

    def to_dict(self) -> dict:
        return {
            "scorers": {k: v.to_dict() for k, v in self.scorers.items()},
            "human": None if self.human is None else self.human.to_dict(),
            "n_votes": self.n_votes,
            "n_ties": self.n_ties,
            "n_participants": self.n_participants,
            "n_items": self.n_items,
        }


def votes_from_dataset(dataset: Dataset) -> list[Vote]:
    """Read a votes dataset (see the module docstring), resolving image paths.

    Raises:
        EvaluationError: a record that is not one participant's vote on a pair (names it).
    """
    votes = []
    for index, rec in enumerate(dataset):
        where = f"{dataset.root}: record {rec.id or index}"
        if len(rec.images) != 2:
            raise EvaluationError(f"{where}: a vote needs exactly 2 images, found {len(rec.images)}")
        if not rec.user:
            raise EvaluationError(f"{where}: a vote needs the participant id in `user`")
        if rec.ranks is not None and len(rec.ranks) == 2:
            winner = None if rec.ranks[0] == rec.ranks[1] else int(rec.ranks[1] < rec.ranks[0])
        elif rec.chosen in (0, 1):
            winner = int(rec.chosen)
        else:
            raise EvaluationError(f"{where}: a vote needs `chosen` (0 or 1) or `ranks` ([0, 0] for a tie)")
        images = (dataset.image_path(rec.images[0]), dataset.image_path(rec.images[1]))
        item = str(rec.meta.get("item") or "\0".join(sorted(rec.images)))
        votes.append(Vote(index, str(rec.user), item, rec.prompt, images, winner))
    if not votes:
        from prefalign.evaluate.errors import NothingEvaluated

        raise NothingEvaluated(f"{dataset.root}: 0 votes to evaluate (the votes dataset has no records)")
    return votes


def vote_credit(votes: Sequence[Vote], scores: Sequence[np.ndarray]) -> np.ndarray:
    """A scorer's agreement with each vote: 1 it scores the voted image higher, 0.5 equal, 0 lower.

    Args:
        votes: the votes.
        scores: per vote, the scores of its two images in the vote's order.

    Returns:
        One value per vote (NaN for tie votes and for failed images).
    """
    credit = np.full(len(votes), np.nan)
    for v, (vote, s) in enumerate(zip(votes, scores)):
        if vote.winner is None or not np.all(np.isfinite(s)):
            continue
        order = score_order(s[vote.winner], s[1 - vote.winner])  # equal within the one tolerance
        credit[v] = 1.0 if order > 0 else 0.5 if order == 0 else 0.0
    return credit


# ---------------------------------------------------------------------------- shared implementation
def _vote_keys(votes: Sequence[Vote]) -> np.ndarray:
    """``(index, user, item, winner image)`` keys of the votes, as int64 (winner -1 for a tie)."""
    keys = np.zeros((len(votes), 4), dtype=np.int64)
    for v, vote in enumerate(votes):
        winner = -1 if vote.winner is None else stable_key(vote.images[vote.winner])
        keys[v] = (vote.index, stable_key(vote.user), stable_key(vote.item), winner)
    return keys


def _stats(users: np.ndarray, values: np.ndarray, names: dict[int, str]) -> ParticipantStats | None:
    if len(values) == 0:
        return None
    per = {names.get(int(u), f"{int(u):016x}"): float(x) for u, x in zip(users, values)}
    return ParticipantStats(float(values.mean()), float(values.std()), len(values), per)


def _summarise(
    keys: np.ndarray, credits: np.ndarray, scorer_names: Sequence[str], names: dict[int, str]
) -> AgreementResult:
    """Every agreement number from vote keys and the scorers' credits (rows in a fixed order)."""
    order = np.argsort(keys[:, 0], kind="stable")
    keys, credits = keys[order], credits[order].reshape(len(keys), len(scorer_names))
    decided = keys[:, 3] != -1
    user, item, winner = keys[decided, 1], keys[decided, 2], keys[decided, 3]
    credits = credits[decided]
    scorers = {}
    for s, name in enumerate(scorer_names):
        ok = np.isfinite(credits[:, s])
        users, group = np.unique(user[ok], return_inverse=True)
        mean = np.bincount(group, credits[ok, s], minlength=len(users)) / np.bincount(
            group, minlength=len(users)
        )
        scorers[name] = _stats(users, mean, names)

    # Each vote against the other participants' votes on its item, by counting: votes on the
    # item (and with the same winner), minus the participant's own.
    def counts(*cols: np.ndarray) -> np.ndarray:
        _, inverse, n = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True, return_counts=True)
        return n[inverse.reshape(-1)]

    others = counts(item) - counts(item, user)
    others_agree = counts(item, winner) - counts(item, user, winner)
    users, group = np.unique(user, return_inverse=True)
    compared = np.bincount(group, others, minlength=len(users))
    agreed = np.bincount(group, others_agree, minlength=len(users))
    has = compared > 0
    human = _stats(users[has], agreed[has] / compared[has], names) if len(user) else None
    return AgreementResult(
        scorers=scorers,
        human=human,
        n_votes=int(len(keys)),
        n_ties=int((~decided).sum()),
        n_participants=int(len(np.unique(keys[:, 1]))),
        n_items=int(len(np.unique(keys[:, 2]))),
    )


# ---------------------------------------------------------------------------- the two doors
def agreement(votes: Sequence[Vote], credits: dict[str, np.ndarray]) -> AgreementResult:
    """Agreement of each scorer with each participant, and of participants with each other.

    Args:
        votes: from ``votes_from_dataset``.
        credits: scorer name -> ``vote_credit`` of that scorer (one value per vote).

    Returns:
        An ``AgreementResult`` (per-participant values keyed by participant id).
    """
    names = {stable_key(v.user): v.user for v in votes}
    matrix = np.stack([credits[n] for n in credits], axis=1) if credits else np.zeros((len(votes), 0))
    return _summarise(_vote_keys(votes), matrix, list(credits), names)


class Agreement(Metric):
    """``agreement`` as a torchmetrics metric whose states gather across processes.

    Args:
        scorer_names: the scorers whose credits ``update`` receives, in column order.

    Example:
        >>> metric = Agreement(["hps"])
        >>> metric.update(votes, {"hps": vote_credit(votes, scores)})  # doctest: +SKIP
        >>> metric.compute().scorers["hps"].mean                        # doctest: +SKIP
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, scorer_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.scorer_names = list(scorer_names)
        self.add_state("keys", default=[], dist_reduce_fx="cat")
        self.add_state("credits", default=[], dist_reduce_fx="cat")
        # Participant ids seen by this process (only for labelling; not synced).
        self._names: dict[int, str] = {}

    def update(self, votes: Sequence[Vote], credits: dict[str, np.ndarray]) -> None:
        """Add votes and each scorer's ``vote_credit`` on them."""
        self._names.update({stable_key(v.user): v.user for v in votes})
        # No scorer (human against human, step 4 of the annotation flow): a (votes, 0) matrix.
        columns = [np.asarray(credits[n], dtype=np.float64).reshape(-1) for n in self.scorer_names]
        matrix = np.stack(columns, axis=1) if columns else np.zeros((len(votes), 0))
        self.keys.append(torch.as_tensor(_vote_keys(votes), device=self.device))
        self.credits.append(torch.as_tensor(matrix.reshape(len(votes), -1), device=self.device))

    def compute(self) -> AgreementResult:
        from prefalign.evaluate.preference import _cat

        keys = _cat(self.keys).numpy().reshape(-1, 4).astype(np.int64)
        credits = _cat(self.credits).numpy().astype(np.float64).reshape(len(keys), -1)
        return _summarise(keys, credits, self.scorer_names, self._names)
