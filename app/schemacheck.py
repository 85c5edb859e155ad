"""Is the database's schema the one this code was written for?

Compares the Alembic revision recorded in the database with the head of the code's
migrations. The database is read on connections of its own (no pool, short timeouts), so a
dead or hung database answers "unreachable" within seconds instead of holding a request.
Nothing here connects when the app is created: the service starts without its database.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from functools import cache

import psycopg
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import create_engine, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

EXTENSION = "pointpass.schemacheck"
TIMEOUT_SECONDS = 2
# How long a revision read after a failed statement is reused, so a burst of failing requests
# asks the database once.
CACHE_SECONDS = 5.0
UPGRADE = "run `pointpass db upgrade`"


@dataclass(frozen=True)
class Schema:
    """What the database holds compared to the code: ``ready`` to serve, or ``behind``."""

    ready: bool
    behind: bool
    detail: str  # "ok", or what is wrong and what to do


@dataclass
class SchemaCheck:
    engine: Engine  # connections of its own, short timeouts
    heads: frozenset[str]  # the code's migration head(s)
    known: frozenset[str]  # every revision the code has
    _cached: tuple[float, Schema] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)


VERSION_TABLE = "alembic_version"  # Alembic's default table, which Flask-Migrate keeps


def init_app(app: Flask) -> None:
    """Read the code's migrations (files only) and prepare the probe engine (no connection)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        connect_args: dict[str, object] = {"timeout": TIMEOUT_SECONDS}
    else:
        connect_args = {"connect_timeout": TIMEOUT_SECONDS,
                        "options": f"-c statement_timeout={TIMEOUT_SECONDS * 1000}"}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args,
                           hide_parameters=True)
    heads, known = _revisions(str(app.extensions["migrate"].directory))
    app.extensions[EXTENSION] = SchemaCheck(engine=engine, heads=heads, known=known)


@cache
def _revisions(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """The head(s) and every revision of the migrations in ``directory``, read once per
    process: they are part of the code, which does not change while it runs (Alembic reads
    and executes every migration file, ~10 ms, for each app made, which the tests do for
    every test)."""
    script = ScriptDirectory(directory)
    return (frozenset(script.get_heads()),
            frozenset(revision.revision for revision in script.walk_revisions()))


def _check(app: Flask) -> SchemaCheck:
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


def ping(app: Flask) -> None:
    """Ask the database for ``SELECT 1``; raises SQLAlchemy's error when it cannot answer."""
    with _check(app).engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")


def _database_heads(connection: Connection) -> frozenset[str]:
    # Read alembic's table directly: its MigrationContext logs two INFO lines each time, and
    # load balancers ask /readyz every few seconds.
    if not inspect(connection).has_table(VERSION_TABLE):
        return frozenset()
    return frozenset(connection.exec_driver_sql("SELECT version_num FROM alembic_version")
                     .scalars())


def schema(app: Flask) -> Schema:
    """The database's schema against the code's; raises SQLAlchemy's error when the database
    cannot be read."""
    check = _check(app)
    with check.engine.connect() as connection:
        current = _database_heads(connection)
    heads = ", ".join(sorted(check.heads))
    if current == check.heads:
        return Schema(ready=True, behind=False, detail="ok")
    if not current:
        return Schema(ready=False, behind=True,
                      detail=f"empty: the database has no schema yet; {UPGRADE}")
    newer = current - check.known
    if newer:
        # A migration this code does not know was applied for a newer release (migrations
        # run before a rolling deploy): this code keeps serving until it is replaced.
        return Schema(ready=True, behind=False,
                      detail=f"ok: database at {', '.join(sorted(newer))}, newer than this "
                      f"code ({heads})")
    return Schema(ready=False, behind=True,
                  detail=f"behind: database at {', '.join(sorted(current))}, this code at "
                  f"{heads}; {UPGRADE}")


def behind_code(app: Flask) -> Schema | None:
    """The schema when it is behind the code, else ``None`` (also when it cannot be read).
    Reused for ``CACHE_SECONDS``."""
    check = _check(app)
    with check._lock:
        cached = check._cached
    if cached is None or time.monotonic() - cached[0] > CACHE_SECONDS:
        try:
            found = schema(app)
        except sa_exc.SQLAlchemyError:
            return None
        cached = (time.monotonic(), found)
        with check._lock:
            check._cached = cached
    return cached[1] if cached[1].behind else None


def is_schema_error(error: BaseException) -> bool:
    """Whether ``error`` is a statement naming a table or column the database lacks."""
    original = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(original, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        return True
    if isinstance(original, sqlite3.OperationalError):
        message = str(original)
        return any(text in message for text in ("no such table", "no such column",
                                                "has no column named"))
    return False
