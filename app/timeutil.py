"""Timezone-aware UTC timestamps that read back aware on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes in UTC; SQLite drops the offset, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def now() -> datetime:
    """The current time for rules that tests move through time (PIN locks, link expiry):
    the app's ``CLOCK`` setting (a callable giving epoch seconds, e.g. tests' FakeClock)
    when one is set, else the real clock. (Not an operator's setting: a ``POINTPASS_CLOCK``
    from the environment is text, not a clock, and is ignored.)"""
    if has_app_context():
        clock = current_app.config.get("CLOCK")
        if callable(clock):
            return datetime.fromtimestamp(clock(), UTC)
    return utcnow()
