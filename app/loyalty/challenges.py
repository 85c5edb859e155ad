"""Challenges and their badges: goals a member reaches by visiting.

A :class:`~app.loyalty.models.Challenge` counts the card's visits (``earn`` and ``redeem``
entries not reversed), the different rewards it redeemed (redemptions not reversed) or the
different locations it visited at, within ``window_days`` days before the visit (``None``:
ever). The visit that reaches ``target`` gives the card the challenge's badge (a
:class:`~app.loyalty.models.CardBadge`, once per card and challenge: the unique constraint
backs it) and, with ``bonus_points``, a ``bonus`` entry with the idempotency key
``challenge:<id>`` (so once per card too), in the visit's own posting: badge, bonus and visit
commit together or not at all, and the visit's posting already tells the wallets that the
card changed, so its passes are rebuilt with the badge.

The listener (:func:`award_on_visit`, registered by ``create_app`` with
:func:`app.loyalty.visits.on_visit`) runs under the card's lock, so two visits of one card
never both see a challenge as open; it asks nothing of the database when the program has no
live challenge (``p.card.has_challenges``, read with the lock).

Managing them (the API and the console): the name, its translations (``texts``), the
target, the window and the bonus can change at any time; a change applies from the next
visit on (badges already earned stay, with the bonus they paid; a lower target is reached at
the card's next visit, not at once). The kind stays: a new kind is a new challenge. Retiring a
challenge stops it for good (it awards nothing more; its badges stay on the cards). Every
change is recorded in the audit trail in its own transaction. Undoing a visit at the till does
not take back a badge it completed.

A challenge's bonus does not count toward tiers (like a welcome bonus), and is not part of
the visit's own answer (the earn's or redemption's ``balance``): the card shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, distinct, func, or_, select, update

from app import audit, dbutil
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty import changes, visits
from app.loyalty.ledger import MAX_POINTS, PostingTransaction
from app.loyalty.models import (
    Card,
    CardBadge,
    Challenge,
    ChallengeKind,
    EntryKind,
    LedgerEntry,
    Program,
)
from app.timeutil import now as clock_now
from app.timeutil import utcnow
from passes.languages import LANGUAGES

#: The ledger's actor of a challenge's bonus: the program gives it, not whoever was at the till.
CHALLENGE_ACTOR = "challenge"
FIELDS = ("name", "texts", "target", "window_days", "bonus_points")
MAX_TARGET = 1000
MAX_WINDOW_DAYS = 3660
NAME_LENGTH = 120


def bonus_key(challenge_id: int) -> str:
    """The idempotency key of a challenge's bonus entry (unique per card)."""
    return f"challenge:{challenge_id}"


# --- Measuring progress ------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """What a card did in one window: its visits, different rewards and different locations."""

    visits: int = 0
    rewards: int = 0
    locations: int = 0

    def of(self, kind: ChallengeKind | str) -> int:
        return int(getattr(self, ChallengeKind(kind).value))


def _counts_query(with_since: bool) -> Any:
    """The card's visits not reversed (since ``:since`` when ``with_since``): how many, how
    many different rewards their redemptions (not reversed) gave, and at how many different
    locations they were (one row, in the order of :class:`Counts`)."""
    entries = LedgerEntry.__table__
    undo = LedgerEntry.__table__.alias("undo")
    # app.redemption's table, read by name: this layer imports nothing above it.
    redemptions = db.metadata.tables["redemptions"]
    query = (
        select(func.count(entries.c.id), func.count(distinct(redemptions.c.reward_id)),
               func.count(distinct(entries.c.location_id)))
        .select_from(entries.outerjoin(redemptions, (
            redemptions.c.ledger_entry_id == entries.c.id) & redemptions.c.reversed_at.is_(None)))
        .where(entries.c.card_id == bindparam("card_id"),
               or_(entries.c.kind == EntryKind.EARN, entries.c.kind == EntryKind.REDEEM),
               ~select(undo.c.id).where(undo.c.card_id == entries.c.card_id,
                                        undo.c.reverses_id == entries.c.id).exists())
    )
    if with_since:
        query = query.where(entries.c.created_at >= bindparam(
            "since", type_=entries.c.created_at.type))
    return query


_COUNTS = {with_since: dbutil.DriverStatement(
    lambda _dialect, with_since=with_since: _counts_query(with_since))
    for with_since in (False, True)}
_CHALLENGE_COLUMNS = (Challenge.id, Challenge.name, Challenge.kind, Challenge.target,
                      Challenge.window_days, Challenge.bonus_points)
# The program's live challenges the card has not earned, in the program's order.
_OPEN = dbutil.DriverStatement(lambda _dialect: select(*_CHALLENGE_COLUMNS).where(
    Challenge.program_id == bindparam("program_id"), Challenge.retired_at.is_(None),
    ~select(CardBadge.id).where(CardBadge.card_id == bindparam("card_id"),
                                CardBadge.challenge_id == Challenge.id).exists(),
).order_by(Challenge.position, Challenge.id))


def _insert_badge(dialect: str) -> Any:
    """A badge, unless the card has it already (then no row comes back)."""
    badges = CardBadge.__table__
    return (dbutil.INSERT[dialect](badges)
            .on_conflict_do_nothing(index_elements=["card_id", "challenge_id"])
            .returning(badges.c.id))


_INSERT_BADGE = dbutil.DriverStatement(
    _insert_badge, ["card_id", "challenge_id", "earned_at", "entry_id"])
_BADGE_ENTRY = dbutil.DriverStatement(lambda _dialect: update(CardBadge.__table__).where(
    CardBadge.__table__.c.id == bindparam("badge_id")).values(
    entry_id=bindparam("entry_id", type_=CardBadge.__table__.c.entry_id.type)))


@dataclass(frozen=True)
class _Open:
    id: int
    name: str
    kind: ChallengeKind
    target: int
    window_days: int | None
    bonus_points: int | None


def _since(at: datetime, window_days: int | None) -> datetime | None:
    return None if window_days is None else at - timedelta(days=window_days)


Run = Callable[[bool, dict[str, Any]], Any]


def _counts_by_window(run: Run, card_id: int, at: datetime,
                      windows: Iterable[int | None]) -> dict[int | None, Counts]:
    """One count per distinct window (a program has one or two): ``run(with_since, params)``
    runs the counting statement in the caller's transaction and gives its row."""
    found = {}
    for window in set(windows):
        since = _since(at, window)
        params: dict[str, Any] = {"card_id": card_id}
        if since is not None:
            params["since"] = since
        found[window] = Counts(*(int(value or 0) for value in run(since is not None, params)))
    return found


@dataclass(frozen=True)
class _Till:
    """Where the visit was, for the bonus entry (:class:`app.loyalty.ledger.AtTheTill`)."""

    staff_member_id: int | None
    device_id: int | None
    location_id: int | None


def award_on_visit(p: PostingTransaction, visit: visits.Visit) -> None:
    """The visit listener: give the card every badge (and bonus) this visit completes, in the
    visit's posting ``p``. Nothing is asked of the database when the program has no live
    challenge."""
    if not p.card.has_challenges:
        return
    card = p.card
    rows = p.tx.all(_OPEN, {"program_id": card.program_id, "card_id": card.id})
    if not rows:
        return
    open_ones = [_Open(int(r[0]), r[1], ChallengeKind(r[2]), int(r[3]), r[4], r[5])
                 for r in rows]
    counts = _counts_by_window(
        lambda with_since, params: p.tx.first(_COUNTS[with_since], params),
        card.id, visit.at, (c.window_days for c in open_ones))
    till = _Till(visit.staff_member_id, visit.device_id, visit.location_id)
    for challenge in open_ones:
        if counts[challenge.window_days].of(challenge.kind) < challenge.target:
            continue
        inserted = p.tx.first(_INSERT_BADGE, {"card_id": card.id, "challenge_id": challenge.id,
                                              "earned_at": visit.at, "entry_id": None})
        if inserted is None:  # the card has it already (the constraint is the last guard)
            continue
        key = bonus_key(challenge.id)
        # The ledger refuses a second entry with an own key (Conflict): look first.
        if challenge.bonus_points and not p.has_entry_with_key(key):
            bonus = p.post(EntryKind.BONUS, challenge.bonus_points, actor=CHALLENGE_ACTOR,
                           idempotency_key=key, reason=challenge.name[:500], till=till)
            p.tx.execute(_BADGE_ENTRY, {"badge_id": inserted[0], "entry_id": bonus.entry.id})


# --- What a card shows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A live challenge the card has not reached yet: ``done`` of ``target``."""

    challenge: Challenge
    done: int
    target: int


@dataclass(frozen=True)
class Badge:
    """A challenge the card reached, and when."""

    challenge: Challenge
    earned_at: datetime


def badges(card: Card) -> list[Badge]:
    """The card's badges (of retired challenges too), in the order it earned them."""
    rows = db.session.execute(
        select(Challenge, CardBadge.earned_at).join(
            CardBadge, CardBadge.challenge_id == Challenge.id)
        .where(CardBadge.card_id == card.id).order_by(CardBadge.earned_at, CardBadge.id))
    return [Badge(challenge, earned_at) for challenge, earned_at in rows]


def progress(card: Card, at: datetime | None = None) -> list[Progress]:
    """The program's live challenges the card has not reached, in the program's order, each
    with how far the card is now (``at``, default the app's clock), counted as a visit would."""
    earned = select(CardBadge.challenge_id).where(CardBadge.card_id == card.id)
    open_ones = list(db.session.scalars(select(Challenge).where(
        Challenge.program_id == card.program_id, Challenge.retired_at.is_(None),
        Challenge.id.not_in(earned)).order_by(Challenge.position, Challenge.id)))
    if not open_ones:
        return []
    when = at or clock_now()
    counts = _counts_by_window(
        lambda with_since, params: db.session.execute(_counts_query(with_since), params).one(),
        card.id, when, (c.window_days for c in open_ones))
    return [Progress(c, min(counts[c.window_days].of(c.kind), c.target), c.target)
            for c in open_ones]


#: The most badges a pass names (the latest ones): what Google's text module holds.
PASS_BADGES = 15


def pass_badges(card: Card) -> list[dict[str, str]]:
    """The names of the card's latest badges in every language, for its passes' backs."""
    return pass_badges_of([card.id]).get(card.id, [])


def pass_badges_of(card_ids: Collection[int]) -> dict[int, list[dict[str, str]]]:
    """:func:`pass_badges` of each of ``card_ids`` (those with badges), in one query."""
    earned: dict[int, list[Challenge]] = {}
    for card_id, challenge in db.session.execute(
            select(CardBadge.card_id, Challenge)
            .join(Challenge, CardBadge.challenge_id == Challenge.id)
            .where(CardBadge.card_id.in_(list(card_ids)))
            .order_by(CardBadge.card_id, CardBadge.earned_at, CardBadge.id)):
        earned.setdefault(card_id, []).append(challenge)
    return {card_id: [localized_name(challenge) for challenge in challenges[-PASS_BADGES:]]
            for card_id, challenges in earned.items()}


def name_in(challenge: Challenge, language: str) -> str:
    """The challenge's name for a reader of ``language`` (its own text, else its name)."""
    return (challenge.texts or {}).get(language) or challenge.name


def localized_name(challenge: Challenge) -> dict[str, str]:
    """The name in every language (a pass's ``LocalizedText``: English first)."""
    return {language: name_in(challenge, language) for language in LANGUAGES}


# --- Managing challenges -------------------------------------------------------------------------


def _problem(field_name: str, message: str) -> dict[str, str]:
    return {"location": "json", "field": field_name, "message": message}


def check(values: Mapping[str, Any]) -> None:
    """``Unprocessable`` naming every field at fault (the API's schema checks the same; the
    console and other callers come through here)."""
    errors = []
    name = values.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH:
        errors.append(_problem("name", f"Give a name of 1 to {NAME_LENGTH} characters."))
    target = values.get("target")
    if not isinstance(target, int) or isinstance(target, bool) or \
            not 1 <= target <= MAX_TARGET:
        errors.append(_problem("target", f"Must be between 1 and {MAX_TARGET}."))
    window = values.get("window_days")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool)
                               or not 1 <= window <= MAX_WINDOW_DAYS):
        errors.append(_problem("window_days", f"Must be between 1 and {MAX_WINDOW_DAYS}, "
                                              "or null (ever)."))
    bonus = values.get("bonus_points")
    if bonus is not None and (not isinstance(bonus, int) or isinstance(bonus, bool)
                              or not 1 <= bonus <= MAX_POINTS):
        errors.append(_problem("bonus_points", f"Must be between 1 and {MAX_POINTS}, or null."))
    texts = values.get("texts") or {}  # a language without a text (None, "") has none
    for language, text in texts.items():
        if language not in LANGUAGES:
            errors.append(_problem(f"texts.{language}", "Not a language of Pointpass."))
        elif text is not None and (not isinstance(text, str) or len(text) > NAME_LENGTH):
            errors.append(_problem(f"texts.{language}",
                                   f"Give a name of at most {NAME_LENGTH} characters."))
    if errors:
        raise Unprocessable("This is not a valid challenge.", errors=errors)


def _stored_texts(texts: Mapping[str, str | None] | None) -> dict[str, str] | None:
    kept = {language: text.strip() for language, text in (texts or {}).items()
            if text and text.strip()}
    return kept or None


def list_challenges(program: Program) -> list[Challenge]:
    """The program's live challenges in its order, then the retired ones, most recently
    retired first."""
    found = db.session.scalars(select(Challenge).where(Challenge.program_id == program.id)
                               .order_by(Challenge.position, Challenge.id)).all()
    live = [c for c in found if c.retired_at is None]
    gone = sorted((c for c in found if c.retired_at is not None),
                  key=lambda c: (c.retired_at, c.id), reverse=True)
    return live + gone


def get(program: Program, challenge_id: int) -> Challenge:
    """One of ``program``'s challenges (retired ones too); ``NotFound`` for any other id."""
    challenge = db.session.get(Challenge, challenge_id)
    if challenge is None or challenge.program_id != program.id:
        raise NotFound(f"Program {program.id} has no challenge {challenge_id}.")
    return challenge


def earned_count(challenge: Challenge) -> int:
    """How many cards have the challenge's badge."""
    return int(db.session.scalar(select(func.count(CardBadge.id)).where(
        CardBadge.challenge_id == challenge.id)) or 0)


def _details(challenge: Challenge) -> dict[str, Any]:
    return {"name": challenge.name, "texts": challenge.texts, "kind": challenge.kind.value,
            "target": challenge.target, "window_days": challenge.window_days,
            "bonus_points": challenge.bonus_points}


def create(program: Program, *, name: str, kind: ChallengeKind | str, target: int,
           window_days: int | None = None, bonus_points: int | None = None,
           texts: Mapping[str, str | None] | None = None) -> Challenge:
    """Add a challenge at the end of the program's list. Commits. (No pass changes: passes
    show badges earned, and there are none yet.)"""
    try:
        kind = ChallengeKind(kind)
    except ValueError:
        raise Unprocessable("This is not a valid challenge.", errors=[
            _problem("kind", "Must be visits, rewards or locations.")]) from None
    values = {"name": name, "target": target, "window_days": window_days,
              "bonus_points": bonus_points, "texts": texts}
    check(values)
    last = db.session.scalar(select(func.max(Challenge.position)).where(
        Challenge.program_id == program.id))
    challenge = Challenge(program_id=program.id, name=name.strip(), kind=kind, target=target,
                          window_days=window_days, bonus_points=bonus_points,
                          texts=_stored_texts(texts), created_at=utcnow(),
                          position=0 if last is None else last + 1)
    db.session.add(challenge)
    db.session.flush()
    audit.record("challenge.create", program_id=program.id,
                 target=f"challenge:{challenge.id}", details=_details(challenge))
    db.session.commit()
    return challenge


def _not_retired(challenge: Challenge) -> None:
    if challenge.retired_at is not None:
        raise Conflict(f"Challenge {challenge.id} is retired: it can no longer change.",
                       code="challenge-retired")


def update_challenge(program: Program, challenge_id: int, **fields: Any) -> Challenge:
    """Change a live challenge's ``name``, ``texts`` (as a whole), ``target``,
    ``window_days`` or ``bonus_points`` (``None``: no window, no bonus). Commits. From the
    next visit on; badges earned stay. A new name rebuilds the passes that show the badge.
    ``Conflict`` (``challenge-retired``) for a retired challenge."""
    for name in fields:
        if name not in FIELDS:
            raise ValueError(f"{name} is not a challenge field")
    challenge = get(program, challenge_id)
    _not_retired(challenge)
    values = {name: getattr(challenge, name) for name in FIELDS}
    values.update(fields)
    check(values)
    if "texts" in fields:
        fields["texts"] = _stored_texts(fields["texts"])
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    changed = {name: value for name, value in fields.items()
               if getattr(challenge, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(challenge, name, value)
        audit.record("challenge.update", program_id=program.id,
                     target=f"challenge:{challenge.id}", details=changed)
        if "name" in changed or "texts" in changed:  # the passes name their badges
            changes.touch_cards(Card.id.in_(select(CardBadge.card_id).where(
                CardBadge.challenge_id == challenge.id)))
    db.session.commit()
    return challenge


def retire(program: Program, challenge_id: int) -> Challenge:
    """Stop a challenge for good: it awards nothing more; the badges it gave stay. Commits.
    Idempotent (a retired challenge stays as it is)."""
    challenge = get(program, challenge_id)
    if challenge.retired_at is None:
        challenge.retired_at = utcnow()
        audit.record("challenge.retire", program_id=program.id,
                     target=f"challenge:{challenge.id}", details={"name": challenge.name})
        db.session.commit()
    return challenge

