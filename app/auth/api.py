"""The key API: list API keys and revoke them (admins whose key reaches every program)."""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIBlueprint, fields
from apiflask.schemas import Schema

from app import access
from app.auth import keys
from app.auth.models import Role
from app.auth.security import actor, auth
from app.errors import NotFound

bp = APIBlueprint("api_keys", __name__, url_prefix="/api/v1", tag="API keys")
log = logging.getLogger("pointpass.auth")


class KeyOut(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String(metadata={"enum": [r.value for r in Role]})
    prefix = fields.String(metadata={
        "description": "the key's first 10 characters, to tell keys apart (not enough to use)"})
    revoked = fields.Boolean()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True, metadata={
        "description": "when the key last authenticated a request, to about a minute; null "
                       "if never"})
    program_ids = fields.List(fields.Integer(), allow_none=True, metadata={
        "description": "the programs the key is limited to (`pointpass create-key --program`); "
                       "null: every program, those made later too"})


class KeyList(Schema):
    keys = fields.List(fields.Nested(KeyOut))


@bp.get("/keys")
@bp.auth_required(auth, roles=["admin"])
@bp.output(KeyList)
@bp.doc(summary="List API keys (never the keys themselves)",
        description="Each with the programs it is limited to. Keys are the whole service's: "
        "a key limited to some programs cannot list them (403 `needs-every-program`).",
        responses=[401, 403])
def list_keys() -> dict[str, Any]:
    access.require_every_program("Listing API keys")
    every = keys.all_keys()
    granted = keys.programs_of(key.id for key in every)
    return {"keys": [{"id": key.id, "name": key.name, "role": key.role.value,
                      "prefix": key.prefix, "revoked": key.revoked,
                      "created_at": key.created_at, "last_used_at": key.last_used_at,
                      "program_ids": granted.get(key.id)} for key in every]}


@bp.delete("/keys/<int:key_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke an API key",
        description="Idempotent: revoking a revoked key answers 204 too. This process refuses "
        "the key from its next request; every process within 10 seconds. The revocation is "
        "recorded in the audit trail (`key.revoke`). A key limited to some programs cannot "
        "revoke keys (403 `needs-every-program`).",
        responses=[401, 403, 404])
def revoke_key(key_id: int) -> tuple[str, int]:
    access.require_every_program("Revoking an API key")
    revoked = keys.revoke(key_id)
    if revoked is None:
        raise NotFound(f"No API key with id {key_id}.")
    if revoked:
        log.info("API key #%d revoked by %s", key_id, actor())
    return "", 204
