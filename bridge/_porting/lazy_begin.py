"""Reads before a request's first write, outside a transaction (``DATABASE_LAZY_BEGIN``).

By default every request of a port runs inside one transaction: ``BEGIN`` with
its first statement, ``COMMIT`` before the response. A route that only reads
pays two round trips for that, on top of its query, and at 10 ms per query a
port's server is CPU-bound: each round trip is event-loop and driver work
(guide 08).

With ``lazy_begin`` on, a plain ``SELECT`` that comes before the request's
first other statement runs in autocommit, as its own implicit transaction; the
first statement that is not a plain ``SELECT`` sends ``BEGIN`` and everything
from there on is one transaction, committed before the response or rolled back
on error as before. A request that only reads sends no ``BEGIN`` and no
``COMMIT``.

Under READ COMMITTED, PostgreSQL's default, each statement takes its own
snapshot inside a transaction as well, so the rows a read sees are the same.
What differs, and why it is not the default:

* ``now()`` is the time of each read's own transaction, not of the request's;
* a ``SELECT`` that calls a function which writes commits that write at once,
  and an error later in the request no longer rolls it back.

So the reads kept in a transaction are the ones that need it: a ``SELECT``
that locks rows (``FOR UPDATE``/``FOR SHARE``), takes a transaction-level
advisory lock, sets a transaction-local setting (``set_config(..., true)``),
uses a large object (its descriptors last a transaction),
creates a table (``SELECT INTO``), holds more than one statement, or streams
its rows (a server-side cursor needs a transaction); a statement run with the
execution option ``lazy_begin=False``; and every statement of a connection
whose isolation level is not READ COMMITTED. Turn it on for an app whose
``SELECT`` statements call no function that writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Dialect, Engine, event
from sqlalchemy.util import await_

#: A statement that may run outside a transaction: one ``SELECT``, comments before it allowed.
_PLAIN_SELECT = re.compile(r"\s*(?:(?:/\*.*?\*/|--[^\n]*(?:\n|$))\s*)*SELECT\b", re.I | re.S)

#: What keeps a ``SELECT`` in the transaction.
_NEEDS_TRANSACTION = re.compile(
    r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b"
    r"|\bINTO\b"
    r"|_xact_lock"
    r"|\bset_config\b"
    r"|\blo_\w+\s*\(|\blo(?:read|write)\s*\("
    r"|;\s*\S",
    re.I,
)

_VERDICTS_KEPT = 2048

_INFO_KEY = "flask2fastapi.lazy_begin"

# Isolation levels as each adapter spells them; READ COMMITTED is the only one
# under which a read outside the transaction sees what it would have seen inside.
_READ_COMMITTED = frozenset({None, "read_committed", "READ COMMITTED", "read committed"})


def may_run_outside(statement: str) -> bool:
    """Whether *statement* is a plain ``SELECT`` that needs no transaction."""
    return bool(_PLAIN_SELECT.match(statement)) and not _NEEDS_TRANSACTION.search(statement)


def install_lazy_begin(engine: Engine) -> None:
    """Run *engine*'s plain reads before a connection's first write in autocommit.

    *engine* is the sync engine of an async PostgreSQL engine (asyncpg or
    psycopg); its driver's own ``autocommit`` switch, as SQLAlchemy's adapter
    exposes it, decides whether the next statement sends ``BEGIN``.
    """
    verdicts: dict[str, bool] = {}

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # An engine made with isolation_level="AUTOCOMMIT" (set by the dialect
        # before this runs) is left as it is. Otherwise the server's default
        # isolation level, read once per connection: the driver only says
        # which level it was asked for.
        record.info[_INFO_KEY] = not dbapi_connection.autocommit and _server_reads_committed(
            dbapi_connection
        )

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is None or not record.info.get(_INFO_KEY):
            return
        if not dbapi_connection.autocommit:
            return
        try:
            dbapi_connection.autocommit = False
        except Exception:  # outside the event loop (a collected connection): not reused
            record.invalidate()

    def before(statement: str, connection: Any, options: Mapping[str, Any]) -> None:
        try:
            info = connection.info
        except NotImplementedError:  # the dialect's own checks on a first connect
            return
        if not info.get(_INFO_KEY):
            return
        adapter = connection.connection.dbapi_connection
        if _in_transaction(adapter.driver_connection):
            return
        if "isolation_level" in options or not _asked_for_read_committed(adapter):
            return  # a level the connection was given: left as it was asked
        outside = verdicts.get(statement)
        if outside is None:
            if len(verdicts) >= _VERDICTS_KEPT:
                verdicts.clear()
            outside = verdicts[statement] = may_run_outside(statement)
        if outside and options.get("lazy_begin", True) and not options.get("stream_results"):
            if not adapter.autocommit:
                adapter.autocommit = True
        elif adapter.autocommit:
            adapter.autocommit = False  # this statement sends BEGIN

    # Dialect events rather than the engine's before_cursor_execute: an engine
    # event makes every Connection join the engine's listeners when it is
    # made, a cost per request; the dialect's run only around the driver call.
    @event.listens_for(engine, "do_execute")
    @event.listens_for(engine, "do_executemany")
    def _on_execute(_cursor: Any, statement: str, _parameters: Any, context: Any) -> None:
        before(statement, context.root_connection, context.execution_options)

    @event.listens_for(engine, "do_execute_no_params")
    def _on_execute_no_params(_cursor: Any, statement: str, context: Any) -> None:
        before(statement, context.root_connection, context.execution_options)

    _deciders[engine.dialect] = before


# What each engine's lazy begin does before a statement, for the reads that
# run straight on the driver (bridge._porting.direct) and bypass its events.
_deciders: WeakKeyDictionary[Dialect, Callable[[str, Connection, Mapping[str, Any]], None]] = (
    WeakKeyDictionary()
)


def lazy_begin_of(dialect: Dialect) -> Callable[[str, Connection, Mapping[str, Any]], None] | None:
    """The lazy begin installed on *dialect*'s engine: called with a statement, its
    connection and its execution options, it decides whether it sends ``BEGIN``."""
    return _deciders.get(dialect)


def _in_transaction(driver: Any) -> bool:
    in_transaction = getattr(driver, "is_in_transaction", None)
    if in_transaction is not None:  # asyncpg
        return bool(in_transaction())
    from psycopg.pq import TransactionStatus

    return bool(driver.info.transaction_status != TransactionStatus.IDLE)


def _asked_for_read_committed(adapter: Any) -> bool:
    """Whether the connection was asked for no isolation level or READ COMMITTED."""
    driver = adapter.driver_connection
    if hasattr(driver, "is_in_transaction"):  # asyncpg: its SQLAlchemy adapter keeps the level
        asked = adapter._isolation_setting
    else:  # psycopg keeps it itself
        level = driver.isolation_level
        asked = None if level is None else level.name.replace("_", " ")
    return asked in _READ_COMMITTED


def _server_reads_committed(adapter: Any) -> bool:
    driver = adapter.driver_connection
    query = "SELECT current_setting('default_transaction_isolation')"
    if hasattr(driver, "fetchval"):  # asyncpg, which runs it outside any transaction
        level = await_(driver.fetchval(query))
    else:  # psycopg, which begins one: end it
        cursor = await_(driver.execute(query))
        row = await_(cursor.fetchone())
        await_(driver.rollback())
        level = row[0] if row else None
    return bool(level == "read committed")
