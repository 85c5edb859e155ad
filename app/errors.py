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

    def __init_subclass__(cls, *, code: str, status: int | None = None,
                          title: str | None = None, **kwargs: Any) -> None:
        """A problem type: ``class NotFound(DomainError, code="not-found", status=404)``."""
        super().__init_subclass__(**kwargs)
        cls.code = code
        cls.title = title or code.replace("-", " ").capitalize()
        if status is not None:
            cls.status = status


# The problem types, one a line: ``code`` is the type's last word, ``title`` (the code in words
# unless given) and ``status`` go into the response (the status unless given: the parent's).
class Unauthorized(DomainError, code="unauthorized", status=401): ...
class NotFound(DomainError, code="not-found", status=404): ...
class Conflict(DomainError, code="conflict", status=409): ...
class InsufficientPoints(Conflict, code="insufficient-points"): ...
class CardVoided(DomainError, code="card-voided", status=410): ...
class Gone(DomainError, code="gone", status=410): ...
class MemberErased(Gone, code="member-erased"): ...
class CardErased(Gone, code="card-erased"): ...
class Unprocessable(DomainError, code="unprocessable", status=422, title="Unprocessable request"):
    """Well-formed input that cannot be applied; ``errors`` lists the fields at fault."""
class IdempotencyKeyReused(Unprocessable, code="idempotency-key-reused"): ...
class CodeAlreadyUsed(Conflict, code="code-already-used"): ...
class InvalidCode(Unprocessable, code="invalid-code"): ...
class LowContrast(Unprocessable, code="low-contrast", title="Colours too close"): ...
class InvalidImage(Unprocessable, code="invalid-image"): ...
class ImageTooLarge(DomainError, code="image-too-large", status=413): ...
class UnsupportedMediaType(DomainError, code="unsupported-media-type", status=415): ...
