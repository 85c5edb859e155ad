"""Creating accounts, checking their passwords, granting programs, signing out everywhere.

Every change is recorded in the audit trail (:mod:`app.audit`) in its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import audit
from app.access import EVERY_PROGRAM, Scope
from app.accounts import passwords
from app.accounts.models import Account, AccountRole
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty.models import Program
from app.timeutil import utcnow
from passes.languages import LANGUAGES

CONSOLE_ROLES = frozenset({AccountRole.ADMIN, AccountRole.MARKETER})


def email_key(email: str) -> str:
    """How addresses are compared: trimmed and lower-cased."""
    return email.strip().lower()


def check_email(email: str) -> str:
    """``email`` trimmed, if it looks like an address; else 422."""
    email = email.strip()
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or len(email) > 254 or any(c.isspace() for c in email):
        raise Unprocessable(f"{email!r} is not an e-mail address.",
                            errors={"email": ["Not an e-mail address."]})
    return email


def check_password(password: str) -> None:
    problem = passwords.problem_with(password)
    if problem:
        raise Unprocessable(problem, code="weak-password", errors={"password": [problem]})


def create(email: str, role: AccountRole | str, *, password: str | None = None,
           name: str | None = None, language: str = "en",
           program_ids: Iterable[int] = ()) -> Account:
    """Create an account (without a password, it can only be used through an invitation).
    Commits; 409 ``conflict`` when the address has an account already."""
    email = check_email(email)
    role = AccountRole(role)
    if language not in LANGUAGES:
        raise Unprocessable(f"Unknown language {language!r}.",
                            errors={"language": ["Not one of " + ", ".join(LANGUAGES) + "."]})
    if password is not None:
        check_password(password)
    account = Account(email=email, email_key=email_key(email), role=role, name=name,
                      language=language,
                      password_hash=passwords.hash_password(password) if password else None)
    account.programs = _programs(program_ids)
    db.session.add(account)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"An account for {email} exists already.") from None
    audit.record("account.create", target=f"account:{account.id}",
                 details={"email": email, "role": role.value,
                          "programs": [p.id for p in account.programs]})
    db.session.commit()
    return account


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


def set_password(account: Account, password: str) -> None:
    """Set a new password and end every session of the account (the caller signs in anew).
    Commits."""
    check_password(password)
    account.password_hash = passwords.hash_password(password)
    account.session_version += 1
    audit.record("account.password", target=f"account:{account.id}")
    db.session.commit()


def sign_out_everywhere(account: Account) -> None:
    """End every session of the account, on every browser. Commits."""
    account.session_version += 1
    audit.record("account.sign-out-everywhere", target=f"account:{account.id}")
    db.session.commit()


def may_use_console(account: Account) -> bool:
    return account.active and account.role in CONSOLE_ROLES


def scope_of(account: Account) -> Scope:
    """The programs an account reaches: all for an admin, those granted for anyone else."""
    if account.role is AccountRole.ADMIN:
        return EVERY_PROGRAM
    return Scope(frozenset(p.id for p in account.programs))


def actor_of(account: Account) -> audit.Actor:
    return audit.Actor(f"account:{account.id}", account.email)
