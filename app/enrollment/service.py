"""Enrolling members: a member, their card and, where they were referred, the referrer's bonus."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import background, timeutil
from app.errors import Conflict, Unprocessable
from app.extensions import db
from app.loyalty import changes, consent, earning, ledger, rules
from app.loyalty.models import Card, Member, Program
from app.webhooks import emit as webhooks
from passes.languages import LANGUAGES

# No 0/O or 1/I: referral codes are read aloud and typed on phones.
REFERRAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERRAL_CODE_LENGTH = 8


@dataclass
class Enrollment:
    name: str
    email: str | None = None
    phone: str | None = None
    language: str | None = None
    birthday: date | None = None
    referral_code: str | None = None
    consent_marketing: bool = False
    consent_terms: bool = False
    # Where the consents were given (app.loyalty.consent.SOURCES): the join page or the API.
    consent_source: str = "api"


def new_serial_number() -> str:
    # 20 upper-case hex digits: a card's short code (passes.shortcode) finds it by the first 9.
    return secrets.token_hex(10).upper()


def new_referral_code() -> str:
    # 5 random bits per letter (the alphabet has 32): uniform, and one call to the system's
    # random source per code (an import draws one per member).
    bits = int.from_bytes(secrets.token_bytes(5))
    return "".join(REFERRAL_ALPHABET[(bits >> (5 * i)) & 31]
                   for i in range(REFERRAL_CODE_LENGTH))


def card_fields(language: str, birthday: date | None, joined_at: datetime) -> dict[str, Any]:
    """A new card's own column values: its serial number and secrets, and copies of the
    member's segment fields (language, birthday's month, joining time: never changed after
    enrolment) for segment counts. :func:`new_card` and the bulk import
    (:mod:`app.members.importing`) both make cards with it."""
    return {
        "serial_number": new_serial_number(),
        "authentication_token": secrets.token_urlsafe(24),
        "barcode_secret": secrets.token_urlsafe(32),
        "member_language": language,
        "member_birthday_month": birthday.month if birthday else None,
        "member_joined_at": joined_at,
    }


def new_card(program: Program, member: Member) -> Card:
    """The member's card (:func:`card_fields`)."""
    if member.created_at is None:
        member.created_at = timeutil.now()  # the app's clock, as the ledger's (tests move it)
    return Card(program=program, member=member,
                **card_fields(member.language, member.birthday, member.created_at))


def enroll(program: Program, data: Enrollment) -> Card:
    """Create a member and their card in ``program`` and commit; then give the card the
    program's welcome rules (:func:`app.loyalty.rules.award_welcome`).

    Raises ``Conflict`` when the e-mail address is already enrolled in the program and
    ``Unprocessable`` for an unknown referral code or language.
    """
    language = data.language or program.default_language
    if language not in LANGUAGES:
        raise Unprocessable(f"Unsupported language {language!r}.")
    email = data.email.strip().lower() if data.email else None
    if email and db.session.scalar(
        select(Member.id).where(Member.program_id == program.id, Member.email == email)
    ):
        raise Conflict("This e-mail address is already enrolled in the program.")

    referrer = None
    if data.referral_code:
        referrer = db.session.scalar(
            select(Member).where(
                Member.program_id == program.id,
                Member.referral_code == data.referral_code.strip().upper(),
            )
        )
        if referrer is None:
            raise Unprocessable(
                "Unknown referral code.",
                errors=[{"location": "json", "field": "referral_code",
                         "message": "No member of this program has this code."}],
            )

    member = Member(
        program=program,
        name=data.name.strip(),
        email=email,
        phone=data.phone,
        language=language,
        birthday=data.birthday,
        consent_marketing=data.consent_marketing,
        consent_terms=data.consent_terms,
        referral_code=new_referral_code(),
        referred_by_id=referrer.id if referrer else None,
    )
    card = new_card(program, member)
    card.tier = ledger.tier_for(list(program.tiers), 0)
    db.session.add_all([member, card])
    if referrer is not None and program.referral_bonus_points > 0:
        db.session.flush()
        background.enqueue_after_commit(credit_referral, member.id)
    db.session.flush()
    # The consents given, with their wording's version, in the enrolment's transaction.
    consent.at_join(member, source=data.consent_source)
    # Every wallet hears of the new card through the outbox: Google's object is created by
    # the drain this asks for after commit, never in this request (its save link is withheld
    # until then).
    changes.announce([card.id], new_cards=True)
    webhooks.emit(program.id, webhooks.MEMBER_CREATED, {
        "member": {"id": member.id, "name": member.name, "email": member.email,
                   "phone": member.phone, "language": member.language,
                   "consent_marketing": member.consent_marketing,
                   "referred_by_id": member.referred_by_id},
        "card": {"serial_number": card.serial_number, "tier": card.tier.name if card.tier
                 else None, "balance": 0},
        "program_id": program.id,
    }, card_serial=card.serial_number)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        # A concurrent enrollment with the same e-mail won the race.
        raise Conflict("This e-mail address is already enrolled in the program.") from exc
    # The program's welcome rules, right after the enrolment (once each, by their key).
    rules.award_welcome(card)
    return card


def credit_referral(member_id: int) -> None:
    """Give the referrer of ``member_id`` the program's referral bonus, once (a job)."""
    member = db.session.get(Member, member_id)
    if member is None or member.referred_by_id is None:
        return
    referrer = db.session.get(Member, member.referred_by_id)
    program = member.program
    if referrer is None or referrer.card is None or program.referral_bonus_points <= 0:
        return
    earning.earn(
        referrer.card.serial_number,
        points=program.referral_bonus_points,
        actor="job:referral",
        reference=f"referral:{member.referral_code}",
        idempotency_key=f"referral:{member_id}",
        apply_rules=False,  # not a purchase: no earning rule applies to it
    )
