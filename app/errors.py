"""Domain errors raised by services; the API turns each into an RFC 9457 problem response."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the domain refuses. ``code`` names the problem type; ``status`` its HTTP code."""

    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code  # a more specific problem type than the class's
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class NotFound(DomainError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InsufficientPoints(Conflict):
    code = "insufficient-points"
    title = "Insufficient points"


class CardVoided(DomainError):
    status = 410
    code = "card-voided"
    title = "Card voided"


class Unprocessable(DomainError):
    """Well-formed input that cannot be applied; ``errors`` lists the fields at fault."""

    status = 422
    code = "unprocessable"
    title = "Unprocessable request"


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency-key-reused"
    title = "Idempotency key reused"


class CodeAlreadyUsed(Conflict):
    code = "code-already-used"
    title = "Code already used"


class InvalidCode(Unprocessable):
    code = "invalid-code"
    title = "Invalid code"
