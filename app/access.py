"""Which programs the caller of this request may see and change.

Whatever authenticated the request (an API key, a console session) calls :func:`limit_to`
with the programs it reaches; services and views ask :func:`program` for a program by id,
which answers 404 for one outside the caller's reach, exactly as for one that does not
exist (so a marketer cannot even learn which ids other programs have). Lists filter with
:func:`visible`. Nobody limited means every program: the command line, jobs, public pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, has_app_context
from sqlalchemy import ColumnElement, true

from app.errors import DomainError, NotFound


@dataclass(frozen=True)
class Scope:
    """The programs a caller reaches: ``program_ids``, or every one when it is None."""

    program_ids: frozenset[int] | None = None

    def allows(self, program_id: int | None) -> bool:
        return self.program_ids is None or program_id in self.program_ids

    def where(self, column: ColumnElement[int] | object) -> ColumnElement[bool]:
        """A filter on a program id column: true for every row the caller reaches."""
        if self.program_ids is None:
            return true()
        return column.in_(sorted(self.program_ids))  # type: ignore[attr-defined,no-any-return]


EVERY_PROGRAM = Scope(None)


def limit_to(scope: Scope) -> None:
    """Let this request reach ``scope``'s programs only."""
    g.program_scope = scope


def current() -> Scope:
    """The programs this request may reach."""
    if has_app_context():
        scope = g.get("program_scope")
        if isinstance(scope, Scope):
            return scope
    return EVERY_PROGRAM


def check(program_id: int, what: str) -> None:
    """404 ``not-found`` (saying "No {what}.") unless the caller reaches ``program_id``: for
    objects found by another key (a card's serial, a reward's id) that belong to a program."""
    if not current().allows(program_id):
        raise NotFound(f"No {what}.")


class NeedsEveryProgram(DomainError, code="needs-every-program", status=403,
                        title="Needs every program"):
    """The operation concerns the whole service (not one program's objects): a caller limited
    to some programs may not do it."""


def require_every_program(what: str) -> None:
    """403 ``needs-every-program`` unless the caller reaches every program: for operations on
    the whole service (making programs, API keys, the outbox), which a caller limited to some
    programs must not do (``what`` says which, e.g. "Creating a program")."""
    if current().program_ids is not None:
        raise NeedsEveryProgram(f"{what} needs a key that reaches every program; this one is "
                                "limited to some.")
