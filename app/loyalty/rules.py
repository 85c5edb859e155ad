"""Earning rules: bonuses on enrolment, birthdays, referrals and purchases.

A rule (:class:`app.loyalty.models.EarningRule`) gives points on an *occasion*: an earn
(``multiplier``, ``bonus``), an enrolment (``welcome``), a birthday (``birthday``) or a
referee's first purchase (``referral``). Whether it applies is decided by :func:`evaluate`, a
pure function of the rules and a :class:`Context` (no database), which the earn and the
preview both call, so what a preview says is what an earn gives.

Conditions (``EarningRule.conditions``, all optional, all in the program's ``time_zone``):

* ``tiers``: tier names; ``location_ids``: store ids; ``min_amount``: purchase amount in minor
  units (an earn of points without an amount does not meet it);
* ``days_of_week``: ISO days (1 Monday .. 7 Sunday) of the local date;
* ``time_from`` / ``time_to``: a local ``HH:MM`` window, ``time_from`` included and ``time_to``
  not; a window with ``time_from`` after ``time_to`` runs across midnight (22:00-02:00);
* ``starts_at`` / ``ends_at``: ISO 8601 instants with an offset, ``starts_at`` included;
* ``first_purchase_only``: the member's first purchase (an earn not undone);
* ``max_awards_per_member``: awards of this rule a member gets at most.

Rules of one occasion run by ``priority`` (higher first), then id; a rule with ``stackable``
false that applies stops the rules below it. A ``multiplier`` of ``percent`` p gives
``floor(base × (p − 100) / 100)`` points on top of an earn of ``base`` points (the earn's
points, tier multiplier included); a ``bonus`` gives its fixed ``points``.

Every award is a ``bonus`` ledger entry naming the rule, with the idempotency key
``rule:<rule id>:<occasion>`` (``earn:<earn entry id>``, ``welcome``, ``birthday:<year>``,
``referral:<referee member id>``), so it is given once per rule, member and occasion.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, bindparam, extract, func, or_, select

from app import audit, background, dbutil
from app.errors import CardVoided, NotFound, Unprocessable
from app.extensions import db
from app.loyalty.ledger import (
    AtTheTill,
    Posting,
    PostingTransaction,
    TierRule,
    points_for_amount,
    posting,
)
from app.loyalty.models import (
    Card,
    CardStatus,
    EarningRule,
    EntryKind,
    LedgerEntry,
    Member,
    Program,
    ProgramLocation,
    RuleKind,
)
from app.timeutil import now as clock_now
from app.timeutil import utcnow

log = logging.getLogger("pointpass.rules")

#: The kinds of rule an earn evaluates (in one stack); referral rules are a stack of their own.
EARN_KINDS = (RuleKind.MULTIPLIER, RuleKind.BONUS)
#: Conditions that only a purchase can meet: refused on welcome and birthday rules.
PURCHASE_CONDITIONS = ("location_ids", "min_amount", "first_purchase_only")
BIRTHDAY_BATCH = 500
REFERRAL_ACTOR = "job:referral"


# ---------------------------------------------------------------------------------------------
# Conditions and evaluation: pure, no database.

@dataclass(frozen=True)
class Conditions:
    tiers: frozenset[str] | None = None
    location_ids: frozenset[int] | None = None
    min_amount: int | None = None
    days_of_week: frozenset[int] | None = None
    time_from: time | None = None
    time_to: time | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    first_purchase_only: bool = False
    max_awards_per_member: int | None = None
    # Switched off (the console's "disable", the API's ``enabled: false``): applies to nothing.
    paused: bool = False


def parse_clock(text: str) -> time:
    """``"HH:MM"`` as a time of day."""
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with its offset (UTC when a stored one has none)."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo("UTC"))


def parse_conditions(raw: Mapping[str, Any] | None) -> Conditions:
    """A rule's stored conditions (JSON, as the API validated them)."""
    if not raw:
        return Conditions()

    def ints(name: str) -> frozenset[int] | None:
        values = raw.get(name)
        return None if values is None else frozenset(int(v) for v in values)

    tiers = raw.get("tiers")
    return Conditions(
        tiers=None if tiers is None else frozenset(str(t) for t in tiers),
        location_ids=ints("location_ids"),
        min_amount=raw.get("min_amount"),
        days_of_week=ints("days_of_week"),
        time_from=parse_clock(raw["time_from"]) if raw.get("time_from") else None,
        time_to=parse_clock(raw["time_to"]) if raw.get("time_to") else None,
        starts_at=parse_instant(raw["starts_at"]) if raw.get("starts_at") else None,
        ends_at=parse_instant(raw["ends_at"]) if raw.get("ends_at") else None,
        first_purchase_only=bool(raw.get("first_purchase_only", False)),
        max_awards_per_member=raw.get("max_awards_per_member"),
        paused=bool(raw.get("paused", False)),
    )


@dataclass(frozen=True)
class Rule:
    """An earning rule as evaluation sees it."""

    id: int
    kind: RuleKind
    name: str
    points: int | None = None
    percent: int | None = None
    referrer_points: int | None = None
    referee_points: int | None = None
    priority: int = 0
    stackable: bool = True
    conditions: Conditions = field(default_factory=Conditions)

    @classmethod
    def of(cls, rule: EarningRule) -> Rule:
        return cls(rule.id, RuleKind(rule.kind), rule.name, rule.points, rule.percent,
                   rule.referrer_points, rule.referee_points, rule.priority, rule.stackable,
                   parse_conditions(rule.conditions))


@dataclass(frozen=True)
class Context:
    """What a rule is evaluated against. ``at``: the moment, aware (its local date and time
    are taken in ``time_zone``); ``awards``: rule id -> awards the member has had of it."""

    at: datetime
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    base_points: int = 0
    tier: str | None = None
    amount: int | None = None
    currency: str | None = None
    location_id: int | None = None
    is_first_purchase: bool = False
    awards: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What one rule gives in a context: ``points`` (0 when it does not apply) and, when it
    does not, the ``reason``."""

    rule_id: int
    name: str
    kind: str
    points: int
    applies: bool
    reason: str | None = None


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """Rules in the order they run: higher ``priority`` first, then lower id."""
    return sorted(rules, key=lambda r: (-r.priority, r.id))


def in_window(clock: time, start: time, end: time) -> bool:
    """Whether ``clock`` is in ``[start, end)``; a window with ``start`` after ``end`` runs
    across midnight."""
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end


def refusal(rule: Rule, context: Context) -> str | None:
    """Why ``rule``'s conditions do not hold in ``context`` (None: they hold)."""
    c = rule.conditions
    if c.paused:
        return "disabled"
    local = context.at.astimezone(context.time_zone)
    if c.starts_at is not None and context.at < c.starts_at:
        return "not_started"
    if c.ends_at is not None and context.at >= c.ends_at:
        return "ended"
    if c.tiers is not None and context.tier not in c.tiers:
        return "tier"
    if c.location_ids is not None and context.location_id not in c.location_ids:
        return "location"
    if c.min_amount is not None and (context.amount is None or context.amount < c.min_amount):
        return "min_amount"
    if c.days_of_week is not None and local.isoweekday() not in c.days_of_week:
        return "day_of_week"
    if (c.time_from is not None and c.time_to is not None
            and not in_window(local.time().replace(tzinfo=None), c.time_from, c.time_to)):
        return "time_window"
    if c.first_purchase_only and not context.is_first_purchase:
        return "first_purchase_only"
    if (c.max_awards_per_member is not None
            and context.awards.get(rule.id, 0) >= c.max_awards_per_member):
        return "max_awards"
    return None


def points_of(rule: Rule, base_points: int) -> int:
    """The points ``rule`` gives when it applies (to the member whose occasion it is)."""
    if rule.kind is RuleKind.MULTIPLIER:
        return base_points * ((rule.percent or 100) - 100) // 100
    if rule.kind is RuleKind.REFERRAL:
        return rule.referee_points or 0
    return rule.points or 0


def evaluate(rules: Iterable[Rule], context: Context) -> list[Outcome]:
    """Each rule's outcome in ``context``, in the order the rules run (pass the rules of one
    occasion). A rule that applies with ``stackable`` false stops those after it
    (``reason`` ``stopped_by:<rule id>``)."""
    outcomes = []
    stopped_by: Rule | None = None
    for rule in ordered(rules):
        reason = f"stopped_by:{stopped_by.id}" if stopped_by else refusal(rule, context)
        applies = reason is None
        outcomes.append(Outcome(rule.id, rule.name, rule.kind.value,
                                points_of(rule, context.base_points) if applies else 0,
                                applies, reason))
        if applies and not rule.stackable:
            stopped_by = rule
    return outcomes


def zone_of(name: str | None) -> ZoneInfo:
    """A program's time zone (UTC for a name this system does not know)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; using UTC", name)
        return ZoneInfo("UTC")


# ---------------------------------------------------------------------------------------------
# Earn: inside earning.earn's posting.

@dataclass(frozen=True)
class Award:
    """A rule's award on an earn (its ``bonus`` entry)."""

    rule_id: int
    name: str
    kind: str
    points: int
    entry_id: int


@dataclass(frozen=True)
class EarnPosting(Posting):
    """An earn's posting with its breakdown: ``base_points`` (the earn entry's, the tier's
    multiplier included) and the rules' ``awards``. ``balance`` is after all of them."""

    base_points: int = 0
    awards: tuple[Award, ...] = ()

    @property
    def total_points(self) -> int:
        return self.base_points + sum(a.points for a in self.awards)


_RULE_COLUMNS = (EarningRule.id, EarningRule.kind, EarningRule.name, EarningRule.points,
                 EarningRule.percent, EarningRule.referrer_points, EarningRule.referee_points,
                 EarningRule.priority, EarningRule.stackable, EarningRule.conditions)


def _rule(row: Sequence[Any]) -> Rule:
    return Rule(row[0], RuleKind(row[1]), *row[2:9], parse_conditions(row[9]))


# The program's time zone with its live rules of a purchase (none: one row of NULLs).
_PURCHASE_RULES = dbutil.DriverStatement(lambda _dialect: select(
    Program.time_zone, *_RULE_COLUMNS,
).select_from(Program).outerjoin(EarningRule, and_(
    EarningRule.program_id == Program.id, EarningRule.deleted_at.is_(None),
    or_(EarningRule.kind == RuleKind.MULTIPLIER, EarningRule.kind == RuleKind.BONUS,
        EarningRule.kind == RuleKind.REFERRAL),
)).where(Program.id == bindparam("program_id")))


def _purchase_query(_dialect: str) -> Any:
    """Any earlier purchase of the card: an earn (not the legacy referral credit) not undone."""
    earn = LedgerEntry.__table__.alias("earn")
    undo = LedgerEntry.__table__.alias("undo")
    return select(earn.c.id).where(
        earn.c.card_id == bindparam("card_id"), earn.c.kind == EntryKind.EARN,
        earn.c.actor != REFERRAL_ACTOR,
        ~select(undo.c.id).where(undo.c.card_id == earn.c.card_id,
                                 undo.c.reverses_id == earn.c.id).exists(),
    ).limit(1)


_A_PURCHASE = dbutil.DriverStatement(_purchase_query)
_AWARDS = dbutil.DriverStatement(lambda _dialect: select(
    LedgerEntry.rule_id, func.count(),
).where(LedgerEntry.card_id == bindparam("card_id"), LedgerEntry.kind == EntryKind.BONUS,
        LedgerEntry.rule_id.is_not(None)).group_by(LedgerEntry.rule_id))
_MEMBER = dbutil.DriverStatement(lambda _dialect: select(
    Member.id, Member.referred_by_id,
).join(Card, Card.member_id == Member.id).where(Card.id == bindparam("card_id")))
_LOCATION = dbutil.DriverStatement(lambda _dialect: select(ProgramLocation.id).where(
    ProgramLocation.id == bindparam("id"), ProgramLocation.program_id == bindparam("program_id")))
_AWARDS_ON = dbutil.DriverStatement(lambda _dialect: select(
    LedgerEntry.rule_id, EarningRule.name, EarningRule.kind, LedgerEntry.points,
    LedgerEntry.pending_points, LedgerEntry.id, LedgerEntry.balance_after,
).join(EarningRule, EarningRule.id == LedgerEntry.rule_id).where(
    LedgerEntry.purchase_id == bindparam("purchase_id"), LedgerEntry.kind == EntryKind.BONUS,
).order_by(LedgerEntry.id))


def _is_first_purchase(p: PostingTransaction) -> bool:
    return p.tx.first(_A_PURCHASE, {"card_id": p.card.id}) is None


def _awards_so_far(p: PostingTransaction) -> dict[int, int]:
    return {int(rule_id): int(n) for rule_id, n in p.tx.all(_AWARDS, {"card_id": p.card.id})}


def _needs_awards(rules: Iterable[Rule]) -> bool:
    return any(r.conditions.max_awards_per_member is not None for r in rules)


def check_location(p: PostingTransaction, location_id: int) -> None:
    """``Unprocessable`` unless ``location_id`` is a store of the card's program."""
    if p.tx.first(_LOCATION, {"id": location_id, "program_id": p.card.program_id}) is None:
        raise Unprocessable(
            f"The program has no location {location_id}.",
            errors=[{"location": "json", "field": "location_id",
                     "message": "Not a location of this card's program."}])


@dataclass(frozen=True)
class EarnPlan:
    """The rules an earn applies, decided under the card's lock before the earn is posted."""

    context: Context
    outcomes: list[Outcome]
    referral: list[Outcome]
    rules: dict[int, Rule]
    member_id: int | None


def plan_earn(p: PostingTransaction, points: int, *, amount: int | None,
              currency: str | None, location_id: int | None) -> EarnPlan | None:
    """Evaluate the card's program's purchase rules for an earn of ``points`` (None: the
    program has no live rule of a purchase). Call it under the lock, before the earn."""
    if not p.card.has_purchase_rules:  # read with the card's lock
        return None
    rows = p.tx.all(_PURCHASE_RULES, {"program_id": p.card.program_id})
    if not rows or rows[0][1] is None:
        return None
    zone = zone_of(rows[0][0])
    rules = [_rule(row[1:]) for row in rows]
    earn_rules = [r for r in rules if r.kind in EARN_KINDS]
    referral_rules = [r for r in rules if r.kind is RuleKind.REFERRAL]
    first = (_is_first_purchase(p)
             if referral_rules or any(r.conditions.first_purchase_only for r in earn_rules)
             else False)
    context = Context(
        at=clock_now().astimezone(zone), time_zone=zone, base_points=points,
        tier=p.card.tier_name, amount=amount, currency=currency, location_id=location_id,
        is_first_purchase=first, awards=_awards_so_far(p) if _needs_awards(rules) else {})
    referral: list[Outcome] = []
    member_id = None
    if referral_rules and first:
        row = p.tx.first(_MEMBER, {"card_id": p.card.id})
        if row is not None and row[1] is not None:
            member_id = int(row[0])
            referral = evaluate(referral_rules, context)
    return EarnPlan(context, evaluate(earn_rules, context), referral,
                    {r.id: r for r in rules}, member_id)


def award_on_earn(p: PostingTransaction, earned: Posting, plan: EarnPlan | None, *,
                  base_points: int, tiers: list[TierRule], actor: str,
                  till: AtTheTill | None = None,
                  location_id: int | None = None) -> EarnPosting:
    """Post the awards of ``plan`` on the earn ``earned`` (in its transaction): each rule's
    ``bonus`` entry names the rule and the purchase; a referee's referral points are posted
    too, and the referrer's are asked of a job that runs after the commit."""
    if earned.replayed:  # a concurrent request with the same key went first
        return replayed_earn(earned)
    awards: list[Award] = []
    last = earned
    if plan is not None:
        purchase_id = earned.entry.id
        for outcome in plan.outcomes:
            if not outcome.applies or outcome.points <= 0:
                continue
            last = p.post(EntryKind.BONUS, outcome.points, actor=actor, tiers=tiers,
                          reference=earned.entry.reference, reason=outcome.name,
                          counts_toward_tier=True, till=till, location_id=location_id,
                          rule_id=outcome.rule_id, purchase_id=purchase_id,
                          idempotency_key=f"rule:{outcome.rule_id}:earn:{purchase_id}")
            awards.append(Award(outcome.rule_id, outcome.name, outcome.kind, outcome.points,
                                last.entry.id))
        for outcome in plan.referral:
            if not outcome.applies or plan.member_id is None:
                continue
            rule = plan.rules[outcome.rule_id]
            key = f"rule:{rule.id}:referral:{plan.member_id}"
            if rule.referee_points and not p.has_entry_with_key(key):
                last = p.post(EntryKind.BONUS, rule.referee_points, actor=actor,
                              counts_toward_tier=False, rule_id=rule.id, idempotency_key=key,
                              reason=f"referral: {rule.name}", till=till,
                              location_id=location_id)
            if rule.referrer_points:
                background.enqueue_after_commit(award_referrer, rule.id, plan.member_id)
    return EarnPosting(serial_number=earned.serial_number, balance=last.balance,
                       lifetime_points=last.lifetime_points, tier=last.tier,
                       entry=earned.entry, base_points=base_points, awards=tuple(awards))


def replayed_earn(earned: Posting) -> EarnPosting:
    """An earn given again by its idempotency key, with the breakdown it had: its awards are
    the ``bonus`` entries naming it as their purchase."""
    tx = dbutil.begin_driver_transaction()
    try:
        rows = tx.all(_AWARDS_ON, {"purchase_id": earned.entry.id})
    finally:
        tx.rollback()
    awards = tuple(Award(int(r[0]), r[1], RuleKind(r[2]).value, int(r[3]) + int(r[4]), int(r[5]))
                   for r in rows)
    balance = int(rows[-1][6]) if rows else earned.balance
    entry = earned.entry
    base = entry.points + int(getattr(entry, "pending_points", 0) or 0)
    return EarnPosting(serial_number=earned.serial_number, balance=balance,
                       lifetime_points=earned.lifetime_points, tier=earned.tier, entry=entry,
                       replayed=earned.replayed, base_points=base, awards=awards)


# ---------------------------------------------------------------------------------------------
# Welcome, referral, birthday: postings of their own.

def _live_rules(program_id: int, kind: RuleKind) -> list[Rule]:
    rows = db.session.scalars(select(EarningRule).where(
        EarningRule.program_id == program_id, EarningRule.kind == kind,
        EarningRule.deleted_at.is_(None)))
    return [Rule.of(r) for r in rows]


def _post_awards(p: PostingTransaction, outcomes: Iterable[Outcome], occasion: str, *,
                 actor: str, reason: str) -> int:
    """Post each applying outcome's points as its rule's award for ``occasion`` (once: an
    award already made with its key is skipped). The number posted."""
    posted = 0
    for outcome in outcomes:
        key = f"rule:{outcome.rule_id}:{occasion}"
        if not outcome.applies or outcome.points <= 0 or p.has_entry_with_key(key):
            continue
        p.post(EntryKind.BONUS, outcome.points, actor=actor, counts_toward_tier=False,
               rule_id=outcome.rule_id, idempotency_key=key,
               reason=f"{reason}: {outcome.name}")
        posted += 1
    return posted


def award_welcome(card: Card, *, actor: str = "enrolment") -> int:
    """Give a newly enrolled ``card`` the program's welcome rules (once each: the key
    ``rule:<id>:welcome``). Commits; the number of awards."""
    program = card.program
    rules = _live_rules(card.program_id, RuleKind.WELCOME)
    if not rules:
        return 0
    zone = zone_of(program.time_zone)
    tier = card.tier.name if card.tier else None
    serial = card.serial_number
    db.session.rollback()  # the posting runs its own transaction
    with posting(serial) as p:
        awards = _awards_so_far(p) if _needs_awards(rules) else {}
        outcomes = evaluate(rules, Context(at=clock_now().astimezone(zone), time_zone=zone,
                                           tier=tier, awards=awards))
        return _post_awards(p, outcomes, "welcome", actor=actor, reason="welcome")


def award_referrer(rule_id: int, referee_member_id: int) -> None:
    """Give the referrer of ``referee_member_id`` the referral rule's ``referrer_points``,
    once (a job, after the referee's first purchase)."""
    rule = db.session.get(EarningRule, rule_id)
    referee = db.session.get(Member, referee_member_id)
    if (rule is None or rule.deleted_at is not None or not rule.referrer_points
            or not rule.enabled or referee is None or referee.referred_by_id is None):
        return
    referrer = db.session.get(Member, referee.referred_by_id)
    if referrer is None or referrer.card is None:
        return
    serial, points = referrer.card.serial_number, rule.referrer_points
    limit = parse_conditions(rule.conditions).max_awards_per_member
    code, name = referee.referral_code, rule.name
    db.session.rollback()
    key = f"rule:{rule_id}:referral:{referee_member_id}"
    try:
        with posting(serial) as p:
            if p.has_entry_with_key(key):
                return
            if limit is not None and _awards_so_far(p).get(rule_id, 0) >= limit:
                return
            p.post(EntryKind.BONUS, points, actor=REFERRAL_ACTOR, counts_toward_tier=False,
                   rule_id=rule_id, idempotency_key=key, reference=f"referral:{code}",
                   reason=f"referral: {name}")
    except CardVoided:
        log.info("referral rule %d: the referrer's card %s is voided", rule_id, serial)


def birthdays_on(day: date) -> list[tuple[int, int]]:
    """The (month, day) birthdays celebrated on ``day``: Feb 29 ones on Feb 28 of a year
    without a Feb 29."""
    dates = [(day.month, day.day)]
    if (day.month, day.day) == (2, 28) and not _leap(day.year):
        dates.append((2, 29))
    return dates


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def award_birthdays(as_of: datetime, *, batch_size: int = BIRTHDAY_BATCH) -> int:
    """Give every member whose birthday is on ``as_of``'s local date (in their program's
    time zone) the program's birthday rules, once a year (``rule:<id>:birthday:<year>``).
    Members are read ``batch_size`` at a time; each member's awards are one posting. Idempotent: run
    again, or on two workers at once, it awards nothing more. The number of awards."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime")
    programs = db.session.execute(
        select(Program.id, Program.time_zone).where(
            select(EarningRule.id).where(
                EarningRule.program_id == Program.id, EarningRule.kind == RuleKind.BIRTHDAY,
                EarningRule.deleted_at.is_(None)).exists()
        ).order_by(Program.id)).all()
    db.session.rollback()
    awarded = 0
    for program_id, zone_name in programs:
        zone = zone_of(zone_name)
        local = as_of.astimezone(zone)
        awarded += _program_birthdays(program_id, zone, local, batch_size)
    return awarded


def _program_birthdays(program_id: int, zone: ZoneInfo, local: datetime,
                       batch_size: int) -> int:
    rules = _live_rules(program_id, RuleKind.BIRTHDAY)
    db.session.rollback()
    if not rules:
        return 0
    occasion = f"birthday:{local.year}"
    month, day = extract("month", Member.birthday), extract("day", Member.birthday)
    celebrated = or_(*(and_(month == m, day == d) for m, d in birthdays_on(local.date())))
    awarded, after = 0, 0
    while True:
        batch = db.session.execute(
            select(Member.id, Card.serial_number)
            .join(Card, Card.member_id == Member.id)
            .where(Member.program_id == program_id, Member.id > after,
                   Member.birthday.is_not(None), celebrated, Card.status == CardStatus.ACTIVE)
            .order_by(Member.id).limit(batch_size)).all()
        db.session.rollback()
        for _member_id, serial in batch:
            try:
                with posting(serial) as p:
                    awards = _awards_so_far(p) if _needs_awards(rules) else {}
                    outcomes = evaluate(rules, Context(at=local, time_zone=zone,
                                                       tier=p.card.tier_name, awards=awards))
                    awarded += _post_awards(p, outcomes, occasion, actor="job:birthday",
                                            reason="birthday")
            except (CardVoided, NotFound):
                continue  # voided or gone since the batch was read
        if len(batch) < batch_size:
            return awarded
        after = batch[-1][0]


# ---------------------------------------------------------------------------------------------
# Preview: what an earn would give, writing nothing.

@dataclass(frozen=True)
class Preview:
    base_points: int
    tier: str | None
    at: datetime
    rules: list[Outcome]

    @property
    def total_points(self) -> int:
        return self.base_points + sum(o.points for o in self.rules)


def preview(program: Program, *, amount: int, currency: str, serial_number: str | None = None,
            tier: str | None = None, location_id: int | None = None,
            at: datetime | None = None, first_purchase: bool = False) -> Preview:
    """What an earn of ``amount`` would give at ``program``: for the card ``serial_number``
    (its tier, first purchase and awards so far) or for a member of ``tier``. The earn runs
    the same evaluation, so the numbers are the ones it gives at that moment."""
    errors = []
    if currency != program.currency:
        errors.append({"location": "json", "field": "currency",
                       "message": f"Must be {program.currency}."})
    tiers = {t.name: t for t in program.tiers}
    if tier is not None and tier not in tiers:
        errors.append({"location": "json", "field": "tier",
                       "message": "Not a tier of this program."})
    if location_id is not None and db.session.scalar(select(ProgramLocation.id).where(
            ProgramLocation.id == location_id, ProgramLocation.program_id == program.id)) is None:
        errors.append({"location": "json", "field": "location_id",
                       "message": "Not a location of this program."})
    card = None
    if serial_number is not None:
        card = db.session.scalar(select(Card).where(Card.serial_number == serial_number,
                                                     Card.program_id == program.id))
        if card is None:
            errors.append({"location": "json", "field": "serial_number",
                           "message": "No card of this program has this serial number."})
    if errors:
        raise Unprocessable("The preview's input does not fit this program.", errors=errors)
    tier_row = card.tier if card is not None else tiers.get(tier) if tier else None
    base = points_for_amount(program.earn_points, program.earn_amount,
                             tier_row.multiplier_percent if tier_row else 100, amount)
    if base <= 0:
        raise Unprocessable(
            f"A purchase of {amount} minor units earns no points at this program's rate.",
            errors=[{"location": "json", "field": "amount",
                     "message": "Too small to earn a point."}])
    zone = zone_of(program.time_zone)
    moment = (at or clock_now()).astimezone(zone)
    rules = [r for r in (_live_rules(program.id, RuleKind.MULTIPLIER)
                         + _live_rules(program.id, RuleKind.BONUS))]
    first, awards = first_purchase, {}
    if card is not None:
        first = db.session.execute(
            select(func.count()).select_from(_purchase_query("").subquery()),
            {"card_id": card.id}).scalar_one() == 0
        if _needs_awards(rules):
            awards = {int(r): int(n) for r, n in db.session.execute(
                select(LedgerEntry.rule_id, func.count()).where(
                    LedgerEntry.card_id == card.id, LedgerEntry.kind == EntryKind.BONUS,
                    LedgerEntry.rule_id.is_not(None)).group_by(LedgerEntry.rule_id))}
    context = Context(at=moment, time_zone=zone, base_points=base,
                      tier=tier_row.name if tier_row else None, amount=amount,
                      currency=currency, location_id=location_id, is_first_purchase=first,
                      awards=awards)
    return Preview(base, context.tier, moment, evaluate(rules, context))


# ---------------------------------------------------------------------------------------------
# Managing rules (the API's service).

RULE_FIELDS = ("name", "points", "percent", "referrer_points", "referee_points", "priority",
               "stackable", "conditions")
_POINTS_KINDS = (RuleKind.WELCOME, RuleKind.BIRTHDAY, RuleKind.BONUS)


def _problem(field_name: str, message: str) -> dict[str, str]:
    return {"location": "json", "field": field_name, "message": message}


def check(program: Program, kind: RuleKind, values: Mapping[str, Any]) -> None:
    """``Unprocessable`` naming every field at fault when ``values`` (a whole rule) do not
    make a rule of ``kind`` in ``program``."""
    errors = []
    for name in ("points", "percent", "referrer_points", "referee_points"):
        wanted = ((name == "points" and kind in _POINTS_KINDS)
                  or (name == "percent" and kind is RuleKind.MULTIPLIER)
                  or (name in ("referrer_points", "referee_points")
                      and kind is RuleKind.REFERRAL))
        given = values.get(name) is not None
        if given and not wanted:
            errors.append(_problem(name, f"A {kind.value} rule has no {name}."))
        elif not given and wanted and name in ("points", "percent"):
            errors.append(_problem(name, f"A {kind.value} rule needs {name}."))
    if kind is RuleKind.REFERRAL and not (values.get("referrer_points")
                                          or values.get("referee_points")):
        errors.append(_problem("referrer_points",
                               "A referral rule needs referrer_points, referee_points or both "
                               "(above 0)."))
    conditions = values.get("conditions") or {}
    if kind in (RuleKind.WELCOME, RuleKind.BIRTHDAY):
        errors += [_problem(f"conditions.{name}",
                            f"A {kind.value} rule is not given on a purchase.")
                   for name in PURCHASE_CONDITIONS if name in conditions]
    if kind is RuleKind.BIRTHDAY:
        errors += [_problem(f"conditions.{name}", "A birthday is a whole day.")
                   for name in ("time_from", "time_to") if name in conditions]
    unknown_tiers = set(conditions.get("tiers") or ()) - {t.name for t in program.tiers}
    if unknown_tiers:
        errors.append(_problem("conditions.tiers",
                               f"Not tiers of this program: {', '.join(sorted(unknown_tiers))}."))
    location_ids = set(conditions.get("location_ids") or ())
    if location_ids:
        known = set(db.session.scalars(select(ProgramLocation.id).where(
            ProgramLocation.program_id == program.id)))
        if location_ids - known:
            errors.append(_problem("conditions.location_ids",
                                   "Not locations of this program: "
                                   f"{', '.join(map(str, sorted(location_ids - known)))}."))
    if errors:
        raise Unprocessable(f"This is not a valid {kind.value} rule.", errors=errors)


def stored_conditions(conditions: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validated conditions as JSON (instants as ISO 8601 text, lists sorted)."""
    if not conditions:
        return None
    stored: dict[str, Any] = {}
    for name, value in conditions.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, list | tuple | set | frozenset):
            value = sorted(set(value))
        stored[name] = value
    return stored


def list_rules(program: Program) -> list[EarningRule]:
    return list(db.session.scalars(select(EarningRule).where(
        EarningRule.program_id == program.id, EarningRule.deleted_at.is_(None),
    ).order_by(EarningRule.priority.desc(), EarningRule.id)))


def get_rule(program: Program, rule_id: int) -> EarningRule:
    rule = db.session.scalar(select(EarningRule).where(
        EarningRule.id == rule_id, EarningRule.program_id == program.id))
    if rule is None:
        raise NotFound(f"Program {program.id} has no rule {rule_id}.")
    return rule


def _switched(conditions: Mapping[str, Any] | None, enabled: bool) -> dict[str, Any] | None:
    """Stored conditions with the rule switched on or off (off: ``paused`` among them)."""
    switched = {name: value for name, value in (conditions or {}).items() if name != "paused"}
    if not enabled:
        switched["paused"] = True
    return switched or None


def create_rule(program: Program, *, kind: RuleKind, enabled: bool = True,
                **values: Any) -> EarningRule:
    """Add a rule to ``program`` (see :func:`check`); ``enabled`` False: switched off.
    Commits."""
    kind = RuleKind(kind)
    check(program, kind, values)
    now = utcnow()
    conditions = _switched(stored_conditions(values.get("conditions")), enabled)
    rule = EarningRule(program_id=program.id, kind=kind, created_at=now, updated_at=now,
                       **{**values, "conditions": conditions})
    db.session.add(rule)
    db.session.flush()
    audit.record("rule.create", program_id=program.id, target=f"rule:{rule.id}",
                 details={"kind": kind.value, "enabled": enabled,
                          **{name: getattr(rule, name) for name in RULE_FIELDS}})
    db.session.commit()
    return rule


def update_rule(program: Program, rule_id: int, **changes: Any) -> EarningRule:
    """Change a live rule: the fields given replace the stored ones (``conditions`` as a
    whole; whether the rule is ``enabled`` stays unless given). Commits. ``NotFound`` for a
    deleted rule."""
    rule = get_rule(program, rule_id)
    if rule.deleted_at is not None:
        raise NotFound(f"Rule {rule_id} was deleted.")
    enabled = changes.pop("enabled", rule.enabled)
    values = {name: getattr(rule, name) for name in RULE_FIELDS}
    values.update(changes)
    if "conditions" in changes:
        values["conditions"] = stored_conditions(changes["conditions"])
    values["conditions"] = _switched(values["conditions"], enabled)
    check(program, RuleKind(rule.kind), values)
    details = {name: values[name] for name in changes}
    if enabled != rule.enabled:
        details["enabled"] = enabled
    for name in (*changes, "conditions"):
        setattr(rule, name, values[name])
    rule.updated_at = utcnow()
    audit.record("rule.update", program_id=program.id, target=f"rule:{rule.id}",
                 details=details)
    db.session.commit()
    return rule


def delete_rule(program: Program, rule_id: int) -> None:
    """Stop a rule: it applies no more; the entries it made keep naming it. Idempotent."""
    rule = get_rule(program, rule_id)
    if rule.deleted_at is None:
        rule.deleted_at = rule.updated_at = utcnow()
        audit.record("rule.delete", program_id=program.id, target=f"rule:{rule.id}",
                     details={"name": rule.name})
        db.session.commit()
