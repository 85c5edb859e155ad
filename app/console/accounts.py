"""The console's accounts: the admins' list of accounts (with the till's staff, read-only),
inviting someone, an account's page (role, programs, active, links, sign-out everywhere);
everyone's own account page; and the public pages of the one-time links (first password,
forgotten password, reset).

Every change goes through :mod:`app.accounts.service` and :mod:`app.accounts.links`, as the API
(:mod:`app.accounts.api`) does. A link that was not e-mailed is shown on the page that made it,
in the answer to that POST, and never put in a cookie.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app import ratelimit
from app.accounts import links, mail
from app.accounts import service as accounts
from app.accounts.models import Account, AccountRole, TokenPurpose
from app.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from app.console import pages
from app.console import session as console_session
from app.console.pages import bp, console_page, current_account
from app.errors import DomainError, NotFound
from app.loyalty import programs
from app.web.pagekit import PageForm
from passes.languages import LANGUAGE_NAMES

pages.section(_l("Accounts"), "console.accounts", admin=True, program=False)

# Forgotten-password requests, per network address and per address asked about.
DEFAULT_FORGOT_RATE_LIMIT = "5/15minutes"

ROLE_CHOICES = [SelectChoice(AccountRole.MARKETER.value, _l("Marketer: the programs ticked below")),
                SelectChoice(AccountRole.ADMIN.value, _l("Admin: every program, and the accounts"))]
PASSWORD_HINT = _l("At least %(num)d characters.", num=MIN_LENGTH)


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _language_field() -> SelectField:
    return SelectField(_l("Language"), choices=[SelectChoice(code, name)
                                                for code, name in LANGUAGE_NAMES.items()])


class InviteForm(PageForm):
    email = EmailField(_l("E-mail"), validators=[
        InputRequired(_l("Please enter an e-mail address.")), Length(max=254)])
    name = StringField(_l("Name (optional)"), validators=[Optional(), Length(max=120)])
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, default=AccountRole.MARKETER.value)
    program_ids = CheckboxesField(_l("Programs"), coerce=int, validate_choice=True)
    language = _language_field()


class AccountForm(PageForm):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=120)])
    role = SelectField(_l("Role"), choices=ROLE_CHOICES)
    program_ids = CheckboxesField(_l("Programs"), coerce=int, validate_choice=True)
    active = BooleanField(_l("Active (may sign in)"))


class ActionForm(PageForm):
    """A button that changes something: the CSRF token only."""


class OwnAccountForm(PageForm):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=120)])
    language = _language_field()


def _new_password(label: Any) -> PasswordField:
    return PasswordField(label, validators=[
        InputRequired(_l("Please choose a password.")),
        Length(min=MIN_LENGTH, max=MAX_LENGTH, message=_l(
            "Use %(min)d to %(max)d characters.", min=MIN_LENGTH, max=MAX_LENGTH))],
        description=PASSWORD_HINT)


def _repeat() -> PasswordField:
    return PasswordField(_l("The same password again"), validators=[
        InputRequired(_l("Please type the password again.")),
        EqualTo("password", _l("The two passwords differ."))])


class PasswordChangeForm(PageForm):
    current_password = PasswordField(_l("Current password"), validators=[
        InputRequired(_l("Please enter your current password.")), Length(max=MAX_LENGTH)])
    password = _new_password(_l("New password"))
    repeat = _repeat()


class SetPasswordForm(PageForm):
    password = _new_password(_l("New password"))
    repeat = _repeat()


class ForgotForm(PageForm):
    email = EmailField(_l("E-mail"), validators=[
        InputRequired(_l("Please enter your e-mail address.")), Length(max=254)])


def _program_choices(field: SelectMultipleField) -> None:
    field.choices = [SelectChoice(p.id, p.name) for p in programs.all_programs()]


def _show_errors(form: PageForm, error: DomainError) -> None:
    """Put a service's refusal on the form: beside the field it names, else above the form."""
    placed = False
    for named in error.extra.get("errors") or []:
        field = getattr(form, str(named.get("field")), None)
        if field is not None:
            field.errors = [*field.errors, named.get("message", error.detail)]
            placed = True
    if not placed:
        form.form_errors.append(error.detail)


# --- The admins' pages --------------------------------------------------------------------------


@bp.route("/accounts", methods=["GET", "POST"], endpoint="accounts")
@console_page(admin=True)
def accounts_page() -> ResponseReturnValue:
    """The accounts and the till's staff; inviting someone (POST)."""
    form = InviteForm()
    _program_choices(form.program_ids)
    if request.method == "POST":
        if form.validate():
            try:
                link = links.invite(form.email.data or "", form.role.data or "",
                                    form.program_ids.data or [], name=form.name.data,
                                    language=form.language.data or "en")
            except DomainError as error:
                _show_errors(form, error)
            else:
                return _link_made(link, TokenPurpose.INVITE)
        return _accounts_list(form, 422)
    return _accounts_list(form, 200)


def _accounts_list(form: InviteForm, status: int) -> tuple[str, int]:
    return render_template("console/accounts.html", form=form,
                           accounts=accounts.all_accounts(),
                           staff=accounts.staff_members(),
                           mail_configured=mail.configured()), status


def _link_made(link: links.Link, purpose: TokenPurpose) -> ResponseReturnValue:
    """After an invitation or reset link was made: say it was e-mailed, or show it."""
    if link.mailed:
        message = (_("Invitation sent to %(email)s.", email=link.account.email)
                   if purpose is TokenPurpose.INVITE else
                   _("Reset link sent to %(email)s.", email=link.account.email))
        flash(message)
        return redirect(url_for("console.account_page", account_id=link.account.id), 303)
    return _account_page(link.account, _account_form(link.account), 201,
                         link=link, purpose=purpose)


def _account_form(account: Account) -> AccountForm:
    form = AccountForm(obj=account, data={"role": account.role.value,
                                          "program_ids": [p.id for p in account.programs]})
    _program_choices(form.program_ids)
    if account.role is AccountRole.STAFF:  # made with create-user: shown as it is
        form.role.choices = [*ROLE_CHOICES,
                             SelectChoice(AccountRole.STAFF.value, _l("Staff: the till only"))]
    return form


def _account_page(account: Account, form: AccountForm, status: int, **extra: Any,
                  ) -> tuple[str, int]:
    return render_template("console/account_admin.html", subject=account, form=form,
                           action_form=ActionForm(), mail_configured=mail.configured(),
                           hours=_hours, **extra), status


def _hours(purpose: TokenPurpose) -> int:
    return int(links.LIFETIMES[purpose].total_seconds() // 3600)


@bp.route("/accounts/<int:account_id>", methods=["GET", "POST"])
@console_page(admin=True)
def account_page(account_id: int) -> ResponseReturnValue:
    """An account: change its role, programs, name, whether it is active (POST)."""
    subject = _account_or_404(account_id)
    form = _account_form(subject)
    if request.method == "POST":
        if form.validate():
            try:
                changes = accounts.update(subject, role=form.role.data or subject.role,
                                          program_ids=form.program_ids.data or [],
                                          active=form.active.data, name=form.name.data)
            except DomainError as error:
                _show_errors(form, error)
            else:
                flash(_("Saved.") if changes else _("Nothing changed."))
                return redirect(url_for("console.account_page", account_id=subject.id), 303)
        return _account_page(subject, form, 422)
    return _account_page(subject, form, 200)


def _account_or_404(account_id: int) -> Account:
    try:
        return accounts.get(account_id)
    except NotFound:
        abort(404)


@bp.post("/accounts/<int:account_id>/invitation")
@console_page(admin=True)
def resend_invitation(account_id: int) -> ResponseReturnValue:
    subject = _account_or_404(account_id)
    try:
        link = links.resend_invitation(subject)
    except DomainError as error:
        form = _account_form(subject)
        form.form_errors.append(error.detail)
        return _account_page(subject, form, 409)
    return _link_made(link, TokenPurpose.INVITE)


@bp.post("/accounts/<int:account_id>/reset-link")
@console_page(admin=True)
def make_reset_link(account_id: int) -> ResponseReturnValue:
    return _link_made(links.reset_link(_account_or_404(account_id)), TokenPurpose.RESET)


@bp.post("/accounts/<int:account_id>/sign-out-everywhere")
@console_page(admin=True)
def sign_account_out(account_id: int) -> ResponseReturnValue:
    subject = _account_or_404(account_id)
    accounts.sign_out_everywhere(subject)
    if subject.id == current_account().id:
        return redirect(url_for("console.login"), 303)
    flash(_("%(email)s is signed out on every browser.", email=subject.email))
    return redirect(url_for("console.account_page", account_id=subject.id), 303)


# --- One's own account --------------------------------------------------------------------------


@bp.route("/account", methods=["GET", "POST"])
@console_page
def own_account() -> ResponseReturnValue:
    """The signed-in account's name and language (POST), and links to the password form."""
    account = current_account()
    form = OwnAccountForm(obj=account)
    if request.method == "POST":
        if form.validate():
            try:
                accounts.update(account, name=form.name.data,
                                language=form.language.data or account.language)
            except DomainError as error:
                _show_errors(form, error)
            else:
                flash(_("Saved."))
                return redirect(url_for("console.own_account", lang=account.language), 303)
        return _own_page(form, PasswordChangeForm(formdata=None), 422)
    return _own_page(form, PasswordChangeForm(formdata=None), 200)


def _own_page(form: OwnAccountForm, password_form: PasswordChangeForm,
              status: int) -> tuple[str, int]:
    return render_template("console/account_own.html", form=form,
                           password_form=password_form, action_form=ActionForm()), status


@bp.post("/account/password")
@console_page
def change_password() -> ResponseReturnValue:
    account = current_account()
    form = PasswordChangeForm()
    if form.validate():
        try:
            accounts.change_password(account, form.current_password.data or "",
                                     form.password.data or "")
        except DomainError as error:
            if error.code == "wrong-password":
                form.current_password.errors = [_("That is not your current password.")]
            else:
                _show_errors(form, error)
        else:
            console_session.sign_in(account)  # this browser stays signed in
            flash(_("Your password is changed. Other browsers are signed out."))
            return redirect(url_for("console.own_account"), 303)
    return _own_page(OwnAccountForm(obj=account, formdata=None), form, 422)


@bp.post("/account/sign-out-everywhere")
@console_page
def sign_out_everywhere() -> ResponseReturnValue:
    accounts.sign_out_everywhere(current_account())
    return redirect(url_for("console.login"), 303)


# --- The one-time links and the forgotten password (no sign-in) ----------------------------------


@bp.route("/welcome/<token>", methods=["GET", "POST"])
def welcome(token: str) -> ResponseReturnValue:
    """An invitation: choose a first password, then in."""
    return _set_password(token, TokenPurpose.INVITE)


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> ResponseReturnValue:
    """A reset link: choose a new password, then in."""
    return _set_password(token, TokenPurpose.RESET)


def _set_password(token: str, purpose: TokenPurpose) -> ResponseReturnValue:
    try:
        account = links.account_for(token, purpose)
    except links.LinkGone:
        return _gone()
    form = SetPasswordForm()
    if request.method == "POST" and form.validate():
        try:
            links.accept(token, purpose, form.password.data or "")
        except links.LinkGone:
            return _gone()
        except DomainError as error:
            _show_errors(form, error)
        else:
            if accounts.may_use_console(account):
                console_session.sign_in(account)
                return redirect(url_for("console.index"), 303)
            return render_template("console/password_set.html"), 200
    status = 422 if request.method == "POST" else 200
    return render_template("console/set_password.html", form=form, subject=account,
                           purpose=purpose.value), status


def _gone() -> tuple[str, int]:
    return render_template("console/link_gone.html"), 410


@bp.route("/forgot", methods=["GET", "POST"])
def forgot() -> ResponseReturnValue:
    """Ask for a reset link by e-mail. The answer is the same whether or not the address has
    an account (and it is only ever e-mailed)."""
    form = ForgotForm()
    if request.method == "POST" and form.validate():
        email = form.email.data or ""
        rate = str(current_app.config.get("FORGOT_RATE_LIMIT") or DEFAULT_FORGOT_RATE_LIMIT)
        try:
            ratelimit.check("console-forgot", rate, ratelimit.by_address())
            ratelimit.check("console-forgot-email", rate,
                            "email:" + accounts.email_key(email)[:254])
        except ratelimit.RateLimited as error:
            form.form_errors.append(_("Too many requests. Try again later."))
            return render_template("console/forgot.html", form=form,
                                   mail_configured=mail.configured()), 429, error.headers
        links.ask_for_reset(email)
        return redirect(url_for("console.forgot", asked="1"), 303)
    status = 422 if request.method == "POST" else 200
    return render_template("console/forgot.html", form=form, asked=bool(request.args.get("asked")),
                           mail_configured=mail.configured()), status
