"""The members API: search a program's members, and a card's ledger, lots and wallets; send
the card link again; a member's data rights (export, erasure, consents:
:mod:`app.members.rights`). What the console's Members pages show and do
(:mod:`app.console.members`), through the same services. A program or card outside the
key's programs is 404, as one that does not exist (:mod:`app.access`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from itertools import chain, islice
from typing import Any

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import FileSchema, Schema
from flask import Response, stream_with_context
from marshmallow import ValidationError, validates_schema

from app import access, timeutil
from app.auth.models import Role
from app.auth.security import auth, current_key
from app.enrollment import links
from app.extensions import db
from app.loyalty import balances, consent, programs
from app.loyalty.models import Card, ConsentKind, EntryKind
from app.loyalty.schemas import PointsOnDayOut
from app.members import directory, exporting, rights
from app.schemas import MAX_ID, InputSchema, StrictBoolean, text
from app.wallet import devices

bp = APIBlueprint("members", __name__, url_prefix="/api/v1", tag="Members")

READERS = ["admin", "marketer"]
LIMIT = fields.Integer(load_default=directory.DEFAULT_LIMIT,
                       validate=validators.Range(1, directory.MAX_LIMIT),
                       metadata={"description": f"at most {directory.MAX_LIMIT}"})


class MemberSearchQuery(InputSchema):
    q = text(directory.MAX_QUERY, load_default="", metadata={
        "description": "a name or e-mail address (or part of one, any case), phone digits, "
        "the start of a serial number (at least 4 hex digits) or a card's short code; empty: "
        "every member"})
    after = fields.Integer(validate=validators.Range(1, MAX_ID), metadata={
        "description": "the previous page's `next_after`"})
    limit = LIMIT


class MemberCardOut(Schema):
    serial_number = fields.String()
    status = fields.String()
    balance = fields.Integer()
    lifetime_points = fields.Integer()
    tier = fields.String(allow_none=True)


class FoundMemberOut(Schema):
    id = fields.Integer()
    name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    language = fields.String()
    joined_at = fields.DateTime()
    card = fields.Nested(MemberCardOut)


class MemberPageOut(Schema):
    members = fields.List(fields.Nested(FoundMemberOut), metadata={
        "description": "newest members first"})
    next_after = fields.Integer(allow_none=True, metadata={
        "description": "pass as `after` for the next page; null on the last one"})


class LedgerQuery(InputSchema):
    before = fields.Integer(validate=validators.Range(1, MAX_ID), metadata={
        "description": "the previous page's `next_before`"})
    limit = LIMIT


class LedgerLineOut(Schema):
    id = fields.Integer()
    kind = fields.Enum(EntryKind, by_value=True)
    points = fields.Integer()
    pending_points = fields.Integer()
    balance_after = fields.Integer()
    reference = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    amount = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    actor = fields.String(metadata={"description": "`api_key:<id>`, `account:<id>`, `clock`…"})
    who = fields.String(metadata={"description": "the actor's name (a staff member's, an "
                                  "account's e-mail address, an API key's name)"})
    created_at = fields.DateTime()


class LedgerPageOut(Schema):
    entries = fields.List(fields.Nested(LedgerLineOut), metadata={
        "description": "newest first"})
    next_before = fields.Integer(allow_none=True, metadata={
        "description": "pass as `before` for the next page; null on the last one"})


class LotOut(Schema):
    id = fields.Integer()
    points = fields.Integer()
    remaining = fields.Integer()
    pending = fields.Boolean()
    available_at = fields.DateTime(metadata={"description": "when pending points become "
                                             "spendable (or became)"})
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "null: never"})
    created_at = fields.DateTime()


class LotsOut(Schema):
    available_points = fields.Integer()
    pending_points = fields.Integer()
    next_release = fields.Nested(PointsOnDayOut, allow_none=True)
    next_expiry = fields.Nested(PointsOnDayOut, allow_none=True)
    lots = fields.List(fields.Nested(LotOut), metadata={
        "description": "lots with points left: pending ones first, then by expiry"})


class AppleDeviceOut(Schema):
    device_id = fields.Integer()
    installed = fields.Boolean(metadata={"description": "the pass is on the device now"})
    registered_at = fields.DateTime(metadata={"description": "installed since"})
    removed_at = fields.DateTime(allow_none=True, metadata={
        "description": "when the pass was removed from the device (null while installed)"})


class GoogleObjectOut(Schema):
    status = fields.String(metadata={"description": "`not-created`, `not-saved`, `saved` or "
                                     "`deleted` (saved, then deleted by its holder)"})
    changed_at = fields.DateTime(allow_none=True, metadata={
        "description": "when Google last said it was saved or deleted"})
    synced_at = fields.DateTime(allow_none=True)


class DevicesOut(Schema):
    apple = fields.List(fields.Nested(AppleDeviceOut), metadata={
        "description": "devices with the pass installed now, then those it was removed "
        "from (adding it again makes a device installed again)"})
    google = fields.Nested(GoogleObjectOut)


class CardLinkOut(Schema):
    sent = fields.Boolean()
    result = fields.String(metadata={"description": "`sent`, `no-email` (the member gave "
                                     "none), `not-configured` (no `POINTPASS_SMTP_URL`) or "
                                     "`failed`"})
    link = fields.String(allow_none=True, metadata={
        "description": "the card page's URL to give the member, when not sent (admin and "
        "marketer keys only; null otherwise)"})


def _card(serial: str) -> Card:
    card = directory.card_by_serial(serial)
    access.check(card.program_id, f"card with serial number {serial!r}")
    return card


@bp.get("/programs/<int:program_id>/members")
@bp.auth_required(auth, roles=READERS)
@bp.input(MemberSearchQuery, location="query", arg_name="query")
@bp.output(MemberPageOut)
@bp.doc(summary="Search a program's members",
        description="By name or e-mail address (containing the text, any case), phone "
        "(containing its digits), serial number (starting with it) or short code (the code "
        "under the card's QR code, any case, with or without dashes). Paged, newest members "
        "first.", responses=[401, 403, 404, 422])
def search_members(program_id: int, query: dict[str, Any]) -> dict[str, Any]:
    program = programs.get(program_id)
    page = directory.search(program.id, query["q"], after=query.get("after"),
                            limit=query["limit"])
    return {"members": [_found(f) for f in page.members], "next_after": page.next_after}


def _found(found: directory.Found) -> dict[str, Any]:
    member, card = found.member, found.card
    return {"id": member.id, "name": member.name, "email": member.email,
            "phone": member.phone, "language": member.language,
            "joined_at": member.created_at,
            "card": {"serial_number": card.serial_number, "status": card.status.value,
                     "balance": card.balance, "lifetime_points": card.lifetime_points,
                     "tier": card.tier.name if card.tier else None}}


@bp.get("/cards/<serial>/ledger")
@bp.auth_required(auth, roles=READERS)
@bp.input(LedgerQuery, location="query", arg_name="query")
@bp.output(LedgerPageOut)
@bp.doc(summary="A card's ledger, newest entries first, paged", responses=[401, 403, 404, 422])
def card_ledger(serial: str, query: dict[str, Any]) -> dict[str, Any]:
    page = directory.ledger(_card(serial), before=query.get("before"), limit=query["limit"])
    return {"entries": [{**{c: getattr(line.entry, c) for c in (
        "id", "kind", "points", "pending_points", "balance_after", "reference", "reason",
        "amount", "currency", "actor", "created_at")}, "who": line.who}
        for line in page.entries], "next_before": page.next_before}


def _on_day(points: balances.PointsOnDay | None) -> dict[str, Any] | None:
    return None if points is None else {"points": points.points, "at": points.at}


@bp.get("/cards/<serial>/lots")
@bp.auth_required(auth, roles=READERS)
@bp.output(LotsOut)
@bp.doc(summary="A card's points by lot: what is pending until when, what expires when",
        responses=[401, 403, 404])
def card_lots(serial: str) -> dict[str, Any]:
    card = _card(serial)
    summary = balances.summary(card.id, timeutil.now())
    return {"available_points": summary.available, "pending_points": summary.pending,
            "next_release": _on_day(summary.next_release),
            "next_expiry": _on_day(summary.next_expiry),
            "lots": directory.open_lots(card)}


@bp.get("/cards/<serial>/devices")
@bp.auth_required(auth, roles=READERS)
@bp.output(DevicesOut)
@bp.doc(summary="The wallets holding a card: Apple devices, the Google object's state",
        responses=[401, 403, 404])
def card_devices(serial: str) -> dict[str, Any]:
    found = devices.of_card(_card(serial))
    return {"apple": found.apple,
            "google": {"status": found.google.status.value,
                       "changed_at": found.google.changed_at,
                       "synced_at": found.google.synced_at}}


@bp.post("/cards/<serial>/card-link")
@bp.auth_required(auth, roles=["admin", "marketer", "pos"])
@bp.output(CardLinkOut)
@bp.doc(summary="Send the member the link to their card page again",
        description="By e-mail, in the member's language, when `POINTPASS_SMTP_URL` is set "
        "and the member gave an address. When it is not sent, admin and marketer keys get "
        "the link to give the member; other keys get null. Recorded in the audit trail as "
        "`card.resend-link` (without the link).", responses=[401, 403, 404])
def send_card_link(serial: str) -> dict[str, Any]:
    card = _card(serial)
    result = links.send_card_link(card)
    sent = result is links.LinkSent.SENT
    may_see = current_key().role in (Role.ADMIN, Role.MARKETER)
    return {"sent": sent, "result": result.value,
            "link": links.card_page_url(card) if not sent and may_see else None}


class ExportQuery(InputSchema):
    after = fields.Integer(load_default=0, validate=validators.Range(0, MAX_ID), metadata={
        "description": "only rows with a larger id (the first column's id): to resume an "
        "interrupted download"})


def _plausible(value: Any) -> None:
    if not 1970 <= value.year <= 2999:
        raise ValidationError("Give a year from 1970 to 2999.")


class LedgerExportQuery(ExportQuery):
    from_ = fields.AwareDateTime(data_key="from", default_timezone=UTC, validate=_plausible,
                                 metadata={"description": "entries made at or after this "
                                           "time (ISO 8601; without an offset: UTC)"})
    to = fields.AwareDateTime(default_timezone=UTC, validate=_plausible, metadata={
        "description": "entries made before this time (after `from`)"})

    @validates_schema
    def _in_order(self, data: dict[str, Any], **kwargs: object) -> None:
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("`to` must be after `from`.", "to")


def _csv_download(pieces: Iterator[str], filename: str) -> Response:
    """A streamed CSV answer. The header and the first page are read before the answer
    starts, so a database that cannot answer is a problem response, not a cut-off file."""
    db.session.commit()  # the view's transaction ends here; each page reads in its own
    ready = list(islice(pieces, 2))
    body = (piece.encode() for piece in chain(ready, pieces))
    return Response(stream_with_context(body), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


CSV_FILE = FileSchema(type="string", format="binary")
INJECTION = ("Text cells starting with `=`, `+`, `-` or `@` get a leading apostrophe (so a "
             "spreadsheet does not run them as formulas). UTF-8 with a BOM; streamed a page "
             "at a time, in id order.")


@bp.get("/programs/<int:program_id>/members.csv")
@bp.auth_required(auth, roles=READERS)
@bp.input(ExportQuery, location="query", arg_name="query")
@bp.output(CSV_FILE, content_type="text/csv")
@bp.doc(summary="A program's members as CSV",
        description="One row per member with their card: "
        f"`{'`, `'.join(exporting.MEMBER_COLUMNS)}`. " + INJECTION,
        responses=[401, 403, 404, 422])
def members_csv(program_id: int, query: dict[str, Any]) -> Response:
    program = programs.get(program_id)
    return _csv_download(exporting.members_csv(program.id, after=query["after"]),
                         f"{program.slug}-members.csv")


@bp.get("/programs/<int:program_id>/ledger.csv")
@bp.auth_required(auth, roles=READERS)
@bp.input(LedgerExportQuery, location="query", arg_name="query")
@bp.output(CSV_FILE, content_type="text/csv")
@bp.doc(summary="A program's ledger as CSV",
        description="One row per ledger entry of the program's cards: "
        f"`{'`, `'.join(exporting.LEDGER_COLUMNS)}`; `from` and `to` narrow it to a time "
        "range. " + INJECTION, responses=[401, 403, 404, 422])
def ledger_csv(program_id: int, query: dict[str, Any]) -> Response:
    program = programs.get(program_id)
    return _csv_download(exporting.ledger_csv(program.id, after=query["after"],
                                              since=query.get("from_"), until=query.get("to")),
                         f"{program.slug}-ledger.csv")


# --- Data rights ------------------------------------------------------------------------------


def _section(description: str) -> fields.List:
    return fields.List(fields.Dict(), metadata={"description": description})


class MemberExportOut(Schema):
    format = fields.String(metadata={"description": f"`{rights.EXPORT_FORMAT}`"})
    exported_at = fields.String(metadata={"description": "ISO 8601, UTC"})
    member = fields.Dict(metadata={"description": "the profile: name, e-mail, phone, "
                                   "language, birthday, referral code, consents now, joined"})
    consents = _section("every consent given or withdrawn: kind (`terms`, `marketing`), "
                        "granted, wording version, source, time; oldest first")
    card = fields.Dict(allow_none=True, metadata={"description": "serial number, status, "
                                                  "balance, pending points, tier, message"})
    ledger = _section("every ledger entry of the card, oldest first")
    lots = _section("the card's points by credit, with when they become spendable or expire")
    redemptions = _section("rewards redeemed, where and when")
    badges = _section("challenges reached")
    feedback = _section("feedback invitations and their answers (score, comment)")
    devices = fields.Dict(allow_none=True, metadata={
        "description": "`apple`: devices with the pass (push token, registered, removed); "
        "`google`: the Wallet object's state"})
    wallet_events = _section("the pass added to or removed from a wallet")
    google_notifications = fields.List(fields.String(), metadata={
        "description": "when Google Wallet notified the holder"})
    campaigns = _section("campaigns sent to the card (or held out), with the outcome")
    referrals = fields.Dict(metadata={"description": "who referred the member, whom they "
                                      "referred (member ids)"})
    audit = _section("the audit trail's records about the member and their card")


class ErasureOut(Schema):
    member_id = fields.Integer()
    program_id = fields.Integer()
    serial_number = fields.String(allow_none=True, metadata={
        "description": "the card, now voided; its pass URLs answer 410 Gone"})
    erased_at = fields.DateTime()
    apple_devices_deleted = fields.Integer(metadata={
        "description": "devices (push tokens) that held only this card"})
    texts_scrubbed = fields.Integer(metadata={
        "description": "free-text values (audit details, messages, comments...) in which "
        "the member's data was found and replaced"})


class ConsentIn(InputSchema):
    kind = fields.Enum(ConsentKind, by_value=True, required=True)
    granted = StrictBoolean(required=True, metadata={"description": "false: withdrawn"})
    wording_version = text(consent.MAX_WORDING_VERSION, metadata={
        "description": "the version of the wording the member agreed to (default: the "
        "current one, e.g. `marketing-v1`)"})


class ConsentOut(Schema):
    kind = fields.Enum(ConsentKind, by_value=True)
    granted = fields.Boolean()
    wording_version = fields.String()
    source = fields.String()
    at = fields.DateTime()


class ConsentsOut(Schema):
    consent_terms = fields.Boolean()
    consent_marketing = fields.Boolean(metadata={
        "description": "campaigns and feedback prompts reach only members who gave it"})
    history = fields.List(fields.Nested(ConsentOut), metadata={"description": "oldest first"})


@bp.get("/members/<int:loyalty_member_id>/export")
@bp.auth_required(auth, roles=["admin"])
@bp.output(MemberExportOut)
@bp.doc(summary="Everything held about a member (right of access, data portability)",
        description="Profile, consent history, card, ledger, lots, redemptions, badges, "
        "feedback, wallets (Apple devices, Google object), wallet events, notifications, "
        "campaigns, referrals and the audit trail's records about them, as JSON. An erased "
        "member answers 410 `member-erased`.", responses=[401, 403, 404, 410])
def export_member(loyalty_member_id: int) -> dict[str, Any]:
    return rights.export(loyalty_member_id)


@bp.delete("/members/<int:loyalty_member_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.output(ErasureOut)
@bp.doc(summary="Erase a member's personal data (right to erasure)",
        description="In one transaction: the member becomes a pseudonymous record (name "
        f"`{rights.PSEUDONYM}`, no e-mail, phone or birthday), the card is voided and its "
        "pass URLs answer 410 Gone, Apple device registrations and push tokens are deleted, "
        "the Google Wallet object is expired, free text naming the member is scrubbed; the "
        "ledger keeps its amounts, so balances, totals and the analytics do not change. "
        "Recorded in the audit trail as `member.erase` (ids only). Erasing again answers "
        "410 `member-erased` and changes nothing.", responses=[401, 403, 404, 410])
def erase_member(loyalty_member_id: int) -> dict[str, Any]:
    erasure = rights.erase(loyalty_member_id)
    return {"member_id": erasure.member_id, "program_id": erasure.program_id,
            "serial_number": erasure.serial_number, "erased_at": erasure.erased_at,
            "apple_devices_deleted": erasure.devices_deleted,
            "texts_scrubbed": erasure.texts_scrubbed}


@bp.post("/members/<int:loyalty_member_id>/consents")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(ConsentIn, arg_name="data")
@bp.output(ConsentsOut, status_code=201)
@bp.doc(summary="Record a consent given or withdrawn",
        description="Appends to the member's consent history (source `api`) and sets the "
        "consent; withdrawing marketing consent stops campaigns and feedback prompts at "
        "once. An erased member answers 410 `member-erased`.",
        responses=[401, 403, 404, 410, 422])
def record_consent(loyalty_member_id: int, data: dict[str, Any]) -> dict[str, Any]:
    member = rights.change_consent(loyalty_member_id, data["kind"], data["granted"],
                                   source="api", wording=data.get("wording_version"))
    return {"consent_terms": member.consent_terms,
            "consent_marketing": member.consent_marketing,
            "history": consent.history(member.id)}
