"""Small helpers for statements that differ by database."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.extensions import db

INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def insert(model: Any) -> Any:
    """An INSERT for the session's database that supports ``on_conflict_do_*``."""
    return INSERT[db.session.get_bind().dialect.name](model)


def upsert(model: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Insert a row or update it where ``key`` matches (not committed)."""
    statement = insert(model).values(**key, **values)
    db.session.execute(statement.on_conflict_do_update(index_elements=list(key), set_=values))
