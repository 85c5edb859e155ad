"""Creating accounts, checking their passwords, granting programs, signing out everywhere.

Every change is recorded in the audit trail (:mod:`app.audit`) in its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import audit
from app.access import EVERY_PROGRAM, Scope
from app.accounts import passwords
from app.accounts.models import Account, AccountRole
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty.models import Program
from app.staff.models import StaffMember
from app.timeutil import utcnow
from passes.languages import LANGUAGES

CONSOLE_ROLES = frozenset({AccountRole.ADMIN, AccountRole.MARKETER})


def field_error(field: str, message: str) -> list[dict[str, str]]:
    """A problem's ``errors`` (app.problems.FieldErrorSchema) naming one field at fault."""
    return [{"location": "json", "field": field, "message": message}]


def email_key(email: str) -> str:
    """How addresses are compared: trimmed and lower-cased."""
    return email.strip().lower()


def check_email(email: str) -> str:
    """``email`` trimmed, if it looks like an address; else 422."""
    email = email.strip()
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or len(email) > 254 or any(c.isspace() for c in email):
        raise Unprocessable(f"{email!r} is not an e-mail address.",
                            errors=field_error("email", "Not an e-mail address."))
    return email


def check_password(password: str) -> None:
    problem = passwords.problem_with(password)
    if problem:
        raise Unprocessable(problem, code="weak-password", errors=field_error("password", problem))


def create(email: str, role: AccountRole | str, *, password: str | None = None,
           name: str | None = None, language: str = "en",
           program_ids: Iterable[int] = ()) -> Account:
    """Create an account (without a password, it can only be used through an invitation).
    Commits; 409 ``conflict`` when the address has an account already."""
    account = add(email, role, password=password, name=name, language=language,
                  program_ids=program_ids, action="account.create")
    db.session.commit()
    return account


def add(email: str, role: AccountRole | str, *, password: str | None = None,
        name: str | None = None, language: str = "en", program_ids: Iterable[int] = (),
        action: str) -> Account:
    """:func:`create` without the commit, recorded as ``action`` (the caller commits)."""
    email = check_email(email)
    role = AccountRole(role)
    check_language(language)
    if password is not None:
        check_password(password)
    account = Account(email=email, email_key=email_key(email), role=role,
                      name=check_name(name), language=language,
                      password_hash=passwords.hash_password(password) if password else None)
    account.programs = _programs(program_ids)
    db.session.add(account)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"An account for {email} exists already.",
                       errors=field_error("email", "An account with this address exists already.")
                       ) from None
    audit.record(action, target=f"account:{account.id}",
                 details={"email": email, "role": role.value,
                          "programs": [p.id for p in account.programs]})
    return account


def check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise Unprocessable(f"Unknown language {language!r}.",
                            errors=field_error("language",
                                               "Not one of " + ", ".join(LANGUAGES) + "."))


def check_name(name: str | None) -> str | None:
    """``name`` trimmed (None when empty); 422 when longer than 120 characters."""
    name = (name or "").strip()
    if len(name) > 120:
        raise Unprocessable("A name has at most 120 characters.",
                            errors=field_error("name", "At most 120 characters."))
    return name or None


def _programs(program_ids: Iterable[int]) -> list[Program]:
    ids = sorted(set(program_ids))
    found = db.session.scalars(select(Program).where(Program.id.in_(ids))).all() if ids else []
    missing = set(ids) - {p.id for p in found}
    if missing:
        raise NotFound(f"No program with id {min(missing)}.")
    return list(found)


def get(account_id: int) -> Account:
    account = db.session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account with id {account_id}.")
    return account


def by_email(email: str) -> Account | None:
    return db.session.scalar(select(Account).where(Account.email_key == email_key(email)))


def all_accounts() -> Sequence[Account]:
    return db.session.scalars(select(Account).order_by(Account.id)).all()


def authenticate(email: str, password: str) -> Account | None:
    """The active account with this address and password, else None (in about the same time
    whether or not the address has an account). A good sign-in is recorded (and an old hash
    redone with today's parameters); commits."""
    account = by_email(email) if len(email) <= 254 else None
    stored = account.password_hash if account is not None else None
    if not passwords.check(password[:passwords.MAX_LENGTH], stored) or account is None \
            or not account.active:
        return None
    if passwords.needs_rehash(stored or ""):
        account.password_hash = passwords.hash_password(password)
    account.last_sign_in_at = utcnow()
    db.session.commit()
    return account


def set_password(account: Account, password: str, *, action: str = "account.password",
                 actor: audit.Actor | None = None) -> None:
    """Set a new password and end every session of the account (the caller signs in anew).
    Commits."""
    check_password(password)
    account.password_hash = passwords.hash_password(password)
    account.session_version += 1
    audit.record(action, target=f"account:{account.id}", actor=actor)
    db.session.commit()


def change_password(account: Account, current: str, new: str) -> None:
    """The account's own password change: 422 unless ``current`` is its password now. Ends
    its other sessions. Commits."""
    if not passwords.check(current[:passwords.MAX_LENGTH], account.password_hash):
        raise Unprocessable("The current password is not right.", code="wrong-password",
                            errors=field_error("current_password", "Not the current password."))
    set_password(account, new)


def sign_out_everywhere(account: Account) -> None:
    """End every session of the account, on every browser. Commits."""
    account.session_version += 1
    audit.record("account.sign-out-everywhere", target=f"account:{account.id}")
    db.session.commit()


UNSET: Any = object()


def update(account: Account, *, role: AccountRole | str = UNSET,
           program_ids: Iterable[int] = UNSET, active: bool = UNSET,
           name: str | None = UNSET, language: str = UNSET) -> dict[str, Any]:
    """Change what is given; returns the changes (recorded as ``account.update``, or
    ``account.deactivate`` when the account is switched off, which ends its sessions).
    409 when the change would leave no active admin. Commits."""
    changes: dict[str, Any] = {}
    was_admin = account.role is AccountRole.ADMIN and account.active
    if role is not UNSET and AccountRole(role) is not account.role:
        account.role = AccountRole(role)
        changes["role"] = account.role.value
    if program_ids is not UNSET:
        chosen = _programs(program_ids)
        if [p.id for p in chosen] != [p.id for p in account.programs]:
            account.programs = chosen
            changes["programs"] = [p.id for p in chosen]
    if active is not UNSET and bool(active) != account.active:
        account.active = bool(active)
        changes["active"] = account.active
    if name is not UNSET and check_name(name) != account.name:
        account.name = check_name(name)
        changes["name"] = account.name
    if language is not UNSET and language != account.language:
        check_language(language)
        account.language = language
        changes["language"] = language
    if not changes:
        return changes
    db.session.flush()
    admins = select(func.count()).select_from(Account).where(
        Account.role == AccountRole.ADMIN, Account.active.is_(True))
    if was_admin and ("role" in changes or "active" in changes) \
            and not db.session.scalar(admins):
        db.session.rollback()
        raise Conflict("That would leave no active admin account.")
    deactivated = changes.get("active") is False
    if deactivated:
        account.session_version += 1
    audit.record("account.deactivate" if deactivated else "account.update",
                 target=f"account:{account.id}", details=changes)
    db.session.commit()
    return changes


def staff_members() -> Sequence[StaffMember]:
    """The till's staff members (they sign in with a PIN, not here): shown beside the
    accounts, read-only."""
    return db.session.scalars(select(StaffMember).order_by(StaffMember.name,
                                                           StaffMember.id)).all()


def may_use_console(account: Account) -> bool:
    return account.active and account.role in CONSOLE_ROLES


def scope_of(account: Account) -> Scope:
    """The programs an account reaches: all for an admin, those granted for anyone else."""
    if account.role is AccountRole.ADMIN:
        return EVERY_PROGRAM
    return Scope(frozenset(p.id for p in account.programs))


def actor_of(account: Account) -> audit.Actor:
    return audit.Actor(f"account:{account.id}", account.email)
