"""The till's own pages: enrolling a device with its one-time link, and signing in with a PIN.

On an enrolled device, ``/staff/login`` (in :mod:`app.redemption.views`) shows the staff
members who may work at the device's location (:func:`choose_member`); a name opens the PIN
pad in that member's language; the right PIN starts the session
(:mod:`app.staff.session`) and opens the scanner. Everything works as plain forms: the
PIN pad's buttons are a convenience that its script adds.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from wtforms import PasswordField
from wtforms.validators import InputRequired, Length

from app.staff import devices, members
from app.staff import session as staff_session
from app.staff.models import StaffMember, TillDevice
from app.timeutil import now
from app.web.pagekit import PageForm, use_languages
from passes.languages import LANGUAGE_NAMES

bp = Blueprint("till_pages", __name__)


class EnrolForm(PageForm):
    """Confirming an enrolment: the CSRF token only."""


class PinForm(PageForm):
    pin = PasswordField(_l("PIN"), validators=[
        InputRequired(_l("Please enter your PIN.")), Length(max=8)])


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return {"lang": str(get_locale() or "en"), "language_names": LANGUAGE_NAMES,
            "language_url": _language_url}


def _language_url(code: str) -> str:
    """This page in another language."""
    return url_for(request.endpoint or "staff_pages.login", **(request.view_args or {}),
                   lang=code)


# --- Enrolling a device --------------------------------------------------------------------


def _link_gone() -> tuple[str, int]:
    return render_template("staff_enrol_gone.html"), 410


@bp.route("/staff/enrol/<token>", methods=["GET", "POST"])
def enrol(token: str) -> ResponseReturnValue:
    """Show what the link enrols; on confirming, use the link up and remember the device."""
    device = devices.pending(token)
    if device is None:
        return _link_gone()
    form = EnrolForm()
    if request.method == "GET" or not form.validate():
        return _enrol_page(device, form)
    enrolled = devices.enrol(token)
    if enrolled is None:  # used meanwhile by another tap
        return _link_gone()
    staff_session.sign_out()  # whoever was signed in on this browser before
    response = redirect(url_for("staff_pages.login"), 303)
    staff_session.remember_device(response, enrolled[1])
    return response


def _enrol_page(device: TillDevice, form: EnrolForm, status: int = 200) -> tuple[str, int]:
    use_languages(program=device.location.program.default_language)
    return render_template("staff_enrol.html", form=form, device=device,
                           location=device.location, program=device.location.program), status


# --- Signing in with a PIN -----------------------------------------------------------------


def choose_member(device: TillDevice) -> tuple[str, int]:
    """The sign-in page of an enrolled device: a large button per member who works here."""
    use_languages(program=device.location.program.default_language)
    return render_template("staff_members.html", location=device.location,
                           program=device.location.program,
                           members=members.at_location(device.location_id)), 200


@bp.route("/staff/pin/<int:member_id>", methods=["GET", "POST"])
def pin(member_id: int) -> ResponseReturnValue:
    """The PIN pad for one member; the right PIN signs them in on this device."""
    device = staff_session.this_device()
    member = members.get_or_none(member_id)
    if device is None or member is None or not members.may_work_at(member,
                                                                    device.location_id):
        return redirect(url_for("staff_pages.login"), 303)
    use_languages(member=member.language)
    form = PinForm()
    locked = members.locked_until(member)
    if request.method == "GET":
        return _pin_page(member, device, form, locked=locked)
    if not form.validate():
        return _pin_page(member, device, form, locked=locked, status=422)
    result = members.check_pin(member.id, form.pin.data or "")
    if result.ok:
        staff_session.sign_in_member(member, device)
        return redirect(url_for("staff_pages.scanner"), 303)
    if result.locked_until is not None:
        return _pin_page(member, device, PinForm(formdata=None), locked=result.locked_until,
                         status=423)
    form.form_errors.append(ngettext(
        "Wrong PIN. %(num)d attempt left before a 15-minute lock.",
        "Wrong PIN. %(num)d attempts left before a 15-minute lock.", result.attempts_left))
    form.pin.data = ""
    return _pin_page(member, device, form, status=422)


def _pin_page(member: StaffMember, device: TillDevice, form: PinForm, *,
              locked: Any = None, status: int = 200) -> tuple[str, int]:
    lock_message = None
    if locked is not None:
        minutes = max(1, math.ceil((locked - now()).total_seconds() / 60))
        lock_message = ngettext(
            "Too many wrong PINs. %(name)s is locked: try again in %(num)d minute, or ask "
            "your manager to unlock.",
            "Too many wrong PINs. %(name)s is locked: try again in %(num)d minutes, or ask "
            "your manager to unlock.", minutes, name=member.name)
    return render_template("staff_pin.html", form=form, member=member,
                           location=device.location, lock_message=lock_message,
                           digits=["1", "2", "3", "4", "5", "6", "7", "8", "9"]), status


@bp.after_request
def _private(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> ResponseReturnValue:
    # A stale or missing token (an old tab, cookies off): show the page to send again.
    if request.endpoint == "till_pages.enrol":
        device = devices.pending((request.view_args or {}).get("token", ""))
        if device is None:
            return _link_gone()
        form = EnrolForm()
        form.form_errors.append(_("This page has expired. Please try again."))
        return _enrol_page(device, form, 400)
    return redirect(request.path, 303)
