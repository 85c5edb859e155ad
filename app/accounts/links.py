"""One-time links: invitations (set a first password) and password resets.

A link carries a secret (``secrets.token_urlsafe(32)``); only its SHA-256 is stored, in an
:class:`AccountToken` that expires (72 hours for an invitation, 1 hour for a reset, by
:func:`app.timeutil.now`, so tests move the clock) and is used up by the first acceptance: a
conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at > now``, so two browsers posting
the same link at once cannot both set a password. A new link for an account voids its older
unused links of the same purpose. The link is e-mailed when ``POINTPASS_SMTP_URL`` is set;
otherwise (or when sending failed) the caller shows it to copy. Every change is recorded in
the audit trail, never with the link itself.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, update

from app import audit, background
from app.accounts import mail
from app.accounts import service as accounts
from app.accounts.models import Account, AccountRole, AccountToken, TokenPurpose
from app.errors import Conflict, DomainError
from app.extensions import db
from app.timeutil import now

LIFETIMES = {TokenPurpose.INVITE: timedelta(hours=72), TokenPurpose.RESET: timedelta(hours=1)}
PATHS = {TokenPurpose.INVITE: "/console/welcome/", TokenPurpose.RESET: "/console/reset/"}


class LinkGone(DomainError, code="link-gone", status=410, title="Link used or expired"):
    """The link was used already, replaced by a newer one, or has expired."""


@dataclass(frozen=True)
class Link:
    """A link made for ``account``: the URL, and whether it was e-mailed (``sent``)."""

    account: Account
    url: str
    sent: mail.Sent

    @property
    def mailed(self) -> bool:
        return self.sent is mail.Sent.SENT


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _issue(account: Account, purpose: TokenPurpose) -> str:
    """A new link of ``purpose`` for ``account`` (older unused ones voided); the caller
    commits. Returns the URL."""
    moment = now()
    db.session.execute(
        update(AccountToken)
        .where(AccountToken.account_id == account.id, AccountToken.purpose == purpose,
               AccountToken.used_at.is_(None))
        .values(used_at=moment))
    token = secrets.token_urlsafe(32)
    db.session.add(AccountToken(account_id=account.id, purpose=purpose,
                                token_hash=token_hash(token),
                                expires_at=moment + LIFETIMES[purpose],
                                created_by=audit.current_actor().ref, created_at=moment))
    return current_app.config["BASE_URL"] + PATHS[purpose] + token


def invite(email: str, role: AccountRole | str, program_ids: Iterable[int] = (), *,
           name: str | None = None, language: str = "en") -> Link:
    """Create an account without a password and a 72-hour invitation link for it, e-mailed
    when mail is configured. Commits; 409 when the address has an account already."""
    account = accounts.add(email, role, name=name, language=language,
                           program_ids=program_ids, action="account.invite")
    url = _issue(account, TokenPurpose.INVITE)
    db.session.commit()
    return Link(account, url, _send_invitation(account, url))


def resend_invitation(account: Account) -> Link:
    """A new invitation link for an account that has not set a password yet (the old link
    stops working). Commits; 409 when the account has a password already."""
    if account.password_hash is not None:
        raise Conflict(f"{account.email} has accepted the invitation already: make a reset "
                       "link instead.")
    url = _issue(account, TokenPurpose.INVITE)
    audit.record("account.invite-again", target=f"account:{account.id}")
    db.session.commit()
    return Link(account, url, _send_invitation(account, url))


def reset_link(account: Account) -> Link:
    """A one-hour reset link for ``account`` made by an admin: e-mailed when mail is
    configured, and shown to copy otherwise. Commits."""
    url = _issue(account, TokenPurpose.RESET)
    audit.record("account.reset-link", target=f"account:{account.id}")
    db.session.commit()
    return Link(account, url, _send_reset(account, url))


def ask_for_reset(email: str) -> None:
    """Someone forgot their password: :func:`request_reset` runs as a job once this
    transaction commits (commits), so the answer takes as long whether or not a message is
    sent, and its timing does not tell which addresses have accounts."""
    background.enqueue_after_commit(request_reset, email)
    db.session.commit()


def request_reset(email: str) -> None:
    """Someone asked for a reset link for ``email`` on the forgotten-password page (run as a
    background job). The page answers the same whether or not the address has an account:
    only an active console account gets a link, and only by e-mail (never shown), so nothing
    happens without ``POINTPASS_SMTP_URL``."""
    account = accounts.by_email(email) if len(email) <= 254 else None
    if account is None or not accounts.may_use_console(account) or not mail.configured():
        return
    url = _issue(account, TokenPurpose.RESET)
    audit.record("account.reset-request", target=f"account:{account.id}",
                 actor=audit.Actor("public", "forgotten-password page"))
    db.session.commit()
    _send_reset(account, url)


def account_for(token: str, purpose: TokenPurpose) -> Account:
    """The account a still-good link of ``purpose`` is for; 410 ``link-gone`` otherwise (a
    link never issued answers the same as a used one)."""
    found = db.session.scalar(
        select(AccountToken).where(AccountToken.token_hash == token_hash(token),
                                   AccountToken.purpose == purpose))
    if found is None or found.used_at is not None or found.expires_at <= now() \
            or not found.account.active:
        raise LinkGone("This link was used already or has expired.")
    return found.account


def accept(token: str, purpose: TokenPurpose, password: str) -> Account:
    """Set the password of the link's account and use the link up, once: of two requests
    with the same link, one wins and the other gets 410 ``link-gone``. Ends the account's
    other sessions (the caller signs this one in). Commits."""
    account = account_for(token, purpose)
    accounts.check_password(password)  # before the link is used up: a weak one may retry
    moment = now()
    used = db.session.execute(
        update(AccountToken)
        .where(AccountToken.token_hash == token_hash(token), AccountToken.purpose == purpose,
               AccountToken.used_at.is_(None), AccountToken.expires_at > moment)
        .values(used_at=moment))
    if used.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise LinkGone("This link was used already or has expired.")
    action = "account.accept-invite" if purpose is TokenPurpose.INVITE else "account.password"
    accounts.set_password(account, password, action=action, actor=accounts.actor_of(account))
    return account


def _send_invitation(account: Account, url: str) -> mail.Sent:
    hours = int(LIFETIMES[TokenPurpose.INVITE].total_seconds() // 3600)
    with force_locale(account.language):
        greeting = (_("Hello %(name)s,", name=account.name) if account.name
                    else _("Hello,"))
        body = "\n\n".join([
            greeting,
            _("You are invited to the Pointpass console. Choose your password here (the link "
              "works once, for %(num)d hours):", num=hours),
            url,
            _("You will sign in with this address: %(email)s", email=account.email)]) + "\n"
        subject = _("Your invitation to the Pointpass console")
    return mail.send(account.email, subject, body, purpose="invitation")


def _send_reset(account: Account, url: str) -> mail.Sent:
    with force_locale(account.language):
        body = "\n\n".join([
            _("Someone asked to reset the password of your Pointpass console account "
              "(%(email)s). Choose a new password here (the link works once, for one hour):",
              email=account.email),
            url,
            _("If it was not you, ignore this message: your password stays as it is.")]) + "\n"
        subject = _("Reset your Pointpass console password")
    return mail.send(account.email, subject, body, purpose="password reset")
