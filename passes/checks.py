"""Checks the Apple and Google builders share.

Each raises the builder's own error class, a :class:`ContentError` naming the offending field
(dotted for nested values, e.g. ``locations[3].latitude``) and what is wrong with it.
"""

from __future__ import annotations


class ContentError(ValueError):
    """Content a wallet would reject or display wrongly: ``field`` and ``problem``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_text(name: str, value: object, *, max_length: int,
               error: type[ContentError]) -> str:
    """``value`` if it is a non-empty string of at most ``max_length`` characters, no NUL."""
    if not isinstance(value, str) or not value.strip():
        raise error(name, "must be a non-empty string")
    if len(value) > max_length:
        raise error(name, f"is longer than {max_length} characters")
    if "\x00" in value:
        raise error(name, "contains a NUL character")
    return value


def set_field(obj: object, name: str, value: object) -> None:
    """Set a field of a frozen dataclass (normalizing it in ``__post_init__``)."""
    object.__setattr__(obj, name, value)
