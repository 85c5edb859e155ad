"""The loyalty API: programs, rewards, tiers, members, cards, earning, adjusting, refunds.

It lives above the domains it composes (see ``app.api``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from apiflask import APIBlueprint, fields
from flask import url_for

from app import access, timeutil
from app.auth.security import ALL_ROLES, actor, auth
from app.enrollment import service as enrollment
from app.errors import CardErased
from app.loyalty import (
    balances,
    cards,
    challenges,
    earning,
    ledger,
    programs,
    refunds,
    rewards,
)
from app.loyalty.models import Card, Member, Program, Reward, Tier
from app.loyalty.schemas import (
    SETTINGS_CHANGES,
    AdjustIn,
    CardDetailOut,
    CardOut,
    DesignIn,
    EarnIn,
    EarnOut,
    IdempotencyHeader,
    LocationIn,
    LocationList,
    LocationOut,
    LocationPatchIn,
    MemberIn,
    MemberOut,
    PostingOut,
    ProgramIn,
    ProgramList,
    ProgramOut,
    RefundIn,
    RefundOut,
    RequiredIdempotencyHeader,
    RewardIn,
    RewardList,
    RewardOrderIn,
    RewardOut,
    RewardPatchIn,
    TierIn,
    TierList,
    TierOut,
    TierPatchIn,
    VoidIn,
)
from app.wallet.apple import pass_files as apple_passes
from app.wallet.google import links as google_links

bp = APIBlueprint("loyalty", __name__, url_prefix="/api/v1", tag="Loyalty")

CONTRAST_RULE = (
    "`foreground_color` and `label_color` each need a WCAG AA contrast of at least 4.5:1 on "
    "`background_color`; a pair below it is 422 `low-contrast`, naming the pair and its "
    "ratio in `errors`.")


def _points_on_day(points: balances.PointsOnDay | None) -> dict[str, Any] | None:
    return None if points is None else {"points": points.points, "at": points.at}


def card_body(card: Card) -> dict[str, Any]:
    """What the API says about a card: the links are filled in by the wallet modules."""
    lots = balances.summary(card.id, timeutil.now())
    return {
        "serial_number": card.serial_number,
        "status": card.status.value,
        "balance": card.balance,
        "available_points": lots.available,
        "pending_points": lots.pending,
        "next_release": _points_on_day(lots.next_release),
        "next_expiry": _points_on_day(lots.next_expiry),
        "lifetime_points": card.lifetime_points,
        "tier": card.tier.name if card.tier else None,
        "program_id": card.program_id,
        "apple_pass_url": apple_passes.pass_url(card),
        "google_save_url": google_links.save_url(card),
    }


def _posting_response(posting: ledger.Posting) -> tuple[ledger.Posting, int, dict[str, str]]:
    headers = {"Idempotent-Replayed": "true"} if posting.replayed else {}
    return posting, 201, headers


@bp.post("/programs")
@bp.auth_required(auth, roles=["admin"])
@bp.input(ProgramIn, arg_name="data")
@bp.output(ProgramOut, status_code=201)
@bp.doc(summary="Create a program", description=CONTRAST_RULE + " " + SETTINGS_CHANGES +
        "\n\nA key limited to some programs cannot create one (403 `needs-every-program`).",
        responses=[401, 403, 409, 422])
def create_program(data: dict[str, Any]) -> Program:
    access.require_every_program("Creating a program")
    return programs.create(**data)


@bp.get("/programs")
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(ProgramList)
@bp.doc(summary="List programs",
        description="Only the programs the key reaches (every one for a key not limited to "
        "some).", responses=[401])
def list_programs() -> dict[str, Any]:
    return {"programs": programs.reachable_programs()}


@bp.get("/programs/<int:program_id>")
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(ProgramOut)
@bp.doc(summary="Get a program", responses=[401, 404])
def get_program(program_id: int) -> Program:
    return programs.get(program_id)


class ProgramChangeOut(ProgramOut):
    pass_update = fields.String(allow_none=True, metadata={
        "description": "URL of the pass update telling every card of the change; null when "
                       "nothing the passes show changed"})


class _ProgramChanged:
    """The changed program, as ``ProgramChangeOut`` reads it."""

    def __init__(self, program: Program, pass_update: str | None) -> None:
        self._program = program
        self.pass_update = pass_update

    def __getattr__(self, name: str) -> Any:
        return getattr(self._program, name)


@bp.patch("/programs/<int:program_id>")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(DesignIn, arg_name="data")
@bp.output(ProgramChangeOut)
@bp.doc(summary="Change a program's design (every card's passes follow) or settings",
        description=CONTRAST_RULE + " A change of one colour is checked against the others "
        "as stored. " + SETTINGS_CHANGES + " When the passes change, `pass_update` is the "
        "URL of the update telling every card, chunk by chunk: GET it for progress and the "
        "estimated finish. A change of what Google Wallet keeps on the loyalty class "
        "(background colour, organization name, logo, hero image) is one PATCH of the class, "
        "not one per object.",
        responses=[401, 403, 404, 422])
def update_program(program_id: int, data: dict[str, Any]) -> Any:
    program = programs.get(program_id)
    pass_update = programs.change_and_tell(program, **data)
    return _ProgramChanged(program, None if pass_update is None else url_for(
        "wallet_updates.get_update", update_id=pass_update.id))


@bp.post("/programs/<int:program_id>/rewards")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(RewardIn, arg_name="data")
@bp.output(RewardOut, status_code=201)
@bp.doc(summary="Add a reward", responses=[401, 403, 404, 422])
def create_reward(program_id: int, data: dict[str, Any]) -> Any:
    return programs.add_reward(programs.get(program_id), **data)


@bp.post("/programs/<int:program_id>/tiers")
@bp.auth_required(auth, roles=["admin"])
@bp.input(TierIn, arg_name="data")
@bp.output(TierOut, status_code=201)
@bp.doc(summary="Add a tier", responses=[401, 403, 404, 409, 422])
def create_tier(program_id: int, data: dict[str, Any]) -> Any:
    return programs.add_tier(programs.get(program_id), **data)


REWARDS = "/programs/<int:program_id>/rewards"
TIERS = "/programs/<int:program_id>/tiers"
RETIRED = ("A retired reward is no longer offered anywhere (the pass, the join and card "
           "pages, the till; redeeming it is 409 `reward-retired`) but stays, so ledger "
           "entries and redemptions keep its name; it cannot change or come back.")


@bp.get(REWARDS)
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(RewardList)
@bp.doc(summary="List a program's rewards, retired ones too (with `retired_at`)",
        description="Current rewards in the program's order, then retired ones. " + RETIRED,
        responses=[401, 404])
def list_rewards(program_id: int) -> dict[str, Any]:
    program = programs.get(program_id)
    return {"rewards": rewards.current(program) + rewards.retired(program)}


@bp.patch(REWARDS + "/<int:reward_id>")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(RewardPatchIn, arg_name="data")
@bp.output(RewardOut)
@bp.doc(summary="Change a reward's name, cost or whether it is offered (passes follow)",
        description="409 `reward-retired` for a retired reward.",
        responses=[401, 403, 404, 409, 422])
def update_reward(program_id: int, reward_id: int, data: dict[str, Any]) -> Reward:
    return rewards.edit(programs.get(program_id), reward_id, **data)


@bp.post(REWARDS + "/<int:reward_id>/retire")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.output(RewardOut)
@bp.doc(summary="Retire a reward for good (passes follow)",
        description=RETIRED + " 409 `reward-retired` when it is retired already.",
        responses=[401, 403, 404, 409])
def retire_reward(program_id: int, reward_id: int) -> Reward:
    return rewards.retire(programs.get(program_id), reward_id)


@bp.put(REWARDS + "/order")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(RewardOrderIn, arg_name="data")
@bp.output(RewardList)
@bp.doc(summary="Put a program's rewards in a new order",
        description="`reward_ids` names every reward that is not retired, each once; "
        "otherwise 422. The answer lists the current rewards in their new order.",
        responses=[401, 403, 404, 422])
def reorder_rewards(program_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"rewards": rewards.reorder(programs.get(program_id), data["reward_ids"])}


@bp.get(TIERS)
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(TierList)
@bp.doc(summary="List a program's tiers", responses=[401, 404])
def list_tiers(program_id: int) -> dict[str, Any]:
    return {"tiers": programs.get(program_id).tiers}


@bp.patch(TIERS + "/<int:tier_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.input(TierPatchIn, arg_name="data")
@bp.output(TierOut)
@bp.doc(summary="Change a tier (a new threshold moves every card to the tier it reaches)",
        description="A new name is carried into the rules whose conditions name the tier. "
        "409 `base-tier`: the tier at 0 points stays at 0; 409 `tier-threshold-taken`: "
        "another tier has that threshold.", responses=[401, 403, 404, 409, 422])
def update_tier(program_id: int, tier_id: int, data: dict[str, Any]) -> Tier:
    return rewards.edit_tier(programs.get(program_id), tier_id, **data)


@bp.delete(TIERS + "/<int:tier_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a tier: its cards move to the tier their lifetime points reach",
        description="409 `base-tier` for the tier at 0 points; 409 `tier-in-use` while an "
        "earning rule names it in its conditions.", responses=[401, 403, 404, 409])
def delete_tier(program_id: int, tier_id: int) -> tuple[str, int]:
    rewards.delete_tier(programs.get(program_id), tier_id)
    return "", 204


@bp.post("/programs/<int:program_id>/locations")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(LocationIn, arg_name="data")
@bp.output(LocationOut, status_code=201)
@bp.doc(summary="Add a store location (passes show the first ten)",
        responses=[401, 403, 404, 422])
def create_location(program_id: int, data: dict[str, Any]) -> Any:
    return programs.add_location(programs.get(program_id), **data)


@bp.get("/programs/<int:program_id>/locations")
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(LocationList)
@bp.doc(summary="List a program's store locations", responses=[401, 404])
def list_locations(program_id: int) -> dict[str, Any]:
    return {"locations": programs.get(program_id).locations}


@bp.patch("/programs/<int:program_id>/locations/<int:location_id>")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(LocationPatchIn, arg_name="data")
@bp.output(LocationOut)
@bp.doc(summary="Change a store location (every card's passes follow)",
        description="`relevant_text: null` removes the lock-screen text.",
        responses=[401, 403, 404, 422])
def update_location(program_id: int, location_id: int, data: dict[str, Any]) -> Any:
    program = programs.get(program_id)
    return programs.update_location(programs.get_location(program, location_id), **data)


@bp.post("/programs/<int:program_id>/members")
@bp.auth_required(auth, roles=["admin", "marketer", "pos"])
@bp.input(MemberIn, arg_name="data")
@bp.output(MemberOut, status_code=201)
@bp.doc(summary="Enroll a member and issue their card", responses=[401, 403, 404, 409, 422])
def enroll_member(program_id: int, data: dict[str, Any]) -> dict[str, Any]:
    card = enrollment.enroll(programs.get(program_id), enrollment.Enrollment(**data))
    member: Member = card.member
    return {
        "id": member.id,
        "name": member.name,
        "email": member.email,
        "language": member.language,
        "referral_code": member.referral_code,
        "card": card_body(card),
    }


@bp.get("/cards/<serial>")
@bp.auth_required(auth, roles=ALL_ROLES)
@bp.output(CardDetailOut)
@bp.doc(summary="Get a card with its recent ledger entries and its badges",
        description="A card whose member was erased answers 410 `card-erased`.",
        responses=[401, 404, 410])
def get_card(serial: str) -> dict[str, Any]:
    card = ledger.get_card(serial)
    if card.erased_at is not None:  # its links (passes, card page, Google save link) are gone
        raise CardErased(f"Card {serial} belonged to an erased member.")
    return {
        **card_body(card),
        "member_name": card.member.name,
        "recent_entries": ledger.recent_entries(card),
        "badges": [{"challenge_id": badge.challenge.id, "name": badge.challenge.name,
                    "earned_at": badge.earned_at} for badge in challenges.badges(card)],
    }


@bp.post("/cards/<serial>/earn")
@bp.auth_required(auth, roles=["pos", "admin"])
@bp.input(IdempotencyHeader, location="headers", arg_name="headers")
@bp.input(EarnIn, arg_name="data")
@bp.output(EarnOut, status_code=201)
@bp.doc(summary="Credit points for a purchase or a number of points",
        description="Send an `Idempotency-Key` header: a retried request with the same key "
        "credits once and answers with the first result (`Idempotent-Replayed: true`). The "
        "program's earning rules give their points on it, each as a `bonus` entry; the "
        "answer breaks the total down (as `POST /programs/{id}/rules/preview` says it would).",
        responses=[401, 403, 404, 410, 422])
def earn(serial: str, headers: dict[str, Any], data: dict[str, Any]) -> Any:
    posting = earning.earn(serial, actor=actor(), idempotency_key=headers.get("idempotency_key"),
                          **data)
    return _posting_response(posting)


@bp.post("/cards/<serial>/void")
@bp.auth_required(auth, roles=["admin"])
@bp.input(VoidIn, arg_name="data")
@bp.output(CardOut)
@bp.doc(summary="Void a card: its passes show it as voided and it can no longer change",
        responses=[401, 403, 404, 410, 422])
def void_card(serial: str, data: dict[str, Any]) -> dict[str, Any]:
    return card_body(cards.void(serial, reason=data["reason"], actor=actor()))


@bp.post("/cards/<serial>/adjust")
@bp.auth_required(auth, roles=["admin"])
@bp.input(IdempotencyHeader, location="headers", arg_name="headers")
@bp.input(AdjustIn, arg_name="data")
@bp.output(PostingOut, status_code=201)
@bp.doc(summary="Add or remove points by hand, with a reason",
        responses=[401, 403, 404, 409, 410, 422])
def adjust(serial: str, headers: dict[str, Any], data: dict[str, Any]) -> Any:
    posting = ledger.adjust(serial, actor=actor(), idempotency_key=headers.get("idempotency_key"),
                            **data)
    return _posting_response(posting)


@bp.post("/cards/<serial>/refunds")
@bp.auth_required(auth, roles=["pos", "admin"])
# The body first: a malformed body is 400 whatever the headers.
@bp.input(RefundIn, arg_name="data")
@bp.input(RequiredIdempotencyHeader, location="headers", arg_name="headers")
@bp.output(RefundOut, status_code=201)
@bp.doc(summary="Refund (part of) a purchase: claw back the points it earned, in proportion",
        description="`reference` names the purchase (the card's earn with that reference). "
        "After refunds totalling R of a purchase of amount A that earned E points (its earn "
        "and the rules' awards on it), `floor(E × R / A)` points have been clawed back: each "
        "refund takes the difference, first from the purchase's own points (pending or "
        "not), then, when the program's `refund_shortfall` is `clamp`, from the balance down "
        "to zero; with `forgive` only from the purchase's own points. What could not be "
        "taken is the entry's `shortfall`. The `Idempotency-Key` header is required: a retry "
        "with the same key and body refunds once and answers with the first result "
        "(`Idempotent-Replayed: true`). 404 `purchase-not-found`: no earn with that "
        "reference on the card; 409 `refund-exceeds-purchase` (more than is left to "
        "refund), `nothing-earned` (the purchase was reversed), `ambiguous-reference` "
        "(several earns have it), `not-a-purchase` (an earn of plain points); 410 "
        "`card-voided`; 422 for a currency that is not the program's.",
        responses=[401, 403, 404, 409, 410, 422])
def refund(serial: str, headers: dict[str, Any], data: dict[str, Any]) -> Any:
    result = refunds.refund(serial, actor=actor(), idempotency_key=headers["idempotency_key"],
                            **data)
    body = {**asdict(result),
            "entry": {**asdict(result.entry), "shortfall": result.shortfall,
                      "purchase_id": result.purchase.entry_id}}
    return body, 201, ({"Idempotent-Replayed": "true"} if result.replayed else {})
