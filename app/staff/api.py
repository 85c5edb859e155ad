"""The till's admin API: enrol and revoke till devices, add and change staff members.

The same as ``pointpass enrol-device|list-devices|revoke-device``, ``pointpass staff`` and the
console's "Staff and devices" page: all call :mod:`app.staff.devices` and
:mod:`app.staff.members`. Staff and devices of programs outside the caller's reach
(:mod:`app.access`) are neither listed nor found (404), and their locations are unknown (422).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import Schema
from marshmallow import ValidationError, pre_load, validates_schema

from app.auth.security import actor, auth
from app.schemas import MAX_ID, InputSchema, StrictBoolean, StrictInteger, text
from app.staff import devices, members
from passes.languages import LANGUAGES

bp = APIBlueprint("till_admin", __name__, url_prefix="/api/v1", tag="Staff and till devices")
log = logging.getLogger("pointpass.staff")

ID = validators.Range(min=1, max=MAX_ID)
PIN = fields.String(validate=validators.Regexp(r"^[0-9]{4,8}$", error="4 to 8 digits."),
                    metadata={"description": "4 to 8 digits; stored only as a slow salted hash",
                              "writeOnly": True})
LOCATION_IDS = fields.List(StrictInteger(validate=ID), validate=validators.Length(min=1, max=100),
                           metadata={"description": "the program locations they may work at"})
LANGUAGE = fields.String(validate=validators.OneOf(LANGUAGES),
                         metadata={"description": "the language of their sign-in pages"})


class DeviceIn(InputSchema):
    location_id = StrictInteger(required=True, validate=ID)
    name = text(120, metadata={"description": "to tell devices apart, e.g. 'front till'"})


class DeviceOut(Schema):
    id = fields.Integer()
    location_id = fields.Integer()
    name = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["pending", "expired", "enrolled", "revoked"]})
    expires_at = fields.DateTime(metadata={"description": "when the enrolment link expires"})
    enrolled_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class NewDeviceOut(DeviceOut):
    enrol_url = fields.String(metadata={
        "description": "the one-time enrolment link: open it on the till device. Shown only "
                       "in this answer"})


class QueryIn(InputSchema):
    """Query parameters: unknown ones are refused too (webargs would drop them, while the
    OpenAPI document, like every input schema's, allows no others)."""

    @pre_load
    def _refuse_unknown(self, data: Any, **kwargs: object) -> Any:
        unknown = sorted(set(data) - {f.data_key or name for name, f in self.fields.items()})
        if unknown:
            raise ValidationError({name: ["Unknown field."] for name in unknown})
        return data


class DeviceQuery(QueryIn):
    # Query values are strings: plain (not strict) integers.
    program_id = fields.Integer(validate=ID, metadata={
        "description": "only the devices at this program's locations"})
    location_id = fields.Integer(validate=ID, metadata={
        "description": "only the devices at this location"})


class StaffQuery(QueryIn):
    program_id = fields.Integer(validate=ID, metadata={
        "description": "only the staff who work at one of this program's locations"})


class DeviceList(Schema):
    devices = fields.List(fields.Nested(DeviceOut))


class StaffIn(InputSchema):
    name = text(120, required=True)
    pin = fields.String(required=True, validate=PIN.validate, metadata=PIN.metadata)
    location_ids = fields.List(StrictInteger(validate=ID), required=True,
                               validate=LOCATION_IDS.validate, metadata=LOCATION_IDS.metadata)
    language = fields.String(load_default="en", validate=LANGUAGE.validate,
                             metadata=LANGUAGE.metadata)


class StaffPatchIn(InputSchema):
    openapi_rules: ClassVar[dict[str, Any]] = {"minProperties": 1}
    name = text(120)
    pin = fields.String(validate=PIN.validate, metadata=PIN.metadata)
    location_ids = fields.List(StrictInteger(validate=ID), validate=LOCATION_IDS.validate,
                               metadata=LOCATION_IDS.metadata)
    language = fields.String(validate=LANGUAGE.validate, metadata=LANGUAGE.metadata)
    active = StrictBoolean(metadata={
        "description": "false signs the member out at once and hides them at the till"})
    unlock = StrictBoolean(metadata={
        "description": "true lifts a lock after five wrong PINs"})
    program_id = StrictInteger(validate=ID, metadata={
        "description": "with `location_ids`: replace the member's locations at this program "
                       "only (without it: at every program the caller reaches); their "
                       "locations elsewhere stay"})

    @validates_schema
    def _something(self, data: dict, **kwargs: object) -> None:
        if not set(data) - {"program_id"}:
            raise ValidationError("Give at least one field to change.")


class StaffOut(Schema):
    id = fields.Integer()
    name = fields.String()
    language = fields.String()
    active = fields.Boolean()
    location_ids = fields.List(fields.Integer())
    failed_pin_attempts = fields.Integer(metadata={
        "description": "wrong PINs since the last right one (five lock the member)"})
    locked_until = fields.DateTime(allow_none=True, metadata={
        "description": "until when five wrong PINs lock the member; null when not locked"})
    created_at = fields.DateTime()


class StaffList(Schema):
    staff = fields.List(fields.Nested(StaffOut))


@bp.post("/devices")
@bp.auth_required(auth, roles=["admin"])
@bp.input(DeviceIn, arg_name="data")
@bp.output(NewDeviceOut, status_code=201)
@bp.doc(summary="Make a one-time enrolment link for a till device at a location",
        description="Open `enrol_url` on the device within 24 hours and confirm: the link is "
        "then used up and the device can sign staff in with their PIN.",
        responses=[401, 403, 422])
def create_device(data: dict[str, Any]) -> dict[str, Any]:
    new = devices.create(data["location_id"], data.get("name"))
    log.info("Till device #%d made for location %d by %s", new.device.id,
             new.device.location_id, actor())
    return {**devices.as_dict(new.device), "enrol_url": new.enrol_url}


@bp.get("/devices")
@bp.auth_required(auth, roles=["admin"])
@bp.input(DeviceQuery, location="query", arg_name="query")
@bp.output(DeviceList)
@bp.doc(summary="List till devices (never their links or secrets)", responses=[401, 403, 422])
def list_devices(query: dict[str, Any]) -> dict[str, Any]:
    return {"devices": [devices.as_dict(d) for d in devices.all_devices(**query)]}


@bp.delete("/devices/<int:device_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke a till device",
        description="Its enrolment link and cookie stop working and every staff session on "
        "it ends, from the next request. Idempotent: revoking again answers 204 too.",
        responses=[401, 403, 404])
def revoke_device(device_id: int) -> tuple[str, int]:
    if devices.revoke(device_id):
        log.info("Till device #%d revoked by %s", device_id, actor())
    return "", 204


@bp.post("/staff")
@bp.auth_required(auth, roles=["admin"])
@bp.input(StaffIn, arg_name="data")
@bp.output(StaffOut, status_code=201)
@bp.doc(summary="Add a staff member who signs in at the till with a PIN",
        responses=[401, 403, 422])
def create_staff(data: dict[str, Any]) -> dict[str, Any]:
    member = members.create(data["name"], data["pin"], data["location_ids"],
                            language=data["language"])
    log.info("Staff member #%d added by %s", member.id, actor())
    return members.as_dict(member)


@bp.get("/staff")
@bp.auth_required(auth, roles=["admin"])
@bp.output(StaffList)
@bp.input(StaffQuery, location="query", arg_name="query")
@bp.doc(summary="List staff members (never their PINs)", responses=[401, 403, 422])
def list_staff(query: dict[str, Any]) -> dict[str, Any]:
    return {"staff": [members.as_dict(m) for m in members.in_reach(query.get("program_id"))]}


@bp.patch("/staff/<int:member_id>")
@bp.auth_required(auth, roles=["admin"])
@bp.input(StaffPatchIn, arg_name="data")
@bp.output(StaffOut)
@bp.doc(summary="Change a staff member: name, PIN, locations, language, active; unlock",
        description="A new PIN (a PIN reset) also lifts a lock. Deactivating signs the member "
        "out at once.",
        responses=[401, 403, 404, 422])
def update_staff(member_id: int, data: dict[str, Any]) -> dict[str, Any]:
    member = members.update(member_id, **data)
    # The names of what changed, never the PIN itself.
    log.info("Staff member #%d changed (%s) by %s", member_id, ", ".join(sorted(data)), actor())
    return members.as_dict(member)


@bp.post("/staff/<int:member_id>/unlock")
@bp.auth_required(auth, roles=["admin"])
@bp.output(StaffOut)
@bp.doc(summary="Unlock a staff member locked after five wrong PINs",
        description="Forgets their wrong PINs too. Unlocking a member who is not locked "
        "changes nothing (200).", responses=[401, 403, 404])
def unlock_staff(member_id: int) -> dict[str, Any]:
    member = members.unlock(member_id)
    log.info("Staff member #%d unlocked by %s", member_id, actor())
    return members.as_dict(member)
