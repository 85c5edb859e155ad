"""The audit trail over the API: who changed what, newest first, paged back with ``before``.
Admin keys read every record (including those of no program, such as accounts); a key limited
to some programs reads only theirs (:mod:`app.access`)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema

from app import access, audit
from app.auth.security import auth
from app.loyalty import programs
from app.schemas import MAX_ID, QuerySchema

bp = APIBlueprint("audit_api", __name__, url_prefix="/api/v1", tag="Audit trail")

MAX_LIMIT = 200


class AuditQuery(QuerySchema):
    program_id = fields.Integer(validate=validators.Range(min=1, max=MAX_ID), metadata={
        "description": "only this program's records"})
    before = fields.Integer(validate=validators.Range(min=1, max=MAX_ID), metadata={
        "description": "only records older than this id (the `next_before` of the last page)"})
    limit = fields.Integer(load_default=50, validate=validators.Range(min=1, max=MAX_LIMIT))


class AuditEventOut(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = fields.String(metadata={"description": "account:3, api_key:7, cli, system"})
    actor_name = fields.String(metadata={"description": "who that was at the time"})
    program_id = fields.Integer(allow_none=True)
    action = fields.String(metadata={"example": "reward.retire"})
    target = fields.String(allow_none=True, metadata={"example": "reward:12"})
    details = fields.Dict(allow_none=True)


class AuditPage(Schema):
    events = fields.List(fields.Nested(AuditEventOut))
    next_before = fields.Integer(allow_none=True, metadata={
        "description": "pass as `before` for the next (older) page; null on the last page"})


def as_dict(event: audit.AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.at, "actor": event.actor,
            "actor_name": event.actor_name, "program_id": event.program_id,
            "action": event.action, "target": event.target, "details": event.details}


@bp.get("/audit")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(AuditQuery, location="query", arg_name="query")
@bp.output(AuditPage)
@bp.doc(summary="Read the audit trail, newest first",
        description="Pages back with `before`. A `program_id` outside the key's programs "
        "answers 404.", responses=[401, 403, 404, 422])
def read_audit(query: dict[str, Any]) -> dict[str, Any]:
    program_id = query.get("program_id")
    if program_id is not None:
        programs.get(program_id)
    limit = query["limit"]
    found = audit.events(program_ids=access.current().program_ids, program_id=program_id,
                         before_id=query.get("before"), limit=limit + 1)
    return {"events": [as_dict(e) for e in found[:limit]],
            "next_before": found[limit - 1].id if len(found) > limit else None}
