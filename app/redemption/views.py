"""The staff scanner page, the till: sign in, scan a card's QR code (or type its code), add
points for a purchase or redeem a reward, and undo one's own last action.

The page is the phone-sized counterpart of the staff API (``/api/v1/scans`` and
``/api/v1/redemptions``): its JSON endpoints call the same service functions and answer with
the same shapes and problem types. They authenticate with the Flask session instead of a bearer
key (the session holds the key's id, never the key), so they need CSRF protection: the page
sends its token in the ``X-CSRFToken`` header. The key is looked up on every request, so
revoking it signs its sessions out at once (see :mod:`app.staff.session`).

CSRF is checked for every post before the view runs (:mod:`app.web.pagekit`); the error
handler below words the refusal for each endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from apiflask import HTTPError
from flask import Blueprint, Response, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from marshmallow import ValidationError
from wtforms import PasswordField
from wtforms.validators import InputRequired, Length

from app.auth import keys
from app.loyalty.branding import points_label_in
from app.loyalty.schemas import IdempotencyHeader
from app.problems import problem
from app.ratelimit import RateLimited, by_address, limit
from app.redemption import service, till
from app.redemption.api import ID, RedemptionOut, ScanIn, ScanOut
from app.schemas import InputSchema, StrictInteger, text
from app.staff import session as staff_session
from app.staff import views as pin_pages
from app.staff.actor import TillActor
from app.staff.schemas import TillActionOut, TillEarnIn, TillUndoIn
from app.web.pagekit import PageForm, csrf_problem
from passes.languages import LANGUAGE_NAMES

bp = Blueprint("staff_pages", __name__)

JSON_ENDPOINTS = frozenset({"staff_pages.scan", "staff_pages.redeem", "staff_pages.earn",
                            "staff_pages.undo"})

P = ParamSpec("P")
R = TypeVar("R")


class LoginForm(PageForm):
    """The sign-in form: one field, the staff member's API key."""

    key = PasswordField(_l("Staff key"), validators=[
        InputRequired(_l("Please enter your staff key.")), Length(max=100)])


class StaffRedeemIn(InputSchema):
    """What the page sends to redeem: the scan it holds and the reward tapped."""

    scan_id = text(500, required=True)
    reward_id = StrictInteger(required=True, validate=ID)


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return {"lang": _page_language(), "language_names": LANGUAGE_NAMES,
            "language_url": _language_url}


def _language_url(code: str) -> str:
    """This page in another language."""
    return url_for(request.endpoint or "staff_pages.scanner", lang=code)


# --- Who is signed in ----------------------------------------------------------------------


def _session_expired() -> Response:
    return problem(401, code="session-expired", title="Session expired",
                   detail="Sign in again on /staff/login.")


def _json_endpoint(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Session auth for the page's JSON endpoints; sets ``g.till_actor`` (the staff member
    on this device, or the staff key). (Their CSRF token was checked before the view, as for
    every post.)

    Applied outside ``limit("STAFF_RATE_LIMIT")``, so the limit counts per staff member or key.
    """

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        till = staff_session.signed_in()
        if till is None:
            return _session_expired()
        g.till_actor = till
        return view(*args, **kwargs)

    return wrapper


def _till_actor() -> TillActor:
    """Who acts at this till: the staff member signed in on this device, or the staff key
    (set by :func:`_json_endpoint`)."""
    actor: TillActor = g.till_actor
    return actor


def _load(schema: InputSchema, data: Any) -> dict[str, Any]:
    """Validate with the API's schemas; failures answer exactly as the API's do (422)."""
    try:
        return schema.load(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise HTTPError(422, detail={"json": exc.messages}) from None


# --- Pages ---------------------------------------------------------------------------------


def _login_form(form: LoginForm, status: int) -> tuple[str, int]:
    return render_template("staff_login.html", form=form), status


@bp.route("/staff/login", methods=["GET", "POST"])
@limit(fixed="10/minute", key=by_address, methods=("POST",))
def login() -> ResponseReturnValue:
    """On an enrolled till device, the staff members to sign in with a PIN; elsewhere (or
    with ``?with=key``) the staff key form: on a valid key remember its id and open the
    scanner."""
    device = staff_session.this_device()
    if device is not None and request.method == "GET" and request.args.get("with") != "key":
        return pin_pages.choose_member(device)
    form = LoginForm()
    if request.method == "GET" or not form.validate():
        return _login_form(form, 200 if request.method == "GET" else 422)
    principal = keys.authenticate(form.key.data.strip())
    if principal is None:
        form.form_errors.append(_("This key was not accepted. Check it and try again."))
        return _login_form(form, 422)
    if not staff_session.is_staff(principal):
        form.form_errors.append(_("This key cannot use the scanner: it needs a staff key."))
        return _login_form(form, 403)
    staff_session.sign_in(principal)
    return redirect(url_for(".scanner"), 303)


@bp.post("/staff/logout")
def logout() -> ResponseReturnValue:
    """Forget the signed-in key and go back to the sign-in form."""
    staff_session.sign_out()
    return redirect(url_for(".login"), 303)


@bp.get("/staff")
def scanner() -> ResponseReturnValue:
    """The scanner page, or the sign-in page when nobody (still allowed) is signed in."""
    actor = staff_session.signed_in()
    if actor is None:
        staff_session.forget_key()
        return redirect(url_for(".login"), 303)
    return render_template("staff.html", staff=actor, place=till.till_place(actor),
                           messages=_page_messages(), undo_minutes=till.UNDO_SECONDS // 60)


def _page_messages() -> dict[str, str]:
    """Text the page's script shows, in the staff member's language."""
    return {
        "camera_starting": _("Starting the camera…"),
        "camera_ready": _("Point the camera at the customer's QR code."),
        "camera_denied": _("The camera is blocked. Type the card code below, or allow the "
                           "camera in the browser's settings."),
        "camera_unavailable": _("No camera is available. Type the card code below."),
        "checking": _("Checking the card…"),
        "redeemed": _("Redeemed: %(reward)s"),
        "invalid_code": _("This is not a valid card code. Ask the customer to show their card "
                          "again."),
        "unknown_card": _("No card matches this code."),
        "typed_code_wrong": _("No card has this code. Check it with the customer and type it "
                              "again."),
        "typed_locked": _("Too many wrong codes were typed. Typed codes are refused for "
                          "%(minutes)s min; scanning the QR code still works."),
        "code_used": _("This code was already used. Ask the customer to open the card in their "
                       "wallet again: it shows a new code."),
        "insufficient": _("Not enough points for this reward."),
        "voided": _("This card is voided and cannot be used. The customer can ask the shop for "
                    "help."),
        "scan_expired": _("This scan has expired. Scan the card again."),
        "scan_used": _("This scan was already used. Scan the card again."),
        "reward_unavailable": _("This reward is not available any more. Scan the card again."),
        "rate_limited": _("Too many requests. Wait a moment and try again."),
        "session_expired": _("Your session has expired. Sign in again."),
        "sign_in": _("Sign in"),
        "page_expired": _("This page has expired. Reload it and try again."),
        "earned": _("Added: %(points)s %(label)s"),
        "undone": _("Undone. The balance is back as it was."),
        "amount_hint": _("Type the amount as on the receipt, for example %(example)s."),
        "amount_invalid": _("This amount cannot be read. Type it like %(example)s."),
        "amount_too_small": _("This amount is too small to earn a point."),
        "undo_too_late": _("It is too late to undo: an action can be undone within %(minutes)s "
                           "minutes.", minutes=till.UNDO_SECONDS // 60),
        "already_undone": _("This was already undone."),
        "not_your_action": _("Only your own last action can be undone."),
        "nothing_to_undo": _("There is nothing to undo."),
        "undo_spent": _("Cannot undo: the points were already spent."),
        "network": _("No connection to the server. Check the network and try again."),
        "error": _("Something went wrong. Try again."),
    }


# --- The page's JSON endpoints -------------------------------------------------------------


@bp.post("/staff/scan")
@_json_endpoint
@limit("STAFF_RATE_LIMIT")
def scan() -> ResponseReturnValue:
    """Check a scanned code: the same answer as ``POST /api/v1/scans``."""
    data = _load(ScanIn(), request.get_json())
    result = service.scan(data["code"], staff=_till_actor())
    body = ScanOut().dump({"scan_id": result.scan_id, "expires_in": result.expires_in,
                           "card": result, "rewards": result.rewards})
    # The page says "points" in its own language: the program's word, or the default one's
    # translation ("Poin").
    body["card"]["points_label"] = points_label_in(result.program, _page_language())
    return jsonify(body)


@bp.post("/staff/redeem")
@_json_endpoint
@limit("STAFF_RATE_LIMIT")
def redeem() -> ResponseReturnValue:
    """Redeem a reward for the scanned card: the same answer as ``POST /api/v1/redemptions``."""
    headers = _load(IdempotencyHeader(), dict(request.headers))
    data = _load(StaffRedeemIn(), request.get_json())
    result = service.redeem(staff=_till_actor(),
                            idempotency_key=headers.get("idempotency_key"), **data)
    extra = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return jsonify(RedemptionOut().dump(result)), 201, extra


@bp.post("/staff/earn")
@_json_endpoint
@limit("STAFF_RATE_LIMIT")
def earn() -> ResponseReturnValue:
    """Add points to the scanned card: for a purchase amount as typed, or as points. Send an
    ``Idempotency-Key`` per tap; a retry with it adds nothing and gets the first answer."""
    headers = _load(IdempotencyHeader(), dict(request.headers))
    data = _load(TillEarnIn(), request.get_json())
    result = till.earn_at_till(
        data["scan_id"], staff=_till_actor(), locale=data.get("locale") or _page_language(),
        amount=data.get("amount"), points=data.get("points"),
        idempotency_key=headers.get("idempotency_key"))
    extra = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return jsonify(TillActionOut().dump(result)), 201, extra


@bp.post("/staff/undo")
@_json_endpoint
@limit("STAFF_RATE_LIMIT")
def undo() -> ResponseReturnValue:
    """Undo the signed-in staff member's own last action, within a few minutes."""
    data = _load(TillUndoIn(), request.get_json())
    result = till.undo_last(_till_actor(), entry_id=data.get("entry_id"))
    return jsonify(TillActionOut().dump(result)), 201


def _page_language() -> str:
    return str(get_locale() or "en")


@bp.after_request
def _private(response: Response) -> Response:
    # Members' names and balances, and per-session pages: never cached anywhere.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- Errors --------------------------------------------------------------------------------


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> ResponseReturnValue:
    if request.endpoint in JSON_ENDPOINTS:
        # Failing both checks, a request is told about the session (as when these endpoints
        # checked it first): signing in again is what helps, and brings a new token too.
        if staff_session.signed_in() is None:
            return _session_expired()
        return csrf_problem(error)
    if request.endpoint == "staff_pages.login":
        # A stale or missing token (an old tab, cookies off): show the form to send again.
        form = LoginForm()
        form.form_errors.append(_("Your session expired. Please sign in again."))
        return _login_form(form, 400)
    return redirect(url_for(".scanner"), 303)


@bp.errorhandler(RateLimited)
def _rate_limited(error: RateLimited) -> ResponseReturnValue:
    if request.endpoint == "staff_pages.login":
        form = LoginForm()
        form.form_errors.append(_("Too many sign-in attempts. Wait a minute and try again."))
        body, status = _login_form(form, 429)
        return body, status, error.headers
    return problem(429, code=error.code, title=error.title, detail=error.detail,
                   headers=error.headers)
