"""The points store: programs, their rewards and tiers, members, cards and the ledger."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db, stored_enum
from app.timeutil import UTCDateTime, utcnow

CURRENCIES = {"IDR": 2, "THB": 2, "MYR": 2, "USD": 2}  # ISO 4217 minor-unit exponents


class PartOfProgram:
    """The id and program of a row that belongs to one program (a reward, a tier, a store, a
    member)."""

    # First in the table, as in the migrations (a mixin's columns come last by default).
    id: Mapped[int] = mapped_column(primary_key=True, sort_order=-2)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), index=True, sort_order=-1)


class Program(db.Model):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    organization_name: Mapped[str] = mapped_column(String(120))
    background_color: Mapped[str] = mapped_column(String(7), default="#1F2937")
    foreground_color: Mapped[str] = mapped_column(String(7), default="#FFFFFF")
    label_color: Mapped[str] = mapped_column(String(7), default="#D1D5DB")
    points_label: Mapped[str] = mapped_column(String(32), default="Points")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    # Earn rate as an integer ratio: ``earn_points`` points per ``earn_amount`` minor units.
    earn_points: Mapped[int] = mapped_column(default=1)
    earn_amount: Mapped[int] = mapped_column(BigInteger, default=100)
    default_language: Mapped[str] = mapped_column(String(2), default="en")
    referral_bonus_points: Mapped[int] = mapped_column(default=0)
    support_contact: Mapped[str | None] = mapped_column(String(200))
    terms: Mapped[str | None] = mapped_column(Text)
    # Terms and description per language: {"th": {"terms": "...", "description": "..."}};
    # see app.loyalty.program_texts for how a page or pass picks one.
    texts: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSON)
    # Bumped by every change to how the program looks (name, colours, labels): the Google
    # loyalty class is patched when it is behind.
    design_version: Mapped[int] = mapped_column(default=1, server_default="1")
    # Google cards show Google's rotating (TOTP) barcode instead of the signed code.
    google_rotating_barcode: Mapped[bool] = mapped_column(default=False, server_default="0")
    # The loyalty engine's settings (see docs/loyalty-engine.md). Points of a credit expire this
    # many days after it (None: never); members are reminded ``expiry_reminder_days`` before.
    points_expire_after_days: Mapped[int | None]
    expiry_reminder_days: Mapped[int] = mapped_column(default=14, server_default="14")
    # Points from purchases become spendable this many days after the purchase.
    pending_days: Mapped[int] = mapped_column(default=0, server_default="0")
    # A refund whose points were spent already: "clamp" takes the rest from the balance down
    # to zero, "forgive" takes only what is left of the purchase's own points. Either way the
    # entry records the shortfall, and no balance goes below zero.
    refund_shortfall: Mapped[str] = mapped_column(String(8), default="clamp",
                                                  server_default="clamp")
    # The program's IANA time zone: birthdays, days of week and local time windows of rules.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # In-card feedback (NPS): after a visit at a location, at most once per this many days per
    # member, the pass links to a one-question page (None: the program asks for none);
    # ``feedback_lock_screen``: the pass's field says so on the lock screen too.
    feedback_every_days: Mapped[int | None] = mapped_column(default=None)
    feedback_lock_screen: Mapped[bool] = mapped_column(default=False, server_default="0")
    # What 1,000 points are worth, in minor units of the program's currency (the analytics'
    # liability in money; None: not set, so no money figure).
    value_of_1000_points: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Every reward, retired ones too, in the program's order (app.loyalty.rewards says which
    # are offered).
    rewards: Mapped[list[Reward]] = relationship(
        back_populates="program", order_by="[Reward.position, Reward.id]"
    )
    tiers: Mapped[list[Tier]] = relationship(
        back_populates="program", order_by="Tier.threshold"
    )
    locations: Mapped[list[ProgramLocation]] = relationship(
        back_populates="program", order_by="ProgramLocation.id"
    )

    @property
    def current_rewards(self) -> list[Reward]:
        """The rewards not retired (active or not), in the program's order."""
        return [r for r in self.rewards if r.retired_at is None]

    __table_args__ = (
        CheckConstraint("earn_points >= 0", name="earn_points_non_negative"),
        CheckConstraint("earn_amount > 0", name="earn_amount_positive"),
        CheckConstraint("referral_bonus_points >= 0", name="referral_bonus_non_negative"),
        CheckConstraint("points_expire_after_days > 0", name="expire_after_days_positive"),
        CheckConstraint("expiry_reminder_days >= 0", name="expiry_reminder_days_non_negative"),
        CheckConstraint("pending_days >= 0", name="pending_days_non_negative"),
        CheckConstraint("refund_shortfall IN ('clamp', 'forgive')", name="refund_shortfall_kind"),
        CheckConstraint("feedback_every_days > 0", name="feedback_every_days_positive"),
        CheckConstraint("value_of_1000_points >= 0", name="value_of_1000_points_non_negative"),
    )


class Reward(PartOfProgram, db.Model):
    __tablename__ = "rewards"

    name: Mapped[str] = mapped_column(String(120))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(default=True)
    # Where the reward is listed among the program's (the console's order; lowest first).
    position: Mapped[int] = mapped_column(default=0, server_default="0")
    # A retired reward is no longer offered; it stays, for the ledger entries that name it.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    program: Mapped[Program] = relationship(back_populates="rewards")

    __table_args__ = (CheckConstraint("points_cost > 0", name="points_cost_positive"),)


class Tier(PartOfProgram, db.Model):
    __tablename__ = "tiers"

    name: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[int] = mapped_column(BigInteger)  # lifetime points earned
    # Earn multiplier in percent (150 = 1.5×), so points stay integers.
    multiplier_percent: Mapped[int] = mapped_column(default=100)

    program: Mapped[Program] = relationship(back_populates="tiers")

    __table_args__ = (
        UniqueConstraint("program_id", "threshold"),
        CheckConstraint("threshold >= 0", name="threshold_non_negative"),
        CheckConstraint("multiplier_percent >= 100", name="multiplier_at_least_100"),
    )


class ProgramLocation(PartOfProgram, db.Model):
    """A store; passes show ``relevant_text`` on the lock screen near it (Wallet uses ten)."""

    __tablename__ = "program_locations"

    name: Mapped[str] = mapped_column(String(120))
    latitude: Mapped[float]
    longitude: Mapped[float]
    relevant_text: Mapped[str | None] = mapped_column(String(200))

    program: Mapped[Program] = relationship(back_populates="locations")

    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
    )


class ProgramImage(PartOfProgram, db.Model):
    """A program's own artwork of one kind (logo, strip or icon): a normalized PNG, kept in
    the database so that every instance of the service serves and draws the same."""

    __tablename__ = "program_images"

    kind: Mapped[str] = mapped_column(String(8))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int]
    height: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("program_id", "kind"),
        CheckConstraint("kind IN ('logo', 'strip', 'icon')", name="image_kind"),
    )


class Member(PartOfProgram, db.Model):
    __tablename__ = "members"

    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(2), default="en")
    birthday: Mapped[date | None]
    consent_marketing: Mapped[bool] = mapped_column(default=False)
    consent_terms: Mapped[bool] = mapped_column(default=False)
    referral_code: Mapped[str] = mapped_column(String(16))
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The member's id in the system they were imported from (app.members.importing): an
    # import finds them again by it, so importing the same file twice changes nothing.
    external_id: Mapped[str | None] = mapped_column(String(64))
    # When the member's personal data was erased (app.members.rights): the row stays, as a
    # pseudonymous record the ledger's entries still belong to.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    program: Mapped[Program] = relationship()
    card: Mapped[Card] = relationship(back_populates="member", uselist=False)

    __table_args__ = (
        UniqueConstraint("program_id", "referral_code"),
        # One member per e-mail address in a program (NULLs are distinct on both databases).
        UniqueConstraint("program_id", "email"),
        UniqueConstraint("program_id", "external_id"),
    )


class ConsentKind(enum.StrEnum):
    TERMS = "terms"  # the program's terms and conditions
    MARKETING = "marketing"  # offers and news: campaigns and feedback (NPS) prompts


class MemberConsent(db.Model):
    """One consent given or withdrawn: which (``kind``), when, in which wording (its version,
    see app.loyalty.consent) and where (``source``: ``join-page``, ``api``, ``cli``...).
    Append-only: the member's ``consent_*`` columns hold the latest of each kind."""

    __tablename__ = "member_consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[ConsentKind] = mapped_column(stored_enum(ConsentKind, "consent_kind"))
    granted: Mapped[bool]
    wording_version: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    VOIDED = "voided"


class Card(db.Model):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    serial_number: Mapped[str] = mapped_column(String(32), unique=True)
    authentication_token: Mapped[str] = mapped_column(String(64))
    barcode_secret: Mapped[str] = mapped_column(String(64))
    barcode_version: Mapped[int] = mapped_column(default=1)
    status: Mapped[CardStatus] = mapped_column(
        stored_enum(CardStatus, "card_status"), default=CardStatus.ACTIVE
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_points: Mapped[int] = mapped_column(BigInteger, default=0)
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    # Bumped with every change to what the card's passes show, in the same transaction
    # (see app.loyalty.changes). ``last_modified`` is the pass's Last-Modified in epoch seconds:
    # it increases with every version, even when two changes fall in the same second.
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[int] = mapped_column(
        BigInteger, default=lambda: int(utcnow().timestamp())
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Which transaction last changed the pass (PostgreSQL: its xid8; SQLite: a counter), for
    # the PassKit "passes updated since" tag; see app.loyalty.changes.
    change_stamp: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    # The last rotating (TOTP) code counter redeemed: that value and older ones are used up.
    totp_last_counter: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The marketer's latest message, shown on the back of the pass.
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The latest ``created_at`` of the card's visits (earn and redeem entries), None before
    # the first: kept by the ledger's guarded update in the posting that writes the visit
    # (app.loyalty.ledger), checked by app.loyalty.invariants; segments filter on it.
    last_visit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Copies of the member's segment fields (language, birthday's month, joining time), set
    # with the card at enrolment (app.enrollment.service.new_card): a member's are never
    # changed afterwards. Segments filter on them without joining members.
    member_language: Mapped[str | None] = mapped_column(String(2))
    member_birthday_month: Mapped[int | None] = mapped_column(SmallInteger)
    member_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its member was erased (app.members.rights): the card is voided too, its pass URLs
    # answer 410 Gone and its Google object is expired.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    program: Mapped[Program] = relationship()
    member: Mapped[Member] = relationship(back_populates="card")
    tier: Mapped[Tier | None] = relationship()

    __table_args__ = (
        UniqueConstraint("member_id", "program_id"),
        # The last line of defence: no code path, however concurrent, can overdraw a card.
        CheckConstraint("balance >= 0", name="balance_non_negative"),
        CheckConstraint("lifetime_points >= 0", name="lifetime_non_negative"),
    )


class EntryKind(enum.StrEnum):
    EARN = "earn"
    REDEEM = "redeem"
    ADJUST = "adjust"
    EXPIRE = "expire"
    REVERSE = "reverse"
    RELEASE = "release"  # pending points of a lot become spendable
    REFUND = "refund"  # a returned purchase claws back what it earned
    BONUS = "bonus"  # an earning rule's award (rule_id names the rule)


class LedgerEntry(db.Model):
    """One balance change. Append-only: rows are never updated or deleted.

    ``points`` changes the card's (spendable) balance, ``pending_points`` its pending points:
    an earn whose points are pending has ``points`` 0 and ``pending_points`` > 0, and the
    ``release`` entry later moves them (``points`` +N, ``pending_points`` -N). So a card's
    balance is the sum of its entries' ``points`` and its pending points the sum of their
    ``pending_points``, each equal to what its lots hold (app.loyalty.invariants).
    """

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    kind: Mapped[EntryKind] = mapped_column(stored_enum(EntryKind, "entry_kind"))
    points: Mapped[int] = mapped_column(BigInteger)  # signed
    balance_after: Mapped[int] = mapped_column(BigInteger)
    # Who or what caused it: "api_key:<id>", "job:referral", "cli", ...
    actor: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # Hash of the request that used the idempotency key, to refuse a reused key with another body.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int | None] = mapped_column(BigInteger)  # purchase amount, minor units
    currency: Mapped[str | None] = mapped_column(String(3))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # At the till: who (a staff member signed in with a PIN), on which device, where.
    staff_member_id: Mapped[int | None] = mapped_column(ForeignKey("staff_members.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("till_devices.id"))
    location_id: Mapped[int | None] = mapped_column(ForeignKey("program_locations.id"))
    pending_points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The earning rule that awarded a ``bonus`` entry.
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("earning_rules.id"))
    # The purchase (an ``earn`` entry) a ``refund`` claws back from, or that a rule's
    # ``bonus`` was awarded on: a refund claws back in proportion what the purchase earned.
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    # A refund's points that the card no longer had (spent), so were not clawed back.
    shortfall: Mapped[int | None] = mapped_column(BigInteger)

    card: Mapped[Card] = relationship()

    __table_args__ = (
        UniqueConstraint("card_id", "idempotency_key"),
        Index("ix_ledger_entries_card_id_id", "card_id", "id"),
        Index("ix_ledger_entries_purchase_id", "purchase_id"),
        CheckConstraint("points <> 0 OR pending_points <> 0 OR kind = 'refund'",
                        name="points_non_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        CheckConstraint("shortfall >= 0", name="shortfall_non_negative"),
    )


class PointLot(db.Model):
    """The points of one credit, spent, clawed back or expired in part or whole.

    A lot is pending (not spendable, not counted for tiers) until its ``release`` entry, due at
    ``available_at``; its ``remaining`` points are then part of the balance until spent or
    until ``expires_at``. The opening lot of a card that had points before lots existed has no
    ``entry_id``.
    """

    __tablename__ = "point_lots"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[bool] = mapped_column(default=False)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the member was told that this lot's points expire soon (once).
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # A card's open lots (what a spend reads); and what tick looks for.
        Index("ix_point_lots_open", "card_id", postgresql_where=text("remaining > 0"),
              sqlite_where=text("remaining > 0")),
        Index("ix_point_lots_expiring", "expires_at",
              postgresql_where=text("remaining > 0 AND expires_at IS NOT NULL"),
              sqlite_where=text("remaining > 0 AND expires_at IS NOT NULL")),
        Index("ix_point_lots_pending", "available_at", postgresql_where=text("pending"),
              sqlite_where=text("pending")),
        Index("ix_point_lots_entry_id", "entry_id"),
        CheckConstraint("points > 0", name="lot_points_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="lot_remaining_in_range"),
    )


class LotConsumption(db.Model):
    """What a debit (redeem, negative adjust, expiry, refund, reversal of an earn) took from
    which lot."""

    __tablename__ = "lot_consumptions"

    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("point_lots.id"), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_lot_consumptions_lot_id", "lot_id"),
        CheckConstraint("points > 0", name="consumed_points_positive"),
    )


class RuleKind(enum.StrEnum):
    WELCOME = "welcome"  # points on enrolment
    BIRTHDAY = "birthday"  # points once a year on the member's birthday (program's time zone)
    REFERRAL = "referral"  # to referrer and/or referee, after the referee's first purchase
    MULTIPLIER = "multiplier"  # percent of an earn's points on top (200: twice the points)
    BONUS = "bonus"  # fixed points on a qualifying earn


class EarningRule(PartOfProgram, db.Model):
    """A bonus or earning rule. Deleting one sets ``deleted_at``: the ledger keeps naming it."""

    __tablename__ = "earning_rules"

    kind: Mapped[RuleKind] = mapped_column(stored_enum(RuleKind, "rule_kind"))
    name: Mapped[str] = mapped_column(String(120))
    points: Mapped[int | None] = mapped_column(BigInteger)  # welcome, birthday, bonus
    percent: Mapped[int | None]  # multiplier: 200 = 2x (the earn's points again on top)
    referrer_points: Mapped[int | None] = mapped_column(BigInteger)
    referee_points: Mapped[int | None] = mapped_column(BigInteger)
    # Higher runs first; a rule that applies with ``stackable`` False stops the rules below it.
    priority: Mapped[int] = mapped_column(default=0)
    stackable: Mapped[bool] = mapped_column(default=True)
    # {"tiers": [...names], "location_ids": [...], "min_amount": int, "days_of_week": [1..7],
    #  "time_from": "HH:MM", "time_to": "HH:MM", "starts_at": iso, "ends_at": iso,
    #  "first_purchase_only": bool, "max_awards_per_member": int}; see app.loyalty.rules.
    conditions: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def enabled(self) -> bool:
        """False while switched off (``paused`` among its conditions): it applies to nothing."""
        return not (self.conditions or {}).get("paused")

    @property
    def own_conditions(self) -> dict | None:
        """The conditions as given (without the switch): what the API shows."""
        own = {k: v for k, v in (self.conditions or {}).items() if k != "paused"}
        return own or None

    __table_args__ = (
        CheckConstraint("points > 0", name="rule_points_positive"),
        CheckConstraint("percent > 100", name="rule_percent_above_100"),
        CheckConstraint("referrer_points >= 0 AND referee_points >= 0",
                        name="referral_points_non_negative"),
    )



class ChallengeKind(enum.StrEnum):
    VISITS = "visits"  # ``target`` visits (earns and redemptions)
    REWARDS = "rewards"  # ``target`` different rewards redeemed
    LOCATIONS = "locations"  # visits at ``target`` different locations


class Challenge(PartOfProgram, db.Model):
    """A goal a member reaches by visiting (``kind``, ``target``, within ``window_days`` days
    when given, else ever). Reaching it gives the card the challenge's badge once, and its
    ``bonus_points`` (if any) as a ``bonus`` entry with idempotency key
    ``challenge:<id>`` (so once per card). ``texts``: the name in other languages
    (``{"th": "..."}``). Retired challenges award nothing more; badges stay."""

    __tablename__ = "challenges"

    name: Mapped[str] = mapped_column(String(120))
    texts: Mapped[dict[str, str] | None] = mapped_column(JSON)
    kind: Mapped[ChallengeKind] = mapped_column(stored_enum(ChallengeKind, "challenge_kind"))
    target: Mapped[int]
    window_days: Mapped[int | None]
    bonus_points: Mapped[int | None] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("target > 0", name="target_positive"),
        CheckConstraint("window_days > 0", name="window_days_positive"),
        CheckConstraint("bonus_points > 0", name="bonus_points_positive"),
    )


class CardBadge(db.Model):
    """A challenge a card reached, when, and the ``bonus`` entry that paid its points."""

    __tablename__ = "card_badges"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"))
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id"))
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))

    __table_args__ = (UniqueConstraint("card_id", "challenge_id"),
                      Index("ix_card_badges_challenge_id_earned_at", "challenge_id",
                            "earned_at"))
