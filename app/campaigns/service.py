"""Campaigns: create, change, dry-run, send (now or when scheduled), cancel, and results.

Sending fixes the recipients first, in one statement: every card of the segment at that
moment whose member consented to marketing (``consent_marketing``; app.loyalty.consent) gets
a row in ``campaign_recipients``, held out when the hash of the campaign's id and
the card's id falls below the holdout percentage (deterministic: the same campaign holds out
the same cards, whichever run computes it). Then, batch by batch, each recipient not held out
gets the bonus (a ``bonus`` ledger entry whose idempotency key is the campaign: at most one per
card, however often a batch is retried) and the message on its card; the cards are marked
changed, so the outbox tells their wallets, counted against the campaign's pass update. Each
recipient's outcome is recorded in the batch's transaction, so a send that stops resumes
with the recipients left.

The message: the card's message is the lock-screen text, then the back text (Wallet's change
message on the pass's message field shows the new text on the lock screen), in the member's
language (else the program's default language, else the first one given).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, and_, cast, false, func, insert, literal, select, update

from app import audit, background
from app.campaigns import segments
from app.campaigns.models import Campaign, CampaignStatus, Recipient
from app.errors import CardVoided, Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty import changes, ledger
from app.loyalty.models import Card, CardStatus, EntryKind, LedgerEntry, Member, Program
from app.outbox.models import PassUpdate, UpdateStatus
from app.timeutil import now as clock_now
from app.webhooks import emit as webhooks

log = logging.getLogger("pointpass.campaigns")

BATCH = 500
STALLED_SECONDS = 300  # a send without progress this long is resumed by the sweep
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
_MULTIPLIER = 2654435761  # Knuth's multiplicative hash
_SPREAD = 1000003


def holdout_bucket(campaign_id: Any, card_id: Any) -> Any:
    """The card's bucket, 0..99, in the campaign (SQL on columns, or Python on ints): held
    out when below the holdout percentage."""
    if not isinstance(card_id, int):  # SQL: 64-bit arithmetic on both databases
        card_id = cast(card_id, BigInteger)
        campaign_id = cast(campaign_id, BigInteger)
    # Kept below 2**31 before the multiplication, so the product fits in 64 bits.
    mixed = (card_id * 40503 + campaign_id * _SPREAD) % 2147483648
    # The hash's high bits (the low ones of a multiplicative hash follow the id's pattern).
    return mixed * _MULTIPLIER % 4294967296 * 100 // 4294967296


def get(program: Program, campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.program_id != program.id:
        raise NotFound(f"No campaign with id {campaign_id}.")
    return campaign


def list_campaigns(program: Program) -> list[Campaign]:
    return list(db.session.scalars(select(Campaign).where(Campaign.program_id == program.id)
                                   .order_by(Campaign.id.desc())))


def _check_messages(messages: dict[str, dict[str, str]]) -> None:
    if not messages or not any(m.get("lock_screen") or m.get("back")
                               for m in messages.values()):
        raise Unprocessable("Give a message in at least one language.")


def create(program: Program, *, name: str, segment: segments.Segment,
           messages: dict[str, dict[str, str]], bonus_points: int | None = None,
           holdout_percent: int = 0, scheduled_at: datetime | None = None) -> Campaign:
    """A new draft campaign (committed; audited ``campaign.create``)."""
    segments.check(program, segment)
    _check_messages(messages)
    campaign = Campaign(program_id=program.id, name=name, segment=segment.as_json(),
                        messages=messages, bonus_points=bonus_points or None,
                        holdout_percent=holdout_percent, scheduled_at=scheduled_at,
                        status=CampaignStatus.DRAFT)
    db.session.add(campaign)
    db.session.flush()
    audit.record("campaign.create", program_id=program.id, target=f"campaign:{campaign.id}",
                 details={"name": name, "holdout_percent": holdout_percent,
                          "bonus_points": bonus_points})
    db.session.commit()
    return campaign


def update_campaign(program: Program, campaign_id: int, **fields: Any) -> Campaign:
    """Change a draft or scheduled campaign (committed; audited ``campaign.update``)."""
    campaign = get(program, campaign_id)
    if campaign.status not in EDITABLE:
        raise Conflict(f"A {campaign.status.value} campaign cannot be changed.")
    changed = sorted(fields)
    # Every check before any change: a refused update leaves the campaign as it was.
    if "messages" in fields:
        _check_messages(fields["messages"])
    if "segment" in fields:
        segment = fields.pop("segment")
        segments.check(program, segment)
        campaign.segment = segment.as_json()
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.updated_at = clock_now()
    audit.record("campaign.update", program_id=program.id, target=f"campaign:{campaign.id}",
                 details={"fields": changed})
    db.session.commit()
    return campaign


@dataclass(frozen=True)
class DryRun:
    """Who would get what if the campaign were sent now."""

    recipients: int
    held_out: int
    would_receive: int
    bonus_points_each: int
    bonus_points_total: int
    by_language: dict[str, int]
    sample: list[dict[str, Any]]


def _recipients_now(campaign: Campaign, program: Program) -> Any:
    """The segment's cards now whose members consented to marketing, with whether each is
    held out (a subquery)."""
    ids = segments.card_ids(program, segments.Segment.from_json(campaign.segment)).subquery()
    held = holdout_bucket(literal(campaign.id), ids.c.id) < campaign.holdout_percent
    return (select(ids.c.id.label("card_id"), held.label("held_out"))
            .join(Card, Card.id == ids.c.id).join(Member, Member.id == Card.member_id)
            .where(Member.consent_marketing.is_(True)).subquery())


def dry_run(program: Program, campaign_id: int, sample_size: int = 10) -> DryRun:
    """Count who would get the campaign (and who is held out), by language, with a sample."""
    campaign = get(program, campaign_id)
    rows = _recipients_now(campaign, program)
    total, held = db.session.execute(select(
        func.count(), func.coalesce(func.sum(rows.c.held_out.cast(db.Integer)), 0))).one()
    by_language = dict(db.session.execute(
        select(Member.language, func.count()).select_from(rows)
        .join(Card, Card.id == rows.c.card_id).join(Member, Member.id == Card.member_id)
        .where(rows.c.held_out.is_(False)).group_by(Member.language)).all())
    sample = [{"serial_number": serial, "member_name": name, "language": language,
               "held_out": bool(held_out), "message": _message_for(campaign, program, language),
               "bonus_points": 0 if held_out else (campaign.bonus_points or 0)}
              for serial, name, language, held_out in db.session.execute(
                  select(Card.serial_number, Member.name, Member.language, rows.c.held_out)
                  .select_from(rows).join(Card, Card.id == rows.c.card_id)
                  .join(Member, Member.id == Card.member_id).order_by(Card.id)
                  .limit(sample_size))]
    receive = int(total) - int(held)
    bonus = campaign.bonus_points or 0
    db.session.rollback()
    return DryRun(int(total), int(held), receive, bonus, bonus * receive,
                  {k: int(v) for k, v in by_language.items()}, sample)


def _message_for(campaign: Campaign, program: Program, language: str) -> str:
    messages = campaign.messages
    chosen = messages.get(language) or messages.get(program.default_language) \
        or next(iter(messages.values()))
    return "\n".join(part for part in (chosen.get("lock_screen"), chosen.get("back")) if part)


def send(program: Program, campaign_id: int) -> Campaign:
    """Send now, or at ``scheduled_at`` when that is still ahead (committed; audited
    ``campaign.send``). The send runs as a background job."""
    campaign = get(program, campaign_id)
    if campaign.status not in EDITABLE:
        raise Conflict(f"A {campaign.status.value} campaign cannot be sent.")
    at = clock_now()
    due = campaign.scheduled_at is None or campaign.scheduled_at <= at
    campaign.status = CampaignStatus.SENDING if due else CampaignStatus.SCHEDULED
    campaign.updated_at = at
    audit.record("campaign.send", program_id=program.id, target=f"campaign:{campaign.id}",
                 details={"scheduled_at": None if due else campaign.scheduled_at.isoformat()})
    if due:
        background.enqueue_after_commit(run, campaign.id)
    db.session.commit()
    return campaign


def cancel(program: Program, campaign_id: int) -> Campaign:
    """Cancel a campaign not sent yet; a sending one stops after its current batch
    (committed; audited ``campaign.cancel``)."""
    campaign = get(program, campaign_id)
    if campaign.status in (CampaignStatus.SENT, CampaignStatus.CANCELLED):
        raise Conflict(f"A {campaign.status.value} campaign cannot be cancelled.")
    campaign.status = CampaignStatus.CANCELLED
    campaign.cancelled_at = campaign.updated_at = clock_now()
    audit.record("campaign.cancel", program_id=program.id, target=f"campaign:{campaign.id}")
    db.session.commit()
    return campaign


def start_due() -> int:
    """Start the scheduled campaigns whose time has come (the periodic sweep calls this)."""
    at = clock_now()
    ids = list(db.session.scalars(
        select(Campaign.id).where(Campaign.status == CampaignStatus.SCHEDULED,
                                  Campaign.scheduled_at <= at)))
    started = 0
    for campaign_id in ids:
        claimed = db.session.execute(
            update(Campaign).where(Campaign.id == campaign_id,
                                   Campaign.status == CampaignStatus.SCHEDULED)
            .values(status=CampaignStatus.SENDING, updated_at=at)
            .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        if claimed:
            background.enqueue_after_commit(run, campaign_id, coalesce=f"campaign:{campaign_id}")
            started += 1
    # Sends that stopped (a dead worker: no progress for a while) resume too; run() does only
    # what is left, and a bonus is given once however many runs overlap.
    for campaign_id in db.session.scalars(select(Campaign.id).where(
            Campaign.status == CampaignStatus.SENDING,
            Campaign.updated_at <= at - timedelta(seconds=STALLED_SECONDS))):
        background.enqueue_after_commit(run, campaign_id, coalesce=f"campaign:{campaign_id}")
    db.session.commit()
    return started


def _fix_recipients(campaign_id: int) -> Campaign | None:
    """Write the recipients once (with the campaign's pass update); None unless sending."""
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None or campaign.status is not CampaignStatus.SENDING:
        db.session.rollback()
        return None
    if campaign.started_at is not None:
        return campaign
    program = db.session.get(Program, campaign.program_id)
    rows = _recipients_now(campaign, program)
    db.session.execute(insert(Recipient).from_select(
        ["campaign_id", "card_id", "held_out"],
        select(literal(campaign.id), rows.c.card_id, rows.c.held_out)))
    total, held = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Recipient.held_out.cast(db.Integer)), 0))
        .where(Recipient.campaign_id == campaign.id)).one()
    pass_update = PassUpdate(program_id=program.id, message=None,
                             requested_by=f"campaign:{campaign.id}",
                             status=UpdateStatus.PUSHING,
                             cards_total=int(total) - int(held), last_card_id=-1)
    db.session.add(pass_update)
    db.session.flush()
    campaign.pass_update_id = pass_update.id
    campaign.recipients_total, campaign.held_out_total = int(total), int(held)
    campaign.started_at = clock_now()
    db.session.commit()
    return campaign


def run(campaign_id: int) -> None:
    """Send the campaign to the recipients left, batch by batch (a job; safe to rerun)."""
    campaign = _fix_recipients(campaign_id)
    if campaign is None:
        return
    while _send_batch(campaign_id):
        pass


def _send_batch(campaign_id: int) -> bool:
    """Give the next batch of recipients their bonus and message; False when none is left
    (the campaign is then ``sent``) or the campaign was cancelled."""
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None or campaign.status is not CampaignStatus.SENDING:
        db.session.rollback()
        return False
    program = db.session.get(Program, campaign.program_id)
    batch = db.session.execute(
        select(Recipient.card_id, Recipient.held_out, Card.serial_number, Card.status,
               Member.language, Member.consent_marketing)
        .join(Card, Card.id == Recipient.card_id).join(Member, Member.id == Card.member_id)
        .where(Recipient.campaign_id == campaign_id, Recipient.outcome.is_(None))
        .order_by(Recipient.card_id).limit(BATCH)).all()
    if not batch:
        finished_at = clock_now()
        # Guarded: of two runs finishing at once, one finishes it (and tells the webhooks).
        finished = db.session.execute(
            update(Campaign).where(Campaign.id == campaign_id,
                                   Campaign.status == CampaignStatus.SENDING)
            .values(status=CampaignStatus.SENT, sent_at=finished_at, updated_at=finished_at)
            .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        if finished:
            webhooks.emit(campaign.program_id, webhooks.CAMPAIGN_FINISHED, {"campaign": {
                "id": campaign.id, "name": campaign.name, "sent_at": finished_at.isoformat(),
                "recipients_total": campaign.recipients_total,
                "held_out_total": campaign.held_out_total, "sent_total": campaign.sent_total,
                "skipped_total": campaign.skipped_total,
                "bonus_points": campaign.bonus_points}})
        db.session.commit()
        return False
    bonus = campaign.bonus_points or 0
    name, update_id = campaign.name, campaign.pass_update_id
    db.session.rollback()  # the postings below have transactions of their own
    outcomes: dict[int, str] = {}
    for card_id, held_out, serial, status, _language, consented in batch:
        if held_out:
            outcomes[card_id] = "held_out"
        elif status is not CardStatus.ACTIVE or not consented:
            # Voided, or the member withdrew marketing consent after the send began.
            outcomes[card_id] = "skipped"
        elif bonus:
            try:
                ledger_bonus(serial, bonus, campaign_id, name)
                outcomes[card_id] = "sent"
            except CardVoided:
                outcomes[card_id] = "skipped"
        else:
            outcomes[card_id] = "sent"
    now = clock_now()
    by_language: dict[str, list[int]] = {}
    for card_id, _held, _serial, _status, language, _consented in batch:
        if outcomes[card_id] == "sent":
            by_language.setdefault(language, []).append(card_id)
    campaign = db.session.get(Campaign, campaign_id)
    for language, ids in by_language.items():
        changes.touch_cards(and_(Card.id.in_(ids), Card.status == CardStatus.ACTIVE),
                            update_id, message=_message_for(campaign, program, language))
    for outcome in ("sent", "held_out", "skipped"):
        ids = [card_id for card_id, found in outcomes.items() if found == outcome]
        if ids:
            db.session.execute(update(Recipient).where(
                Recipient.campaign_id == campaign_id, Recipient.card_id.in_(ids))
                .values(outcome=outcome, done_at=now)
                .execution_options(synchronize_session=False))
    counts = {o: sum(1 for found in outcomes.values() if found == o) for o in ("sent", "skipped")}
    db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
        sent_total=Campaign.sent_total + counts["sent"],
        skipped_total=Campaign.skipped_total + counts["skipped"], updated_at=now)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return True


def ledger_bonus(serial: str, points: int, campaign_id: int, name: str) -> None:
    """The campaign's bonus on one card: once, whatever the retries (idempotency key)."""
    key = f"campaign:{campaign_id}"
    request_fp = ledger.fingerprint(op="campaign-bonus", points=points, campaign=campaign_id)
    with ledger.posting(serial, key, request_fp) as p:
        if p.replay is not None:
            return
        p.post(EntryKind.BONUS, points, actor=key, reason=name[:500])


@dataclass(frozen=True)
class Group:
    members: int
    redeemers: int
    redemptions: int
    visitors: int
    visits: int


@dataclass(frozen=True)
class Results:
    status: str
    recipients: int
    held_out: int
    sent: int
    skipped: int
    devices_reached: int
    failures: int
    campaign_group: Group
    holdout_group: Group
    since: datetime | None


def results(program: Program, campaign_id: int) -> Results:
    """Devices reached and failures (from the outbox's counts), and redemptions and visits
    since the send by the campaign group versus the holdout group."""
    campaign = get(program, campaign_id)
    pass_update = db.session.get(PassUpdate, campaign.pass_update_id) \
        if campaign.pass_update_id else None
    groups = {}
    for held in (False, True):
        members = db.session.scalar(select(func.count()).where(
            Recipient.campaign_id == campaign.id, Recipient.held_out.is_(held))) or 0
        stats = {}
        for kind in (EntryKind.REDEEM, None):
            kinds = [EntryKind.REDEEM] if kind else [EntryKind.EARN, EntryKind.REDEEM]
            query = (select(func.count(), func.count(LedgerEntry.card_id.distinct()))
                     .select_from(Recipient).join(LedgerEntry,
                                                  LedgerEntry.card_id == Recipient.card_id)
                     .where(Recipient.campaign_id == campaign.id,
                            Recipient.held_out.is_(held), LedgerEntry.kind.in_(kinds)))
            if campaign.started_at is not None:
                query = query.where(LedgerEntry.created_at >= campaign.started_at)
            else:
                query = query.where(false())
            stats[kind] = db.session.execute(query).one()
        groups[held] = Group(int(members), int(stats[EntryKind.REDEEM][1]),
                             int(stats[EntryKind.REDEEM][0]), int(stats[None][1]),
                             int(stats[None][0]))
    db.session.rollback()
    return Results(campaign.status.value, campaign.recipients_total, campaign.held_out_total,
                   campaign.sent_total, campaign.skipped_total,
                   pass_update.devices_pushed if pass_update else 0,
                   pass_update.failures if pass_update else 0, groups[False], groups[True],
                   campaign.started_at)
