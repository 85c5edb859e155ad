"""Database helpers: statements that differ by database, and live pooled connections."""

from __future__ import annotations

import select
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from app.extensions import db

INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def insert(model: Any) -> Any:
    """An INSERT for the session's database that supports ``on_conflict_do_*``."""
    return INSERT[db.session.get_bind().dialect.name](model)


def upsert(model: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Insert a row or update it where ``key`` matches (not committed)."""
    statement = insert(model).values(**key, **values)
    db.session.execute(statement.on_conflict_do_update(index_elements=list(key), set_=values))


# A connection idle in the pool longer than this is pinged before use (a firewall or NAT may
# have dropped it silently); one used more recently is only checked for a closed socket.
PING_AFTER_IDLE_SECONDS = 30.0


def check_connections(engine: Engine) -> None:
    """Hand out only live PostgreSQL connections, without a round trip per checkout.

    When the server closes a connection (a restart, ``pg_terminate_backend``, an idle
    timeout) it sends an error and closes the socket, so an idle pooled connection whose
    socket has become readable is dead: the pool discards it and opens another. Connections
    idle for longer than ``PING_AFTER_IDLE_SECONDS`` are pinged too. SQLAlchemy's
    ``pool_pre_ping`` would cost a round trip on every request instead.
    """

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle = time.monotonic() - record.info.get("pointpass_checked_in", 0.0)
        try:
            if select.select([dbapi_connection.fileno()], [], [], 0)[0]:
                raise exc.DisconnectionError("The server closed this connection.")
            if idle > PING_AFTER_IDLE_SECONDS:
                engine.dialect.do_ping(dbapi_connection)
        except exc.DisconnectionError:
            raise
        except Exception as error:  # the connection is unusable, whatever the reason
            raise exc.DisconnectionError(str(error)) from error

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["pointpass_checked_in"] = time.monotonic()
