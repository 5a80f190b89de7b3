"""Invite tokens: one per annotator or admin, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from prefalign.annotate.errors import StudyError
from prefalign.annotate.models import ROLES, Annotator, Study
from prefalign.annotate.storage import Store

# 32 random bytes: not guessable, and short enough to paste into a URL.
TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    """SHA-256 of the token (tokens are random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_annotator(store: Store, study: Study, name: str, role: str = "annotator") -> str:
    """Create a token holder for ``study`` and return the token, which is not stored anywhere.

    Args:
        store: The annotation database.
        study: The study the token gives access to (and no other).
        name: The annotator's name, unique within the study; it becomes ``user`` in exports.
        role: ``annotator`` (votes) or ``admin`` (sees the progress page).

    Raises:
        StudyError: for an empty or taken name, or an unknown role.
    """
    name = name.strip()
    if not name:
        raise StudyError("an annotator needs a non-empty name")
    if role not in ROLES:
        raise StudyError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with store.transaction() as session:
        taken = session.scalar(
            select(Annotator.id).where(Annotator.study_id == study.id, Annotator.name == name)
        )
        if taken is not None:
            raise StudyError(f"study {study.name!r} already has someone named {name!r}")
        session.add(Annotator(study_id=study.id, name=name, role=role, token_hash=hash_token(token)))
    return token


def _holder(session, study: Study, name: str) -> Annotator:
    holder = session.scalar(select(Annotator).where(Annotator.study_id == study.id, Annotator.name == name))
    if holder is None:
        names = session.scalars(select(Annotator.name).where(Annotator.study_id == study.id)).all()
        known = ", ".join(repr(n) for n in sorted(names)) or "none"
        raise StudyError(f"study {study.name!r} has nobody named {name!r} (token holders: {known})")
    return holder


def rotate_token(store: Store, study: Study, name: str) -> str:
    """Give ``name`` (annotator or admin) a new token and return it; the old one stops working.

    Their votes stay theirs. A running server honours the change within its token cache time
    (``app.TOKEN_CACHE_S``, 5 s).

    Raises:
        StudyError: if the study has nobody of that name.
    """
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with store.transaction() as session:
        _holder(session, study, name).token_hash = hash_token(token)
    return token


def revoke_annotator(store: Store, study: Study, name: str) -> None:
    """Stop ``name``'s token from working (their votes are kept and exported).

    The stored hash is replaced by the hash of a random token that is never shown, so nobody
    holds a token for it any more; ``rotate_token`` gives them access again.

    Raises:
        StudyError: if the study has nobody of that name.
    """
    rotate_token(store, study, name)
