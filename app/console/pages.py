"""The console's frame: signing in and out, who may open which page, the program list.

Every page of the console is a view on :data:`bp` wrapped in :func:`console_page`, which
signs the visitor in (or sends them to ``/console/login``), keeps staff accounts out (403),
limits the request to the account's programs (:mod:`app.access`), records the account as who
acts (:mod:`app.audit`) and, for a URL with ``<int:program_id>``, passes the view the
``program`` (404 for one the account does not manage, as for one that does not exist).
Pages for the parts of the console live in modules beside this one, each adding its views to
:data:`bp`; :mod:`app.console.parts` imports them and registers the blueprint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import EmailField, PasswordField
from wtforms.validators import InputRequired, Length

from app import access, audit
from app.accounts import service as accounts
from app.accounts.models import Account, AccountRole
from app.console import session as console_session
from app.errors import NotFound
from app.lockout import Lockout
from app.loyalty import programs
from app.web.pagekit import PageForm, use_languages
from passes.languages import LANGUAGE_NAMES

bp = Blueprint("console", __name__, url_prefix="/console")
# Pages, not API: APIFlask's OpenAPI document skips it (and, asking every blueprint with a
# before_request function for this, fails without it).
bp.enable_openapi = False  # type: ignore[attr-defined]

# Five wrong passwords for an address within 15 minutes hold that account's sign-in for 5
# minutes; 20 from one network address within 15 minutes hold that address for 15.
BY_ACCOUNT = Lockout("console-sign-in", max_failures=5, window_seconds=15 * 60,
                     lock_seconds=5 * 60)
BY_ADDRESS = Lockout("console-sign-in-address", max_failures=20, window_seconds=15 * 60,
                     lock_seconds=15 * 60)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


@dataclass(frozen=True)
class Section:
    """A link in a program's navigation: its label and the view (taking ``program_id``)."""

    label: Any  # a lazy string, translated when shown
    endpoint: str
    admin: bool = False
    # The section's other pages: endpoints, or their beginnings ("console.campaign" for every
    # campaign page). The link shows as current on them too.
    pages: tuple[str, ...] = ()

    def is_current(self, endpoint: str | None) -> bool:
        """Whether the link is the current page's section (``g.section``, the endpoint of
        a section a view names, wins over endpoints)."""
        named = g.get("section")
        if named:
            return bool(named == self.endpoint)
        return endpoint is not None and (
            endpoint == self.endpoint or (bool(self.pages) and endpoint.startswith(self.pages)))


SECTIONS: list[Section] = []
# Links in the frame outside any program (accounts, the whole audit trail): endpoints
# without arguments.
GLOBAL_SECTIONS: list[Section] = []


def order_sections(endpoints: list[str]) -> None:
    """Put the navigation's links in this order (links not named go last, as added)."""
    for target in (SECTIONS, GLOBAL_SECTIONS):
        target.sort(key=lambda s: endpoints.index(s.endpoint) if s.endpoint in endpoints
                    else len(endpoints))


def section(label: Any, endpoint: str, *, admin: bool = False, program: bool = True,
            pages: tuple[str, ...] = ()) -> None:
    """Add a link to the console's navigation (a part calls this once, when imported).
    ``pages``: the section's other pages' endpoints or their beginnings (see Section)."""
    target = SECTIONS if program else GLOBAL_SECTIONS
    if all(s.endpoint != endpoint for s in target):
        target.append(Section(label, endpoint, admin, tuple(pages)))


def console_page(view: View | None = None, *, admin: bool = False) -> Any:
    """Wrap a console view (see the module's description). ``admin``: admins only (403)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            account = console_session.signed_in()
            if account is None:
                return redirect(url_for("console.login", next=_here()), 303)
            if not accounts.may_use_console(account) or \
                    (admin and account.role is not AccountRole.ADMIN):
                return render_template("console/forbidden.html", account=account), 403
            g.account = account
            audit.act_as(accounts.actor_of(account))
            access.limit_to(accounts.scope_of(account))
            if "program_id" in kwargs:
                try:
                    kwargs["program"] = programs.get(kwargs.pop("program_id"))
                except NotFound:
                    abort(404)
                g.program = kwargs["program"]
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(view) if view is not None else decorate


def current_account() -> Account:
    """The signed-in account of this console request."""
    return g.account  # type: ignore[no-any-return]


def _here() -> str:
    return request.full_path.rstrip("?")


def _safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path inside the console, never another site."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/console") \
                and "\\" not in target:
            return target
    return url_for("console.index")


@bp.context_processor
def _page_context() -> dict[str, Any]:
    account = g.get("account")
    visible = []
    if account is not None:
        visible = programs.reachable_programs()
    return {"lang": str(get_locale() or "en"), "language_names": LANGUAGE_NAMES,
            "language_url": _language_url, "account": account,
            "program": g.get("program"), "visible_programs": visible,
            "is_admin": account is not None and account.role is AccountRole.ADMIN,
            "sections": SECTIONS, "global_sections": GLOBAL_SECTIONS}


def _language_url(code: str) -> str:
    return url_for(request.endpoint or "console.index", **(request.view_args or {}),
                   lang=code)


@bp.before_request
def _languages() -> None:
    account = console_session.signed_in()
    use_languages(member=account.language if account is not None else None)


# --- Signing in and out ----------------------------------------------------------------------


class SignInForm(PageForm):
    email = EmailField(_l("E-mail"), validators=[
        InputRequired(_l("Please enter your e-mail address.")), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[
        InputRequired(_l("Please enter your password.")), Length(max=256)])


class SignOutForm(PageForm):
    """Signing out: the CSRF token only (so no other site can sign anyone out)."""


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = SignInForm()
    next_url = _safe_next(request.args.get("next"))
    if request.method == "GET" and console_session.signed_in() is not None:
        return redirect(next_url, 303)
    if request.method == "GET" or not form.validate():
        return _sign_in_page(form, 200 if request.method == "GET" else 422)
    subjects_account = [f"account:{accounts.email_key(form.email.data or '')}"]
    subjects_address = [f"address:{request.remote_addr}"]
    wait = max(BY_ACCOUNT.retry_after(subjects_account) or 0,
               BY_ADDRESS.retry_after(subjects_address) or 0)
    if wait:
        return _locked_page(form, wait)
    account = accounts.authenticate(form.email.data or "", form.password.data or "")
    if account is None:
        wait = max(BY_ACCOUNT.fail(subjects_account) or 0,
                   BY_ADDRESS.fail(subjects_address) or 0)
        if wait:
            return _locked_page(form, wait)
        form.form_errors.append(_("That e-mail address and password do not match an account."))
        return _sign_in_page(form, 401)
    if not accounts.may_use_console(account):
        # No session starts, so the page shows no account (nor a sign-out button).
        return render_template("console/forbidden.html"), 403
    console_session.sign_in(account)
    return redirect(next_url, 303)


def _sign_in_page(form: SignInForm, status: int) -> tuple[str, int]:
    return render_template("console/login.html", form=form), status


def _locked_page(form: SignInForm, seconds: int) -> tuple[str, int, dict[str, str]]:
    minutes = max(1, math.ceil(seconds / 60))
    form.form_errors.append(ngettext(
        "Too many wrong passwords. Try again in %(num)d minute.",
        "Too many wrong passwords. Try again in %(num)d minutes.", minutes))
    page, status = _sign_in_page(form, 429)
    return page, status, {"Retry-After": str(seconds)}


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    # The CSRF check (before this view) keeps other sites from signing anyone out.
    console_session.sign_out()
    return redirect(url_for("console.login"), 303)


# --- Programs ----------------------------------------------------------------------------------


@bp.get("")
@console_page
def index() -> ResponseReturnValue:
    """The programs this account manages; with just one, that program's page."""
    visible = programs.reachable_programs()
    if len(visible) == 1:
        return redirect(url_for("console.program_home", program_id=visible[0].id), 303)
    return render_template("console/programs.html", programs=visible)


@bp.get("/programs/<int:program_id>")
@console_page
def program_home(program: Any) -> ResponseReturnValue:
    return render_template("console/program.html")


def sign_out_form() -> SignOutForm:
    """The sign-out button's form (the frame of every console page shows it)."""
    return SignOutForm()
