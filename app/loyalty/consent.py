"""Consents: what a member agreed to (the program's terms, marketing), when, in which wording.

Every consent given or withdrawn is a row of ``member_consents`` (append-only), written in the
transaction of the change; the member's ``consent_terms`` and ``consent_marketing`` columns
hold the latest of each kind, which is what the senders read: campaigns
(:mod:`app.campaigns.service`) and feedback prompts (:mod:`app.feedback.service`) reach only
members whose ``consent_marketing`` is true.

The wording version says which text the member saw. The join page's checkbox texts are
versioned here (:data:`WORDING`): change a text, bump its version. The terms' version also
names the program's terms as they were (the first 12 hex digits of their SHA-256), so a change
of the terms shows in the history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from app import timeutil
from app.extensions import db
from app.loyalty.models import ConsentKind, Member, MemberConsent, Program

#: The version of each consent's wording on the join page and in the API's description.
WORDING = {ConsentKind.TERMS: "terms-v1", ConsentKind.MARKETING: "marketing-v1"}
#: Where a consent came from.
SOURCES = ("join-page", "api", "console", "cli", "erasure")
MAX_WORDING_VERSION = 64


def wording_version(kind: ConsentKind, program: Program) -> str:
    """The current wording version of ``kind`` in ``program`` (the terms with their digest)."""
    if kind is ConsentKind.TERMS:
        digest = hashlib.sha256((program.terms or "").encode()).hexdigest()[:12]
        return f"{WORDING[kind]}+{digest}"
    return WORDING[kind]


def record(member: Member, kind: ConsentKind, granted: bool, *, source: str,
           wording: str | None = None, at: datetime | None = None) -> MemberConsent:
    """Record ``kind`` given (``granted``) or withdrawn now, and set the member's column (in
    the session, not committed). ``wording``: the version the member saw (default: the
    current one)."""
    row = MemberConsent(member_id=member.id, kind=kind, granted=granted,
                        wording_version=(wording or wording_version(kind, member.program))
                        [:MAX_WORDING_VERSION],
                        source=source, at=at or timeutil.now())
    if kind is ConsentKind.TERMS:
        member.consent_terms = granted
    else:
        member.consent_marketing = granted
    db.session.add(row)
    return row


def at_join(member: Member, *, source: str) -> None:
    """The consents given on joining (those not given are not recorded: nothing was asked
    back). The member must have its id (flushed)."""
    for kind, given in ((ConsentKind.TERMS, member.consent_terms),
                        (ConsentKind.MARKETING, member.consent_marketing)):
        if given:
            record(member, kind, True, source=source, at=member.created_at)


def history(member_id: int) -> Sequence[MemberConsent]:
    """The member's consents, oldest first."""
    return db.session.scalars(select(MemberConsent).where(MemberConsent.member_id == member_id)
                              .order_by(MemberConsent.id)).all()
