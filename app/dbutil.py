"""Database helpers: statements that differ by database, the driver-level transaction of a
posting and the statements it runs, the one after-commit hook, and live pooled connections.

Run after commit: :func:`after_commit` attaches a callback to the current transaction, a
posting's :class:`DriverTransaction` when one is open, else the Session's. It runs once that
transaction has committed and is dropped if it rolls back (a rolled-back savepoint drops
nothing: only the outermost transaction decides).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import g
from sqlalchemy import event, exc, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, SessionTransaction

from app.extensions import db

INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}

Callback = Callable[[], None]
# Callbacks waiting for a transaction to commit, each with its key (None: no key).
Waiting = list[tuple[Hashable | None, Callback]]


def insert(model: Any) -> Any:
    """An INSERT for the session's database that supports ``on_conflict_do_*``."""
    return INSERT[db.session.get_bind().dialect.name](model)


def upsert(model: Any, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Insert a row or update it where ``key`` matches (not committed)."""
    statement = insert(model).values(**key, **values)
    db.session.execute(statement.on_conflict_do_update(index_elements=list(key), set_=values))


class CompiledStatement:
    """A Core statement compiled for one database, run on a DBAPI cursor (what a
    :class:`DriverStatement` compiles to, and a :class:`DriverTransaction` runs).

    For a short statement, SQLAlchemy's execution layer (execution context, parameter and
    result objects, events) costs as much CPU as the driver's own work. The postings run the
    same few statements on every request, so they are compiled once and run straight on
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


class DriverStatement:
    """A statement for a :class:`DriverTransaction`: built by ``build(dialect name)`` and
    compiled once per kind of database, on first use (``build`` may ignore the name when the
    statement is the same everywhere).

    ``statement(dialect)`` gives the :class:`CompiledStatement` for that database.
    """

    def __init__(self, build: Callable[[str], Any], column_keys: list[str] | None = None,
                 ) -> None:
        self._build = build
        self._column_keys = column_keys
        self._compiled: dict[str, CompiledStatement] = {}

    def __call__(self, dialect: Dialect) -> CompiledStatement:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:  # two threads may both compile it: the same result either way
            compiled = CompiledStatement(self._build(dialect.name), dialect, self._column_keys)
            self._compiled[dialect.name] = compiled
        return compiled


class DriverTransaction:
    """A posting's transaction, driven at the driver: runs :class:`DriverStatement`\\ s on a
    DBAPI cursor, then :meth:`commit` or :meth:`rollback`. Begin one with
    :func:`begin_driver_transaction`.

    On PostgreSQL it holds a pooled connection of its own, outside the Session (the Session's
    bookkeeping costs more than the statements of a short posting). On SQLite it shares the
    Session's transaction: a request that already used the Session holds the database's
    write lock, which a second connection would wait for. Driver errors come out as
    SQLAlchemy's exceptions, as they would from ``Session.execute``, and a lost connection is
    invalidated so the pool replaces it. A transaction still open when the application
    context ends (an error escaped) is rolled back then. While it is open it is the current
    transaction of :func:`after_commit`.
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
        self._after_commit: Waiting = []

    def first(self, statement: DriverStatement,
              params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The statement's first row, or ``None``."""
        return self._run(statement, params, CompiledStatement.first)  # type: ignore[no-any-return]

    def all(self, statement: DriverStatement,
            params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows."""
        return self._run(statement, params, CompiledStatement.all)  # type: ignore[no-any-return]

    def execute(self, statement: DriverStatement, params: Mapping[str, Any]) -> int:
        """The number of rows the statement matched or wrote."""
        return self._run(statement, params,  # type: ignore[no-any-return]
                         CompiledStatement.execute)

    def _run(self, statement: DriverStatement, params: Mapping[str, Any],
             method: Callable[[CompiledStatement, Any, Mapping[str, Any]], Any]) -> Any:
        if self.done:  # its connection may be another request's by now
            raise RuntimeError("this transaction has ended")
        compiled = statement(self.dialect)
        try:
            return method(compiled, self.cursor, params)
        except self.dialect.loaded_dbapi.Error as error:
            raise self._failed(error, compiled.sql, params) from error

    def commit(self) -> None:
        """Commit, then run the callbacks :func:`after_commit` attached to it."""
        if self.session_bound:
            db.session.commit()  # on failure it stays open, for rollback()
            self._end()
        else:
            try:
                self.connection.commit()
            except self.dialect.loaded_dbapi.Error as error:
                failure = self._failed(error, "COMMIT", {})
                if not self.done:
                    self._release()
                raise failure from error
            self._release()
        waiting, self._after_commit = self._after_commit, []
        for _key, callback in waiting:
            callback()

    def rollback(self) -> None:
        """Roll back (nothing if it has ended); its :func:`after_commit` callbacks are dropped."""
        self._after_commit.clear()
        if self.done:
            return
        if self.session_bound:
            self._end()
            db.session.rollback()
            return
        try:
            self.connection.rollback()
        except self.dialect.loaded_dbapi.Error as error:
            self._failed(error, "ROLLBACK", {})  # invalidates a lost connection
        if not self.done:
            self._release()

    def _end(self) -> None:
        """No longer open: no statement runs on it, and it stops being the current one."""
        self.done = True
        open_transactions = g.get(_OPEN)
        if open_transactions and self in open_transactions:
            open_transactions.remove(self)

    def _release(self) -> None:
        self._end()
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


# The driver transactions open in this application context, innermost last.
_OPEN = "pointpass.driver_transactions"


def begin_driver_transaction() -> DriverTransaction:
    """Begin a posting's transaction (see :class:`DriverTransaction`)."""
    engine = db.engine
    if engine.dialect.name == "sqlite":
        connection = db.session.connection()  # BEGIN IMMEDIATE: see create_app
        tx = DriverTransaction(connection.connection, connection.dialect, session=connection)
    else:
        tx = DriverTransaction(engine.raw_connection(), engine.dialect)
    g.setdefault(_OPEN, []).append(tx)
    return tx


def end_open_transactions(_error: BaseException | None = None) -> None:
    """Roll back the driver transactions an escaped error left open (a
    ``teardown_appcontext`` handler)."""
    for tx in list(g.get(_OPEN, ())):
        tx.rollback()
    g.pop(_OPEN, None)


# Session.info key: the callbacks waiting for the Session's transaction to commit.
_SESSION_WAITING = "pointpass.after_commit"


def after_commit(callback: Callback, *, key: Hashable | None = None) -> None:
    """Call ``callback()`` once the current transaction has committed; never if it rolls back.

    The current transaction is the innermost :class:`DriverTransaction` open in this
    application context (a posting's), else the Session's. With ``key``, nothing is added
    when a callback with the same key already waits for this transaction.
    """
    open_transactions = g.get(_OPEN)
    if open_transactions:
        _wait(open_transactions[-1]._after_commit, callback, key)
        return
    session = db.session()
    if not session.in_transaction():
        # Start the (lazy, connection-less) transaction the callback belongs to, so that a
        # rollback with nothing else done still discards it.
        session.begin()
    _wait(session.info.setdefault(_SESSION_WAITING, []), callback, key)


def _wait(waiting: Waiting, callback: Callback, key: Hashable | None) -> None:
    if key is None or all(waiting_key != key for waiting_key, _ in waiting):
        waiting.append((key, callback))


@event.listens_for(Session, "after_commit")
def _run_committed(session: Session) -> None:
    # Also fired when a savepoint is released: its callbacks wait for the outermost commit.
    if session.get_nested_transaction() is not None:
        return
    waiting = session.info.pop(_SESSION_WAITING, None)
    for _key, callback in waiting or ():
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # "soft": fires even when no database transaction had begun yet; only the outermost
    # transaction owns the callbacks (a rolled-back savepoint does not drop them).
    if previous_transaction.parent is None:
        session.info.pop(_SESSION_WAITING, None)


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


@contextmanager
def planner_settings(workers: int = 0) -> Iterator[None]:
    """On PostgreSQL, for the statements run inside (see benchmarks/RESULTS.md):

    - no JIT compilation: a reading request's plans cost enough to trigger it, and compiling
      takes longer than it saves;
    - at most ``workers`` parallel workers (0: one request among the postings keeps to one
      core);
    - ``random_page_cost`` 1.1 (PostgreSQL's advice for SSDs; the default 4 is for spinning
      disks): else the planner scans a whole table rather than a covering index that holds
      the same columns in half the pages.

    The transaction's own settings are back afterwards. Nothing on SQLite."""
    if db.session.get_bind().dialect.name != "postgresql":
        yield
        return
    wanted = {"jit": "off", "random_page_cost": "1.1",
              "max_parallel_workers_per_gather": str(int(workers))}
    names = {f"name{i}": name for i, name in enumerate(wanted)}
    before = db.session.execute(text("SELECT " + ", ".join(
        f"current_setting(:{key})" for key in names)), names).one()
    _set(wanted)
    try:
        yield
    finally:
        _set(dict(zip(wanted, before, strict=True)))  # a SET LOCAL would last to the end


def _set(settings: dict[str, str]) -> None:
    db.session.execute(text("SELECT " + ", ".join(
        f"set_config(:name{i}, :value{i}, true)" for i in range(len(settings)))),
        {key: value for i, (name, setting) in enumerate(settings.items())
         for key, value in ((f"name{i}", name), (f"value{i}", setting))})
