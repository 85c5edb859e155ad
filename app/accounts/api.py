"""Console accounts over the API (admin keys): list, invite, change, reset links, sign-out
everywhere. The same services as the console's accounts pages (:mod:`app.accounts.service`,
:mod:`app.accounts.links`)."""

from __future__ import annotations

from typing import Any, ClassVar

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, validates_schema

from app import access
from app.accounts import links
from app.accounts import service as accounts
from app.accounts.models import Account, AccountRole
from app.auth.security import auth
from app.schemas import MAX_ID, InputSchema, StrictBoolean, StrictInteger, text
from passes.languages import LANGUAGES

bp = APIBlueprint("accounts_api", __name__, url_prefix="/api/v1/accounts",
                  tag="Console accounts")

ROLES = [r.value for r in AccountRole]
ROLE = fields.String(validate=validators.OneOf(ROLES), metadata={
    "description": "admin: every program and the accounts; marketer: the programs given; "
                   "staff: no console"})
PROGRAM_IDS = fields.List(StrictInteger(validate=validators.Range(min=1, max=MAX_ID)),
                          validate=validators.Length(max=1000),
                          metadata={"description": "the programs a marketer manages"})
LANGUAGE = fields.String(validate=validators.OneOf(LANGUAGES),
                         metadata={"description": "the console's language for the account"})


class AccountOut(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String(allow_none=True)
    role = fields.String(metadata={"enum": ROLES})
    program_ids = fields.List(fields.Integer())
    language = fields.String()
    active = fields.Boolean()
    invitation_pending = fields.Boolean(metadata={
        "description": "true until the person sets a password through the invitation"})
    created_at = fields.DateTime()
    last_sign_in_at = fields.DateTime(allow_none=True)


class ChangedAccountOut(AccountOut):
    """The account as changed (its own class: the OpenAPI generator registers a schema used
    both nested and on its own twice)."""


class AccountList(Schema):
    accounts = fields.List(fields.Nested(AccountOut))


class InviteIn(InputSchema):
    email = fields.Email(required=True, validate=validators.Length(max=254))
    role = fields.String(required=True, validate=ROLE.validate, metadata=ROLE.metadata)
    program_ids = fields.List(PROGRAM_IDS.inner, load_default=list,
                              validate=PROGRAM_IDS.validate, metadata=PROGRAM_IDS.metadata)
    name = text(120)
    language = fields.String(load_default="en", validate=LANGUAGE.validate,
                             metadata=LANGUAGE.metadata)


class LinkFields(Schema):
    mailed = fields.Boolean(metadata={
        "description": "whether the link was e-mailed (POINTPASS_SMTP_URL)"})
    link = fields.String(allow_none=True, metadata={
        "description": "the one-time link to hand over, only when it was not e-mailed "
                       "(null otherwise)"})
    expires_in_seconds = fields.Integer()


class LinkOut(LinkFields):
    """A link on its own (see :class:`ChangedAccountOut`)."""


class InvitationOut(Schema):
    account = fields.Nested(AccountOut)
    invitation = fields.Nested(LinkFields)


class AccountPatchIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    role = fields.String(validate=ROLE.validate, metadata=ROLE.metadata)
    program_ids = fields.List(PROGRAM_IDS.inner, validate=PROGRAM_IDS.validate,
                              metadata=PROGRAM_IDS.metadata)
    active = StrictBoolean(metadata={"description": "false ends the account's sessions"})
    name = fields.String(validate=validators.Length(max=120), allow_none=True)
    language = fields.String(validate=LANGUAGE.validate, metadata=LANGUAGE.metadata)

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("Give at least one field to change.")


def as_dict(account: Account) -> dict[str, Any]:
    return {"id": account.id, "email": account.email, "name": account.name,
            "role": account.role.value, "program_ids": [p.id for p in account.programs],
            "language": account.language, "active": account.active,
            "invitation_pending": account.password_hash is None,
            "created_at": account.created_at, "last_sign_in_at": account.last_sign_in_at}


def _link(link: links.Link, purpose: links.TokenPurpose) -> dict[str, Any]:
    return {"mailed": link.mailed, "link": None if link.mailed else link.url,
            "expires_in_seconds": int(links.LIFETIMES[purpose].total_seconds())}


@bp.get("")
@bp.auth_required(auth, roles=["admin"])
@bp.output(AccountList)
@bp.doc(summary="List console accounts (never passwords or links)", responses=[401, 403])
def list_accounts() -> dict[str, Any]:
    access.require_every_program("Managing console accounts")
    return {"accounts": [as_dict(a) for a in accounts.all_accounts()]}


@bp.post("")
@bp.auth_required(auth, roles=["admin"])
@bp.input(InviteIn, arg_name="data")
@bp.output(InvitationOut, status_code=201)
@bp.doc(summary="Invite someone to the console",
        description="Creates the account without a password and a one-time invitation link "
        "(72 hours). The link is e-mailed when POINTPASS_SMTP_URL is set; otherwise, or when "
        "sending failed, it is in the answer (`invitation.link`), to hand over.",
        responses=[401, 403, 404, 409, 422])
def invite(data: dict[str, Any]) -> dict[str, Any]:
    access.require_every_program("Managing console accounts")
    link = links.invite(data["email"], data["role"], data["program_ids"],
                        name=data.get("name"), language=data["language"])
    return {"account": as_dict(link.account),
            "invitation": _link(link, links.TokenPurpose.INVITE)}


@bp.patch("/<int:account_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.input(AccountPatchIn, arg_name="data")
@bp.output(ChangedAccountOut)
@bp.doc(summary="Change an account: role, programs, active, name, language",
        description="Deactivating ends the account's sessions at once. 409 when the change "
        "would leave no active admin.", responses=[401, 403, 404, 409, 422])
def update_account(account_id: int, data: dict[str, Any]) -> dict[str, Any]:
    access.require_every_program("Managing console accounts")
    account = accounts.get(account_id)
    accounts.update(account, **data)
    return as_dict(account)


@bp.post("/<int:account_id>/reset-link")
@bp.auth_required(auth, roles=["admin"])
@bp.output(LinkOut, status_code=201)
@bp.doc(summary="Make a one-time password reset link for an account (1 hour)",
        description="E-mailed when POINTPASS_SMTP_URL is set; otherwise in the answer. Older "
        "unused reset links of the account stop working.", responses=[401, 403, 404])
def reset_link(account_id: int) -> dict[str, Any]:
    access.require_every_program("Managing console accounts")
    return _link(links.reset_link(accounts.get(account_id)), links.TokenPurpose.RESET)


@bp.post("/<int:account_id>/invitation")
@bp.auth_required(auth, roles=["admin"])
@bp.output(LinkOut, status_code=201)
@bp.doc(summary="Send an invitation again (a new link; the old one stops working)",
        responses=[401, 403, 404, 409])
def resend_invitation(account_id: int) -> dict[str, Any]:
    access.require_every_program("Managing console accounts")
    return _link(links.resend_invitation(accounts.get(account_id)), links.TokenPurpose.INVITE)


@bp.post("/<int:account_id>/sign-out-everywhere")
@bp.auth_required(auth, roles=["admin"])
@bp.output({}, status_code=204)
@bp.doc(summary="End every console session of an account", responses=[401, 403, 404])
def sign_out_everywhere(account_id: int) -> tuple[str, int]:
    access.require_every_program("Managing console accounts")
    accounts.sign_out_everywhere(accounts.get(account_id))
    return "", 204
