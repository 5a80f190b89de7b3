"""Invite tokens: one per annotator or admin, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from prefalign.annotate.errors import NotAuthorized, StudyError
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


def authenticate(session, study_id: int, token: str | None, role: str) -> Annotator:
    """The token holder of ``study_id`` with ``role``, or :class:`NotAuthorized`.

    A token of another study, or an annotator's token on an admin page (and the reverse), is
    refused like a wrong token, so the answer tells nothing about which tokens exist.
    """
    if not token:
        raise NotAuthorized("this page needs an invite link (a token); ask the study's organiser")
    annotator = session.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token)))
    if annotator is None or annotator.study_id != study_id or annotator.role != role:
        raise NotAuthorized("this invite token is not valid for this page")
    return annotator
