"""Bearer-token authentication for the API, with one role per key."""

from __future__ import annotations

import hmac

from apiflask import HTTPTokenAuth

from app import access, audit
from app.auth import keys
from app.auth.keys import Principal
from app.auth.models import Role


def tokens_match(given: str, expected: str) -> bool:
    """Whether a token from a request equals the expected one, in constant time. Compared as
    bytes: ``hmac.compare_digest`` raises on a str with non-ASCII characters (a crafted URL
    or header), which must be a mismatch, not an error."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


auth = HTTPTokenAuth(scheme="Bearer", description="An API key from `pointpass create-key`.")


@auth.verify_token
def _verify(token: str) -> Principal | None:
    principal = keys.authenticate(token) if token else None
    if principal is not None:
        audit.act_as(audit.Actor(f"api_key:{principal.id}", principal.name))
        access.limit_to(access.Scope(principal.program_ids))
    return principal


@auth.get_user_roles
def _roles(key: Principal) -> list[str]:
    return [key.role.value]


def current_key() -> Principal:
    """The key that authenticated the current request."""
    key = auth.current_user
    if key is None:
        raise RuntimeError("current_key() called outside an authenticated request")
    return key  # type: ignore[no-any-return]


def actor() -> str:
    """How the ledger records the caller of the current request."""
    return f"api_key:{current_key().id}"


ALL_ROLES = [r.value for r in Role]
