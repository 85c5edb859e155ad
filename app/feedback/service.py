"""In-card feedback: the invitation a visit makes, its one answer, and the Net Promoter Score.

After a visit at a location (an earn or a redemption with a ``location_id``), a program with
``feedback_every_days`` set gives the card an invitation, unless the card got one within that
many days or its member did not consent to marketing (``consent_marketing``: a prompt is a
marketing message). The invitation is written by a visit listener
(:mod:`app.loyalty.visits`) with the posting's own transaction, so it commits with the visit
or not at all, and the pass the visit already announces carries the link (``app.wallet``:
the card's :func:`pass_link`).

An invitation is answered once: the answer is a guarded ``UPDATE ... WHERE answered_at IS
NULL AND expires_at > now``, so two answers racing each other cannot both count. Answering
announces the card again, so its passes drop the link.

NPS = 100 x (promoters (9-10) - detractors (0-6)) / answers, over the answers given in a
window (``answered_at``); docs/metrics.md defines it for the dashboard alike.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, case, func, insert, select, update

from app import dbutil, timeutil
from app.errors import Conflict, DomainError, NotFound, Unprocessable
from app.extensions import db
from app.feedback.models import FeedbackInvitation
from app.loyalty import changes, visits
from app.loyalty.ledger import PostingTransaction
from app.loyalty.models import Card, Member, Program, ProgramLocation
from app.schemas import invisible_character
from app.staff.models import StaffMember
from passes.feedback_link import FeedbackLink
from passes.languages import LANGUAGES

#: How long an invitation can be answered.
INVITATION_DAYS = 7
MAX_COMMENT = 1000
MIN_SCORE, MAX_SCORE = 0, 10
PROMOTER_FROM, DETRACTOR_UP_TO = 9, 6


class AlreadyAnswered(Conflict, code="already-answered"):
    """The invitation has its answer (one per invitation)."""


class InvitationExpired(DomainError, code="invitation-expired", status=410):
    """The invitation is older than :data:`INVITATION_DAYS` days."""


# --- The invitation, in the visit's transaction ---------------------------------------------

# One look: the card may be invited when its member consented to marketing (a prompt is a
# marketing message; app.loyalty.consent) and it got no invitation since ``since``.
_MAY_INVITE = dbutil.DriverStatement(lambda _dialect: select(Card.id).join(
    Member, Member.id == Card.member_id).where(
    Card.id == bindparam("card_id"), Member.consent_marketing.is_(True),
    ~select(FeedbackInvitation.id).where(
        FeedbackInvitation.card_id == Card.id,
        FeedbackInvitation.created_at > bindparam(
            "since", type_=FeedbackInvitation.created_at.type)).exists()))
_INVITE = dbutil.DriverStatement(
    lambda _dialect: insert(FeedbackInvitation.__table__),
    ["program_id", "card_id", "token", "entry_id", "location_id", "staff_member_id",
     "created_at", "expires_at", "answered_at", "score", "comment", "language"])


def new_token() -> str:
    """A random, URL-safe invitation token (the page's only key: 192 bits)."""
    return secrets.token_urlsafe(24)


@visits.on_visit
def invite_after_visit(p: PostingTransaction, visit: visits.Visit) -> None:
    """The visit listener: invite the card's member to rate a visit at a location, at most
    once per the program's ``feedback_every_days``. Without that setting (the common case,
    on the hot path of every earn) it returns before asking the database anything."""
    every = p.card.feedback_every_days
    if every is None or visit.location_id is None:
        return
    since = visit.at - timedelta(days=every)
    if p.tx.first(_MAY_INVITE, {"card_id": p.card.id, "since": since}) is None:
        return  # invited recently, or no marketing consent
    p.tx.execute(_INVITE, {
        "program_id": p.card.program_id, "card_id": p.card.id, "token": new_token(),
        "entry_id": visit.entry_id, "location_id": visit.location_id,
        "staff_member_id": visit.staff_member_id, "created_at": visit.at,
        "expires_at": visit.at + timedelta(days=INVITATION_DAYS), "answered_at": None,
        "score": None, "comment": None, "language": None,
    })


# --- Reading and answering -------------------------------------------------------------------


def page_path(token: str) -> str:
    """The path of the invitation's page."""
    return f"/feedback/{token}"


def page_url(token: str) -> str:
    """The absolute URL of the invitation's page, under the public ``BASE_URL`` (what the
    passes link to)."""
    return current_app.config["BASE_URL"] + page_path(token)


def pass_link(card: Card) -> FeedbackLink | None:
    """What the card's passes (Apple and Google) show of its open invitation, if it has one:
    the link to its page, said on the lock screen when the program asks for that. A program
    that asks for no feedback shows none (and every pass it builds skips the query)."""
    return pass_links_of([card]).get(card.id)


def pass_links_of(cards: Sequence[Card]) -> dict[int, FeedbackLink]:
    """:func:`pass_link` of each of ``cards`` that has one, in one query at most."""
    asking = {card.id: card for card in cards if card.program.feedback_every_days is not None}
    if not asking:
        return {}
    links: dict[int, FeedbackLink] = {}
    for invitation in db.session.scalars(
            select(FeedbackInvitation)
            .where(FeedbackInvitation.card_id.in_(list(asking)),
                   FeedbackInvitation.answered_at.is_(None),
                   FeedbackInvitation.expires_at > timeutil.now())
            .order_by(FeedbackInvitation.card_id, FeedbackInvitation.created_at.desc(),
                      FeedbackInvitation.id.desc())):
        if invitation.card_id not in links:  # the newest open one
            program = asking[invitation.card_id].program
            links[invitation.card_id] = FeedbackLink(
                page_url(invitation.token), lock_screen=bool(program.feedback_lock_screen))
    return links


def find(token: str) -> FeedbackInvitation:
    """The invitation with ``token`` (answered or expired too); ``NotFound`` otherwise."""
    invitation = None
    if isinstance(token, str) and 0 < len(token) <= 64:
        invitation = db.session.scalar(
            select(FeedbackInvitation).where(FeedbackInvitation.token == token))
    if invitation is None:
        raise NotFound("No such feedback invitation.")
    return invitation


def check_open(invitation: FeedbackInvitation, now: datetime | None = None) -> None:
    """``AlreadyAnswered`` (409) or ``InvitationExpired`` (410) unless it can be answered."""
    now = now or timeutil.now()
    if invitation.answered_at is not None:
        raise AlreadyAnswered("This invitation has been answered already.")
    if invitation.expires_at <= now:
        raise InvitationExpired("This invitation has expired.")


def _field_error(field: str, message: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"location": "form", "field": field,
                                           "message": message}])


def clean_answer(score: Any, comment: Any, language: Any) -> tuple[int, str | None, str | None]:
    """The answer as stored: ``score`` an integer 0-10 (not a bool or a float), ``comment``
    trimmed text of at most :data:`MAX_COMMENT` characters without invisible marks (empty:
    none), ``language`` one of the pages' languages or None. ``Unprocessable`` otherwise."""
    if isinstance(score, bool) or not isinstance(score, int) or \
            not MIN_SCORE <= score <= MAX_SCORE:
        raise _field_error("score", f"The score is a whole number from {MIN_SCORE} to "
                                    f"{MAX_SCORE}.")
    if comment is not None and not isinstance(comment, str):
        raise _field_error("comment", "The comment is text.")
    comment = (comment or "").strip() or None
    if comment is not None:
        if len(comment) > MAX_COMMENT:
            raise _field_error("comment", f"The comment is at most {MAX_COMMENT} characters.")
        if "\x00" in comment or invisible_character(comment):
            raise _field_error("comment", "The comment has invisible characters.")
    return score, comment, language if language in LANGUAGES else None


def answer(token: str, score: Any, comment: Any = None,
           language: Any = None) -> FeedbackInvitation:
    """Record the answer to the invitation ``token``, once, and commit; the card's passes are
    told, so they drop the link. ``Unprocessable`` (422) for an invalid answer, ``NotFound``
    (404), ``AlreadyAnswered`` (409) or ``InvitationExpired`` (410); nothing is written then.
    """
    score, comment, language = clean_answer(score, comment, language)
    invitation = find(token)
    now = timeutil.now()
    table = FeedbackInvitation.__table__
    written = db.session.execute(
        update(table)
        .where(table.c.id == invitation.id, table.c.answered_at.is_(None),
               table.c.expires_at > now)
        .values(answered_at=now, score=score, comment=comment, language=language))
    if written.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        check_open(db.session.get(FeedbackInvitation, invitation.id, populate_existing=True)
                   or invitation, now)
        raise AlreadyAnswered("This invitation has been answered already.")  # raced
    changes.touch_cards(Card.id == invitation.card_id)
    db.session.commit()
    db.session.refresh(invitation)
    return invitation


# --- What the marketer sees -------------------------------------------------------------------


@dataclass(frozen=True)
class Nps:
    """The Net Promoter Score of some answers: ``score`` from -100 to 100 (None without
    answers), with the counts it comes from."""

    answers: int
    promoters: int
    detractors: int

    @property
    def passives(self) -> int:
        return self.answers - self.promoters - self.detractors

    @property
    def score(self) -> float | None:
        if not self.answers:
            return None
        return 100 * (self.promoters - self.detractors) / self.answers


def _counts() -> tuple[Any, ...]:
    score = FeedbackInvitation.score
    return (func.count(FeedbackInvitation.id),
            func.coalesce(func.sum(case((score >= PROMOTER_FROM, 1), else_=0)), 0),
            func.coalesce(func.sum(case((score <= DETRACTOR_UP_TO, 1), else_=0)), 0))


def _answered(program_id: int, start: datetime, end: datetime) -> list[Any]:
    return [FeedbackInvitation.program_id == program_id,
            FeedbackInvitation.answered_at.is_not(None),
            FeedbackInvitation.answered_at >= start, FeedbackInvitation.answered_at < end]


def nps(program_id: int, start: datetime, end: datetime,
        location_id: int | None = None) -> Nps:
    """The program's NPS over the answers given from ``start`` up to (not including) ``end``,
    at ``location_id`` when given."""
    where = _answered(program_id, start, end)
    if location_id is not None:
        where.append(FeedbackInvitation.location_id == location_id)
    answers, promoters, detractors = db.session.execute(select(*_counts()).where(*where)).one()
    return Nps(int(answers), int(promoters), int(detractors))


def nps_by_location(program_id: int, start: datetime,
                    end: datetime) -> list[tuple[ProgramLocation, Nps]]:
    """The NPS of each of the program's locations with answers in the window, by name."""
    rows = db.session.execute(
        select(FeedbackInvitation.location_id, *_counts())
        .where(*_answered(program_id, start, end))
        .group_by(FeedbackInvitation.location_id)).all()
    found = {row[0]: Nps(int(row[1]), int(row[2]), int(row[3])) for row in rows if row[0]}
    if not found:
        return []
    places = db.session.scalars(select(ProgramLocation).where(
        ProgramLocation.id.in_(found))).all()
    return sorted(((place, found[place.id]) for place in places), key=lambda p: p[0].name)


@dataclass(frozen=True)
class AnswerLine:
    """One answer as the console lists it."""

    answered_at: datetime
    score: int
    comment: str | None
    location: str | None
    staff_member: str | None
    language: str | None


def answers(program_id: int, *, page: int = 1, per_page: int = 25) -> tuple[list[AnswerLine],
                                                                            bool]:
    """The program's answers, newest first, one page of them; and whether there are more."""
    page = max(page, 1)
    rows = db.session.execute(
        select(FeedbackInvitation.answered_at, FeedbackInvitation.score,
               FeedbackInvitation.comment, ProgramLocation.name, StaffMember.name,
               FeedbackInvitation.language)
        .outerjoin(ProgramLocation, ProgramLocation.id == FeedbackInvitation.location_id)
        .outerjoin(StaffMember, StaffMember.id == FeedbackInvitation.staff_member_id)
        .where(FeedbackInvitation.program_id == program_id,
               FeedbackInvitation.answered_at.is_not(None))
        .order_by(FeedbackInvitation.answered_at.desc(), FeedbackInvitation.id.desc())
        .offset((page - 1) * per_page).limit(per_page + 1)).all()
    return [AnswerLine(*row) for row in rows[:per_page]], len(rows) > per_page


# --- The page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvitationPage:
    """What the invitation's page shows: its program, where the visit was, and the member's
    language (the page's first choice)."""

    invitation: FeedbackInvitation
    program: Program
    member_language: str
    location: str | None


def page_for(token: str) -> InvitationPage:
    """The invitation ``token`` with what its page shows; ``NotFound`` for no such one."""
    invitation = find(token)
    card = db.session.get(Card, invitation.card_id)
    assert card is not None  # the foreign key keeps it
    location = (db.session.get(ProgramLocation, invitation.location_id)
                if invitation.location_id else None)
    return InvitationPage(invitation, card.program, card.member.language,
                          location.name if location else None)
