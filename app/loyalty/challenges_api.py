"""The challenges API: a program's challenges (admins and marketers manage them; see
:mod:`app.loyalty.challenges` for what they count and award)."""

from __future__ import annotations

from typing import Any, ClassVar

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app.auth.security import auth
from app.loyalty import challenges, programs
from app.loyalty.ledger import MAX_POINTS
from app.loyalty.models import Challenge, ChallengeKind
from app.schemas import InputSchema, StrictInteger, text

bp = APIBlueprint("challenges", __name__, url_prefix="/api/v1", tag="Challenges")

KINDS = [kind.value for kind in ChallengeKind]
TARGET = validators.Range(min=1, max=challenges.MAX_TARGET)
WINDOW = validators.Range(min=1, max=challenges.MAX_WINDOW_DAYS)
BONUS = validators.Range(min=1, max=MAX_POINTS)
DESCRIPTION = (
    "A challenge counts a card's visits (`visits`: earns and redemptions not reversed), the "
    "different rewards it redeemed (`rewards`) or the different locations it visited at "
    "(`locations`), within `window_days` days before the visit (null: ever). The visit that "
    "reaches `target` gives the card the challenge's badge, once, and `bonus_points` (if "
    "any) as a `bonus` ledger entry with the idempotency key `challenge:<id>`, in the "
    "visit's transaction. The badge shows on the card page and on the Apple and Google "
    "passes, named in the member's language (`texts`, else `name`).")


class ChallengeTextsIn(InputSchema):
    """The name in other languages; any other key is refused as an unknown field."""

    en = text(challenges.NAME_LENGTH)
    id = text(challenges.NAME_LENGTH)
    th = text(challenges.NAME_LENGTH)
    ms = text(challenges.NAME_LENGTH)


class ChallengeIn(InputSchema):
    kind = fields.String(required=True, validate=validators.OneOf(KINDS), metadata={
        "description": "visits, rewards (different ones redeemed) or locations (different "
        "ones visited at)"})
    name = text(challenges.NAME_LENGTH, required=True,
                metadata={"description": "as the member reads it, e.g. \"5 visits in 30 days\""})
    texts = fields.Nested(ChallengeTextsIn, metadata={
        "description": "the name per language (en, id, th, ms)"})
    target = StrictInteger(required=True, validate=TARGET,
                           metadata={"description": "visits, rewards or locations to reach"})
    window_days = StrictInteger(allow_none=True, load_default=None, validate=WINDOW,
                                metadata={"description": "counted within this many days "
                                          "before the visit (null: ever)"})
    bonus_points = StrictInteger(allow_none=True, load_default=None, validate=BONUS,
                                 metadata={"description": "points given with the badge "
                                           "(null: none)"})


class ChallengePatchIn(InputSchema):
    """The fields given replace the stored ones (``texts`` as a whole); the kind stays."""

    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    name = text(challenges.NAME_LENGTH)
    texts = fields.Nested(ChallengeTextsIn, allow_none=True,
                          metadata={"description": "replaces every translation (null: none)"})
    target = StrictInteger(validate=TARGET)
    window_days = StrictInteger(allow_none=True, validate=WINDOW)
    bonus_points = StrictInteger(allow_none=True, validate=BONUS)

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


class ChallengeTextsOut(Schema):
    en = fields.String()
    id = fields.String()
    th = fields.String()
    ms = fields.String()


class ChallengeOut(Schema):
    id = fields.Integer()
    program_id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    texts = fields.Nested(ChallengeTextsOut, allow_none=True)
    target = fields.Integer()
    window_days = fields.Integer(allow_none=True)
    bonus_points = fields.Integer(allow_none=True)
    position = fields.Integer()
    created_at = fields.DateTime()
    retired_at = fields.DateTime(allow_none=True, metadata={
        "description": "set by DELETE: it awards nothing more; its badges stay"})


class ChallengeList(Schema):
    challenges = fields.List(fields.Nested(ChallengeOut))


PATH = "/programs/<int:program_id>/challenges"
ROLES = ["admin", "marketer"]


@bp.post(PATH)
@bp.auth_required(auth, roles=ROLES)
@bp.input(ChallengeIn, arg_name="data")
@bp.output(ChallengeOut, status_code=201)
@bp.doc(summary="Add a challenge", description=DESCRIPTION, responses=[401, 403, 404, 422])
def create_challenge(program_id: int, data: dict[str, Any]) -> Challenge:
    return challenges.create(programs.get(program_id), **data)


@bp.get(PATH)
@bp.auth_required(auth, roles=ROLES)
@bp.output(ChallengeList)
@bp.doc(summary="List a program's challenges: live ones in order, then retired ones",
        responses=[401, 403, 404])
def list_challenges(program_id: int) -> dict[str, Any]:
    return {"challenges": challenges.list_challenges(programs.get(program_id))}


@bp.patch(PATH + "/<int:challenge_id>")
@bp.auth_required(auth, roles=ROLES)
@bp.input(ChallengePatchIn, arg_name="data")
@bp.output(ChallengeOut)
@bp.doc(summary="Change a challenge", description="The fields given replace the stored ones "
        "(`texts` as a whole; null removes them); the kind stays. A change counts from the "
        "next visit on: badges earned stay. A retired challenge cannot change (409 "
        "`challenge-retired`).", responses=[401, 403, 404, 409, 422])
def update_challenge(program_id: int, challenge_id: int, data: dict[str, Any]) -> Challenge:
    return challenges.update_challenge(programs.get(program_id), challenge_id, **data)


@bp.delete(PATH + "/<int:challenge_id>")
@bp.auth_required(auth, roles=ROLES)
@bp.output({}, status_code=204)
@bp.doc(summary="Retire a challenge: it awards nothing more; the badges it gave stay",
        description="Idempotent: retiring a retired challenge answers 204 too.",
        responses=[401, 403, 404])
def retire_challenge(program_id: int, challenge_id: int) -> tuple[str, int]:
    challenges.retire(programs.get(program_id), challenge_id)
    return "", 204
