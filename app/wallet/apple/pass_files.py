"""The Apple pass file of a card: what it shows, its signed bytes and its download link."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from app import timeutil
from app.auth.security import tokens_match
from app.errors import CardErased, NotFound
from app.extensions import db
from app.feedback import service as feedback
from app.loyalty import artwork, balances, branding, challenges, ledger, program_texts
from app.loyalty.codes import redemption_code, short_code
from app.loyalty.models import Card, CardStatus, EntryKind, Program
from app.loyalty.rewards import offered
from app.wallet.apple.setup import AppleWallet, apple_wallet
from app.wording import pass_wording
from passes.apple import (
    ActivityLine,
    Barcode,
    Location,
    RewardProgress,
    StoreCardContent,
    build_pkpass,
)
from passes.feedback_link import FeedbackLink
from passes.wording import N_, translations

# Bump when what a pass shows changes shape, so passes stored by an older release are rebuilt.
# 2: the recent activity is translated (per-card entries in the id/th/ms pass.strings).
# 3: the text under the QR code is the card's short code (passes.shortcode); the program's
#    own artwork, and what the member can do now over the strip; terms in the member's language.
# 4: pending points and the reminder of expiring points on the back; activity lines for
#    releases, refunds and bonuses, and for pending earns.
PASS_FORMAT = 4
ACTIVITY_LINES = 5

# What VoiceOver reads for the pass; {program} is the program's name.
CARD_DESCRIPTION = N_("{program} loyalty card")
HOW_TO_REDEEM = N_(
    "Show this card's QR code at the till and choose your reward. Points are deducted when "
    "the staff confirm."
)
# What each kind of ledger entry reads as on the pass (translated through the catalogs).
ENTRY_WORDS = {
    EntryKind.EARN: N_("Earned"),
    EntryKind.REDEEM: N_("Redeemed"),
    EntryKind.ADJUST: N_("Adjusted"),
    EntryKind.EXPIRE: N_("Expired"),
    EntryKind.REVERSE: N_("Reversed"),
    EntryKind.RELEASE: N_("Now available"),
    EntryKind.REFUND: N_("Refunded"),
    EntryKind.BONUS: N_("Bonus"),
}
# An earn or bonus whose points are pending (its ``points`` 0, its ``pending_points`` > 0).
PENDING_WORDS = {
    EntryKind.EARN: N_("Earned, pending"),
    EntryKind.BONUS: N_("Bonus, pending"),
}


@dataclass(frozen=True)
class SignedPass:
    data: bytes
    last_modified: int  # epoch seconds


def download_token(serial_number: str) -> str:
    """The unguessable part of a card's pass URL: an HMAC of its serial with the secret key."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"apple-pass:{serial_number}".encode(), hashlib.sha256).hexdigest()[:32]


def pass_url(card: Card) -> str | None:
    """Where the card's ``.pkpass`` downloads from, or ``None`` when Apple Wallet is off."""
    if apple_wallet() is None:
        return None
    base = current_app.config["BASE_URL"]
    return f"{base}/wallet/apple/{card.serial_number}/{download_token(card.serial_number)}.pkpass"


def next_reward(program: Program, balance: int) -> RewardProgress | None:
    """Progress toward the cheapest active reward the balance cannot yet pay for, and the
    dearest one it pays for now (``ready_reward``: "Es Kopi Susu ready")."""
    costs = sorted((r.points_cost, r.name) for r in offered(program))
    if not costs:
        return None
    cost, name = next(((c, n) for c, n in costs if c > balance), costs[-1])
    affordable = [n for c, n in costs if c <= balance]
    return RewardProgress(points=balance, target=cost, reward_name=name,
                          ready_reward=affordable[-1] if affordable else None)


@dataclass(frozen=True)
class CardFacts:
    """What a card's pass shows beyond the card itself: read by :func:`facts_of` for many
    cards at once, in a query per kind of fact, not per card."""

    program: dict[str, Any]  # program_content(): alike for every card of its program
    lots: balances.LotSummary
    entries: list[Any]  # rows of ledger.ACTIVITY_COLUMNS, newest first
    badges: list[dict[str, str]]
    feedback: FeedbackLink | None


def facts_of(cards: Sequence[Card]) -> dict[int, CardFacts]:
    """The :class:`CardFacts` of each of ``cards`` (by card id): six queries, however many
    cards, and each program's part built once."""
    if not cards:
        return {}
    ids = [card.id for card in cards]
    lots = balances.summaries(ids, timeutil.now())
    entries = ledger.recent_activity_of(ids, ACTIVITY_LINES)
    badges = challenges.pass_badges_of(ids)
    links = feedback.pass_links_of(cards)
    programs: dict[int, dict[str, Any]] = {}
    for card in cards:
        if card.program_id not in programs:
            programs[card.program_id] = program_content(card.program,
                                                        artwork.images_of(card.program_id))
    return {card.id: CardFacts(programs[card.program_id], lots[card.id],
                               entries.get(card.id, []), badges.get(card.id, []),
                               links.get(card.id))
            for card in cards}


def content_for(card: Card, wallet: AppleWallet,
                facts: CardFacts | None = None) -> StoreCardContent:
    """What the card's pass shows, from the points store (``facts``: read beforehand with
    :func:`facts_of`)."""
    if facts is None:
        facts = facts_of([card])[card.id]
    program = card.program
    pending, expiring = balances.pass_lines(facts.lots)
    return StoreCardContent(
        pass_type_identifier=wallet.pass_type_id,
        team_identifier=wallet.team_id,
        serial_number=card.serial_number,
        **facts.program,
        balance=card.balance,
        barcode=Barcode(redemption_code(card), alt_text=short_code(card)),
        member_name=card.member.name,
        tier=card.tier.name if card.tier else None,
        activity=[_activity_line(e) for e in facts.entries],
        badges=facts.badges,
        marketer_message=card.message,
        web_service_url=wallet.web_service_url,
        authentication_token=card.authentication_token,
        allow_insecure_web_service=wallet.allow_insecure_web_service,
        sharing_prohibited=True,
        voided=card.status is CardStatus.VOIDED,
        expiration_date=card.expires_at,
        locations=[Location(loc.latitude, loc.longitude, loc.relevant_text)
                   for loc in program.locations[:10]],
        progress=next_reward(program, card.balance),
        pending=pending,
        expiring=expiring,
        feedback=facts.feedback,
    )


def program_content(program: Any, images: Mapping[str, bytes]) -> dict[str, Any]:
    """What every card of ``program`` shows alike (its design, names, labels and texts), as
    :class:`StoreCardContent` arguments. ``program`` may be an unsaved copy (the console's
    design preview builds its pass from one); ``images`` is its uploaded artwork by kind."""
    wording = pass_wording()
    return {
        "organization_name": program.organization_name,
        "description": {lang: text.replace("{program}", program.name)
                        for lang, text in translations(CARD_DESCRIPTION, wording).items()},
        "design": branding.pass_design(program, images),
        "points_label": branding.localized_points_label(program),
        "terms": program_texts.localized(program, "terms"),
        "how_to_redeem": translations(HOW_TO_REDEEM, wording),
        "support_contact": program.support_contact,
        "wording": wording,
    }


def _activity_line(entry: Any) -> ActivityLine:
    # A reason may be longer than a line of the pass takes (500 against 120 characters).
    detail = (entry.reason or entry.reference or "").strip()[:120].strip() or None
    pending = entry.pending_points or 0
    word = ENTRY_WORDS[entry.kind]
    if entry.kind is EntryKind.RELEASE:
        points = entry.points  # pending points moved to the balance: +N once
    else:
        # A refund or reversal may take from the balance and from pending points alike.
        points = entry.points + pending
        if entry.points == 0 and pending > 0:
            word = PENDING_WORDS.get(entry.kind, word)
    return ActivityLine(entry.created_at, word, points, detail=detail)


def signed_pass(serial_number: str, token: str) -> SignedPass:
    """The card's signed pass for its current version; signs only if this version is new.

    Raises ``NotFound`` for an unknown serial, a wrong token, or when Apple Wallet is off;
    ``CardErased`` (410) for the card of an erased member.
    """
    wallet = apple_wallet()
    if wallet is None or not tokens_match(token, download_token(serial_number)):
        raise NotFound("No such pass.")
    # The hot path reads two columns on a plain connection (a third of the ORM session's
    # cost); the whole card is loaded only to build a new version.
    with db.engine.connect() as connection:
        row = connection.execute(_VERSION_QUERY, {"serial": serial_number}).one_or_none()
    if row is None:
        raise NotFound("No such pass.")
    if row.erased_at is not None:
        raise CardErased("This pass was removed at its holder's request.")
    key = store_key(serial_number, row.version, wallet)
    data = wallet.store.get(key)
    if data is not None:
        return SignedPass(data, row.last_modified)
    card = db.session.scalar(select(Card).where(Card.serial_number == serial_number))
    assert card is not None
    return pass_for(card, wallet)


_VERSION_QUERY = select(Card.version, Card.last_modified, Card.erased_at).where(
    Card.serial_number == bindparam("serial")
)


def store_key(serial_number: str, version: int, wallet: AppleWallet) -> str:
    return f"{serial_number}-{version}-{PASS_FORMAT}-{wallet.signer_fingerprint}"


def prebuild(card_ids: list[int], wallet: AppleWallet) -> int:
    """Build, sign and store the current passes of ``card_ids`` that the store lacks, just
    before their devices are pushed (``POINTPASS_PASS_PREBUILD``): the fetches that follow
    then find them made. The cards come in one query with their members, tiers and
    programs, what else their passes show in a query per kind (:func:`facts_of`), and the
    passes go to the store together. Returns how many passes it signed. Ends the session's
    transaction."""
    cards = db.session.scalars(
        select(Card).options(joinedload(Card.member), joinedload(Card.tier),
                             joinedload(Card.program))
        .where(Card.id.in_(card_ids), Card.erased_at.is_(None))).unique().all()
    keys = [store_key(card.serial_number, card.version, wallet) for card in cards]
    missing = [(card, key) for card, key, stored
               in zip(cards, keys, wallet.store.get_many(keys), strict=True) if stored is None]
    facts = facts_of([card for card, _ in missing])
    built = []
    for card, key in missing:
        wallet.signatures += 1
        built.append((key, build(card, wallet, facts[card.id]), f"{card.serial_number}-"))
    wallet.store.put_many(built)
    db.session.rollback()
    return len(built)


def build(card: Card, wallet: AppleWallet, facts: CardFacts | None = None) -> bytes:
    """The signed ``.pkpass`` of ``card`` as it is now (not stored, not counted)."""
    content = content_for(card, wallet, facts)
    images = wallet.renderer.render(content.design, content.progress)
    return build_pkpass(content, images, wallet.signer)


def pass_for(card: Card, wallet: AppleWallet) -> SignedPass:
    """The signed pass of ``card`` as it is now, from the store or freshly signed."""
    def build_counted() -> bytes:
        wallet.signatures += 1
        return build(card, wallet)

    key = store_key(card.serial_number, card.version, wallet)
    data = wallet.store.get_or_build(key, f"{card.serial_number}-", build_counted)
    return SignedPass(data, card.last_modified)
