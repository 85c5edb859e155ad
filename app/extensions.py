"""Flask extensions, created unbound and attached in :func:`app.create_app`."""

from __future__ import annotations

import enum

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Enum, MetaData
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def stored_enum(cls: type[enum.Enum], name: str) -> Enum:
    """A column type for ``cls``: its values stored as plain strings with a CHECK constraint
    named ``name`` (portable, and easy to read in psql)."""
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda e: [m.value for m in e])


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
