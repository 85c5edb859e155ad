"""The console's "Staff and devices" page: a program's store locations, the staff who work at
them (with their PIN locks and resets) and the till devices enrolled there.

Admins only, as the API it mirrors (``/api/v1/staff``, ``/api/v1/devices``,
``/api/v1/programs/<id>/locations``): every action calls the same service as that API
(:mod:`app.loyalty.programs`, :mod:`app.staff.members`, :mod:`app.staff.devices`), which
also records it in the audit trail. A location, staff member or device of another program
answers 404 under this program's URL. A new device's one-time link is shown once, with its QR
code, on the answer to the form that made it (never stored, so never shown again).
"""

from __future__ import annotations

import math
from typing import Any

from flask import abort, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    FloatField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import (
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    StopValidation,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app.console import pages
from app.console.pages import console_page
from app.errors import NotFound, Unprocessable
from app.loyalty import programs
from app.loyalty.models import Program, ProgramLocation
from app.staff import devices, members
from app.staff.models import StaffMember, TillDevice
from app.web.pagekit import PageForm
from app.web.qr import qr_svg
from passes.languages import LANGUAGE_NAMES

pages.section(_l("Staff and devices"), "console.staff", admin=True, pages=(
    "console.add_location", "console.edit_location", "console.add_member", "console.edit_member",
    "console.reset_pin", "console.unlock_member", "console.enrol_device", "console.device_status",
    "console.revoke_device"))

PIN_RULE = Regexp(r"^[0-9]{4,8}$", message=_l("The PIN must be 4 to 8 digits."))


def _finite(form: Any, field: Any) -> None:
    # float() reads "nan" and "inf", which pass any range check.
    if field.data is not None and not math.isfinite(field.data):
        raise StopValidation(_("Please enter a number."))


class LocationForm(PageForm):
    name = StringField(_l("Name"), validators=[
        InputRequired(_l("Please enter a name.")), Length(max=120)])
    latitude = FloatField(_l("Latitude"), validators=[
        InputRequired(_l("Please enter a number.")), _finite,
        NumberRange(-90, 90, _l("Between -90 and 90."))])
    longitude = FloatField(_l("Longitude"), validators=[
        InputRequired(_l("Please enter a number.")), _finite,
        NumberRange(-180, 180, _l("Between -180 and 180."))])
    relevant_text = StringField(_l("Text on the lock screen near the store"), validators=[
        Optional(), Length(max=200)])


class LocationsField(SelectMultipleField):
    """The program's locations as checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _language_choices() -> list[tuple[str, str]]:
    return list(LANGUAGE_NAMES.items())


class StaffForm(PageForm):
    name = StringField(_l("Name"), validators=[
        InputRequired(_l("Please enter a name.")), Length(max=members.NAME_LENGTH)])
    location_ids = LocationsField(_l("Locations"), coerce=int, validators=[
        InputRequired(_l("Choose at least one location."))])
    language = SelectField(_l("Language"), choices=_language_choices)
    pin = PasswordField(_l("PIN"), validators=[InputRequired(_l("Please enter a PIN.")),
                                               PIN_RULE])
    pin_again = PasswordField(_l("PIN again"), validators=[
        InputRequired(_l("Please enter the PIN again.")),
        EqualTo("pin", _l("The two PINs differ."))])


class StaffEditForm(PageForm):
    name = StringField(_l("Name"), validators=[
        InputRequired(_l("Please enter a name.")), Length(max=members.NAME_LENGTH)])
    location_ids = LocationsField(_l("Locations"), coerce=int, validators=[
        InputRequired(_l("Choose at least one location."))])
    language = SelectField(_l("Language"), choices=_language_choices)
    active = BooleanField(_l("Active (can sign in at the till)"))


class PinForm(PageForm):
    pin = PasswordField(_l("New PIN"), validators=[InputRequired(_l("Please enter a PIN.")),
                                                   PIN_RULE])
    pin_again = PasswordField(_l("New PIN again"), validators=[
        InputRequired(_l("Please enter the PIN again.")),
        EqualTo("pin", _l("The two PINs differ."))])


class DeviceForm(PageForm):
    location_id = SelectField(_l("Location"), coerce=int, validators=[
        InputRequired(_l("Choose a location."))])
    name = StringField(_l("Name of the device (optional)"), validators=[
        Optional(), Length(max=120)])


class ActionForm(PageForm):
    """Unlocking a member, revoking a device: the CSRF token only."""


# --- The page ----------------------------------------------------------------------------------


def _location_choices(program: Program) -> list[tuple[int, str]]:
    return [(loc.id, loc.name) for loc in program.locations]


def _staff_form(program: Program) -> StaffForm:
    form = StaffForm(prefix="staff")
    form.location_ids.choices = _location_choices(program)
    return form


def _device_form(program: Program) -> DeviceForm:
    form = DeviceForm(prefix="device")
    form.location_id.choices = _location_choices(program)
    return form


def _page(program: Program, *, location_form: LocationForm | None = None,
          staff_form: StaffForm | None = None, device_form: DeviceForm | None = None,
          status: int = 200) -> tuple[str, int]:
    staff = members.in_reach(program.id)
    program_devices = devices.all_devices(program_id=program.id)
    by_location: dict[int, list[TillDevice]] = {loc.id: [] for loc in program.locations}
    for device in program_devices:
        by_location.setdefault(device.location_id, []).append(device)
    return render_template(
        "console/staff.html", staff=staff, devices_at=by_location,
        location_form=location_form or LocationForm(formdata=None, prefix="location"),
        staff_form=staff_form or _staff_form(program),
        device_form=device_form or _device_form(program),
        action_form=ActionForm(), locked_until=members.locked_until,
        device_status=devices.status, program_locations=_program_locations), status


def _program_locations(member: StaffMember) -> list[ProgramLocation]:
    """The member's locations at the program on the page (not at other programs)."""
    program: Program = g.program
    return [loc for loc in member.locations if loc.program_id == program.id]


@pages.bp.get("/programs/<int:program_id>/staff")
@console_page(admin=True)
def staff(program: Program) -> ResponseReturnValue:
    return _page(program)


def _back(program: Program) -> ResponseReturnValue:
    """A GET of a form's action (the language links of the answer to a post): the page."""
    return redirect(url_for("console.staff", program_id=program.id, lang=request.args.get("lang")),
                    303)


def _field_errors(form: PageForm, error: Unprocessable, fields: dict[str, str]) -> None:
    """Show a service's refusal on the form: on the field it names, else above the form."""
    for problem in error.extra.get("errors") or []:
        name = fields.get(str(problem.get("field")))
        if name is not None:
            form[name].errors = [*form[name].errors, error.detail]
            return
    form.form_errors.append(error.detail)


# --- Locations ---------------------------------------------------------------------------------


def _location_values(form: LocationForm) -> dict[str, Any]:
    return {"name": " ".join((form.name.data or "").split()),
            "latitude": form.latitude.data, "longitude": form.longitude.data,
            "relevant_text": (form.relevant_text.data or "").strip() or None}


@pages.bp.route("/programs/<int:program_id>/staff/locations", methods=["GET", "POST"])
@console_page(admin=True)
def add_location(program: Program) -> ResponseReturnValue:
    if request.method == "GET":
        return _back(program)
    form = LocationForm(prefix="location")
    if not form.validate() or not _location_values(form)["name"]:
        if not form.errors:
            form.name.errors = [_("Please enter a name.")]
        return _page(program, location_form=form, status=422)
    programs.add_location(program, **_location_values(form))
    return redirect(url_for("console.staff", program_id=program.id) + "#locations", 303)


def _location(program: Program, location_id: int) -> ProgramLocation:
    try:
        return programs.get_location(program, location_id)
    except NotFound:
        abort(404)


@pages.bp.route("/programs/<int:program_id>/staff/locations/<int:location_id>",
                methods=["GET", "POST"])
@console_page(admin=True)
def edit_location(program: Program, location_id: int) -> ResponseReturnValue:
    location = _location(program, location_id)
    form = LocationForm(obj=location if request.method == "GET" else None)
    if request.method == "POST":
        if form.validate() and _location_values(form)["name"]:
            programs.update_location(location, **_location_values(form))
            return redirect(url_for("console.staff", program_id=program.id) + "#locations",
                            303)
        if not form.errors:
            form.name.errors = [_("Please enter a name.")]
    status = 422 if request.method == "POST" else 200
    return render_template("console/staff_location.html", location=location,
                           form=form), status


# --- Staff members -----------------------------------------------------------------------------


@pages.bp.route("/programs/<int:program_id>/staff/members", methods=["GET", "POST"])
@console_page(admin=True)
def add_member(program: Program) -> ResponseReturnValue:
    if request.method == "GET":
        return _back(program)
    form = _staff_form(program)
    if not form.validate():
        return _page(program, staff_form=form, status=422)
    try:
        members.create(form.name.data or "", form.pin.data or "", form.location_ids.data or [],
                       language=form.language.data or "en")
    except Unprocessable as error:
        _field_errors(form, error, {"name": "name", "location_ids": "location_ids",
                                    "language": "language", "pin": "pin"})
        return _page(program, staff_form=form, status=422)
    return redirect(url_for("console.staff", program_id=program.id) + "#staff", 303)


def _member(program: Program, member_id: int) -> StaffMember:
    """The staff member, if they work at one of this program's locations; else 404."""
    try:
        member = members.get(member_id)
    except NotFound:
        abort(404)
    if not any(loc.program_id == program.id for loc in member.locations):
        abort(404)
    return member


def _member_page(program: Program, member: StaffMember, *,
                 form: StaffEditForm | None = None, pin_form: PinForm | None = None,
                 status: int = 200) -> tuple[str, int]:
    if form is None:
        form = StaffEditForm(formdata=None, obj=member)
        form.location_ids.data = [loc.id for loc in member.locations
                                  if loc.program_id == program.id]
    form.location_ids.choices = _location_choices(program)
    return render_template(
        "console/staff_member.html", member=member, form=form,
        pin_form=pin_form or PinForm(formdata=None), action_form=ActionForm(),
        locked_until=members.locked_until(member)), status


@pages.bp.route("/programs/<int:program_id>/staff/members/<int:member_id>",
                methods=["GET", "POST"])
@console_page(admin=True)
def edit_member(program: Program, member_id: int) -> ResponseReturnValue:
    member = _member(program, member_id)
    if request.method == "GET":
        return _member_page(program, member)
    form = StaffEditForm()
    form.location_ids.choices = _location_choices(program)
    if not form.validate():
        return _member_page(program, member, form=form, status=422)
    try:
        members.update(member.id, name=form.name.data or "",
                       location_ids=form.location_ids.data or [],
                       language=form.language.data or "en", active=bool(form.active.data),
                       program_id=program.id)
    except Unprocessable as error:
        _field_errors(form, error, {"name": "name", "location_ids": "location_ids",
                                    "language": "language"})
        return _member_page(program, member, form=form, status=422)
    return redirect(url_for("console.staff", program_id=program.id) + "#staff", 303)


@pages.bp.route("/programs/<int:program_id>/staff/members/<int:member_id>/pin",
                methods=["GET", "POST"])
@console_page(admin=True)
def reset_pin(program: Program, member_id: int) -> ResponseReturnValue:
    member = _member(program, member_id)
    if request.method == "GET":
        return redirect(url_for("console.edit_member", program_id=program.id,
                                member_id=member.id, lang=request.args.get("lang")), 303)
    form = PinForm()
    if not form.validate():
        return _member_page(program, member, pin_form=form, status=422)
    members.update(member.id, pin=form.pin.data or "")
    return redirect(url_for("console.staff", program_id=program.id, done="pin") + "#staff",
                    303)


@pages.bp.route("/programs/<int:program_id>/staff/members/<int:member_id>/unlock",
                methods=["GET", "POST"])
@console_page(admin=True)
def unlock_member(program: Program, member_id: int) -> ResponseReturnValue:
    if request.method == "GET":
        return _back(program)
    member = _member(program, member_id)
    members.unlock(member.id)
    return redirect(url_for("console.staff", program_id=program.id) + "#staff", 303)


# --- Till devices ------------------------------------------------------------------------------


@pages.bp.route("/programs/<int:program_id>/staff/devices", methods=["GET", "POST"])
@console_page(admin=True)
def enrol_device(program: Program) -> ResponseReturnValue:
    """Make a device's one-time link and show it with its QR code: on this answer only."""
    if request.method == "GET":
        return _back(program)
    form = _device_form(program)
    if not form.validate():
        return _page(program, device_form=form, status=422)
    try:
        new = devices.create(form.location_id.data or 0, form.name.data)
    except Unprocessable as error:
        _field_errors(form, error, {"location_id": "location_id"})
        return _page(program, device_form=form, status=422)
    return render_template(
        "console/staff_device_new.html", device=new.device, enrol_url=new.enrol_url,
        qr=qr_svg(new.enrol_url, label=_("QR code of the enrolment link")),
        status=devices.status(new.device))


@pages.bp.get("/programs/<int:program_id>/staff/devices/<int:device_id>/status")
@console_page(admin=True)
def device_status(program: Program, device_id: int) -> ResponseReturnValue:
    """The device's status as a fragment: the enrolment page polls it (htmx) until the till
    has used the link, so the admin sees it work without reloading."""
    device = _device(program, device_id)
    return render_template("console/_staff_device_status.html", device=device,
                           status=devices.status(device))


def _device(program: Program, device_id: int) -> TillDevice:
    try:
        device = devices.get(device_id)
    except NotFound:
        abort(404)
    if device.location.program_id != program.id:
        abort(404)
    return device


@pages.bp.route("/programs/<int:program_id>/staff/devices/<int:device_id>/revoke",
                methods=["GET", "POST"])
@console_page(admin=True)
def revoke_device(program: Program, device_id: int) -> ResponseReturnValue:
    """A confirmation page; confirming revokes the device."""
    device = _device(program, device_id)
    form = ActionForm()
    if request.method == "POST" and form.validate():
        devices.revoke(device.id)
        return redirect(url_for("console.staff", program_id=program.id) + "#devices", 303)
    return render_template("console/staff_device_revoke.html", device=device, form=form,
                           status=devices.status(device))
