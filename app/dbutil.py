"""Database helpers: statements that differ by database, statements compiled once for the
hot path, and live pooled connections."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import g
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, Engine

from app.extensions import db

INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def insert(model: Any) -> Any:
    """An INSERT for the session's database that supports ``on_conflict_do_*``."""
    return INSERT[db.session.get_bind().dialect.name](model)


def upsert(model: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Insert a row or update it where ``key`` matches (not committed)."""
    statement = insert(model).values(**key, **values)
    db.session.execute(statement.on_conflict_do_update(index_elements=list(key), set_=values))


class Precompiled:
    """A Core statement compiled once for a database, run on a DBAPI cursor (see :class:`Raw`).

    For a short statement, SQLAlchemy's execution layer (execution context, parameter and
    result objects, events) costs as much CPU as the driver's own work. The postings run the
    same few statements on every request, so they are compiled here once and run straight on
    the driver. Parameters pass through the column types'
    own bind processors and results through their result processors, so the values are the
    ones SQLAlchemy would send and return. What SQLAlchemy adds at execution time is refused
    when the statement is built: Python-side column defaults (give every column) and
    expanding ``IN`` parameters.
    """

    def __init__(self, statement: Any, dialect: Dialect,
                 column_keys: list[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if compiled.insert_prefetch or compiled.update_prefetch:
            missing = [c.key for c in [*compiled.insert_prefetch, *compiled.update_prefetch]]
            raise ValueError(f"give these columns, their Python defaults are not run: {missing}")
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("expanding and literal-execute parameters need SQLAlchemy")
        self.sql = str(compiled)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        self._names = list(compiled.positiontup or []) if compiled.positional else list(by_name)
        self.positional = bool(compiled.positional)
        # (key in the caller's parameters, the bind itself, its type's bind processor)
        self._binds = [
            (by_name[name].key, by_name[name],
             by_name[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in self._names
        ]
        self._results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.exported_columns
        ]

    def _parameters(self, params: Mapping[str, Any]) -> Any:
        values = []
        for key, bind, process in self._binds:
            if key in params:
                value = params[key]
            elif bind.required:
                raise KeyError(f"no value for the statement's parameter {key!r}")
            else:  # a value fixed in the statement, such as literal("apple")
                value = bind.effective_value
            values.append(process(value) if process else value)
        return values if self.positional else dict(zip(self._names, values, strict=True))

    def execute(self, cursor: Any, params: Mapping[str, Any]) -> int:
        """Run the statement; the number of rows it matched or wrote."""
        cursor.execute(self.sql, self._parameters(params))
        return int(cursor.rowcount)

    def first(self, cursor: Any, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run the statement; its first row with results converted, or ``None``."""
        cursor.execute(self.sql, self._parameters(params))
        row = cursor.fetchone()
        return None if row is None else self._row(row)

    def all(self, cursor: Any, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the statement; its rows with results converted."""
        cursor.execute(self.sql, self._parameters(params))
        return [self._row(row) for row in cursor.fetchall()]

    def _row(self, row: Any) -> tuple[Any, ...]:
        return tuple(process(value) if process else value
                     for process, value in zip(self._results, row, strict=True))


class Prebuilt:
    """A statement built by ``build(dialect name)`` and compiled once per kind of database, on
    first use (``build`` may ignore the name when the statement is the same everywhere).

    ``prebuilt(dialect)`` gives the :class:`Precompiled` statement for that database.
    """

    def __init__(self, build: Callable[[str], Any], column_keys: list[str] | None = None,
                 ) -> None:
        self._build = build
        self._column_keys = column_keys
        self._compiled: dict[str, Precompiled] = {}

    def __call__(self, dialect: Dialect) -> Precompiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:  # two threads may both compile it: the same result either way
            compiled = Precompiled(self._build(dialect.name), dialect, self._column_keys)
            self._compiled[dialect.name] = compiled
        return compiled


class Raw:
    """A transaction driven at the driver: runs :class:`Prebuilt` statements on a DBAPI
    cursor, then :meth:`commit` or :meth:`rollback`.

    On PostgreSQL it holds a pooled connection of its own, outside the Session (the Session's
    bookkeeping costs more than the statements of a short posting). On SQLite it shares the
    Session's transaction: a request that already used the Session holds the database's
    write lock, which a second connection would wait for. Driver errors come out as
    SQLAlchemy's exceptions, as they would from ``Session.execute``, and a lost connection is
    invalidated so the pool replaces it. A transaction still open when the application
    context ends (an error escaped) is rolled back then.
    """

    def __init__(self, connection: Any, dialect: Dialect, *, session: Any = None) -> None:
        # The pool's proxy of the DBAPI connection; ``session``: the Session's Connection
        # holding it, when the transaction is the Session's.
        self.connection = connection
        self.session_connection = session
        self.session_bound = session is not None
        self.cursor = connection.cursor()
        self.dialect = dialect
        self.done = False
        self._on_commit: list[Callable[[], None]] = []

    def first(self, statement: Prebuilt, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The statement's first row, or ``None``."""
        return self._run(statement, params, Precompiled.first)  # type: ignore[no-any-return]

    def all(self, statement: Prebuilt, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows."""
        return self._run(statement, params, Precompiled.all)  # type: ignore[no-any-return]

    def execute(self, statement: Prebuilt, params: Mapping[str, Any]) -> int:
        """The number of rows the statement matched or wrote."""
        return self._run(statement, params, Precompiled.execute)  # type: ignore[no-any-return]

    def _run(self, statement: Prebuilt, params: Mapping[str, Any],
             method: Callable[[Precompiled, Any, Mapping[str, Any]], Any]) -> Any:
        compiled = statement(self.dialect)
        try:
            return method(compiled, self.cursor, params)
        except self.dialect.loaded_dbapi.Error as error:
            raise self._failed(error, compiled.sql, params) from error

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed (not if it rolls back)."""
        self._on_commit.append(callback)

    def commit(self) -> None:
        if self.session_bound:
            db.session.commit()
        else:
            try:
                self.connection.commit()
            except self.dialect.loaded_dbapi.Error as error:
                failure = self._failed(error, "COMMIT", {})
                if not self.done:
                    self._release()
                raise failure from error
            self._release()
        self.done = True
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()

    def rollback(self) -> None:
        self._on_commit.clear()
        if self.done:
            return
        if self.session_bound:
            self.done = True
            db.session.rollback()
            return
        try:
            self.connection.rollback()
        except self.dialect.loaded_dbapi.Error as error:
            self._failed(error, "ROLLBACK", {})  # invalidates a lost connection
        if not self.done:
            self._release()

    def _release(self) -> None:
        self.done = True
        self.connection.close()  # back to the pool (or discarded, if invalidated)

    def _failed(self, error: Any, sql: str, params: Mapping[str, Any]) -> Exception:
        lost = (not self.done and self.dialect.is_disconnect(
            error, self.connection.dbapi_connection, self.cursor))
        if lost and self.session_bound:
            self.session_connection.invalidate(error)  # the Session's rollback then skips it
        elif lost:
            self.connection.invalidate(error)
            self._release()  # nothing left to roll back: the server ended the transaction
        return exc.DBAPIError.instance(sql, dict(params), error, self.dialect.loaded_dbapi.Error,
                                       connection_invalidated=lost, dialect=self.dialect)


_OPEN = "pointpass.raw_transactions"


def begin() -> Raw:
    """Begin a transaction for a posting (see :class:`Raw`)."""
    engine = db.engine
    if engine.dialect.name == "sqlite":
        connection = db.session.connection()  # BEGIN IMMEDIATE: see create_app
        tx = Raw(connection.connection, connection.dialect, session=connection)
    else:
        tx = Raw(engine.raw_connection(), engine.dialect)
    g.setdefault(_OPEN, []).append(tx)
    return tx


def end_open_transactions(_error: BaseException | None = None) -> None:
    """Roll back what an escaped error left open (a ``teardown_appcontext`` handler)."""
    for tx in g.pop(_OPEN, ()):
        if not tx.done:
            tx.rollback()


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
