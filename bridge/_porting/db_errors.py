"""What a database error means to the client: the database is down, or a value was bad.

Both sides of a migrated app must answer the same, and neither should answer
500 for what is not a bug:

* :func:`is_database_unavailable`: the database cannot be reached right now
  (connection refused or lost, the server shutting down or refusing new
  connections, a SQLite file that cannot be opened or stays locked). The
  request may succeed later: answer 503 with ``Retry-After``, as for an
  exhausted pool. A SQL error is not this: it stays a 500.
* :func:`is_bad_value`: the database refused a value the request carried (a
  SQLSTATE of class 22, "data exception", such as a NUL character in a text
  parameter or an integer out of range): answer 400.

The checks read SQLSTATEs, SQLite's error codes and Python's ``OSError``
rather than driver classes, so no driver is imported. They take any
exception: asyncpg's connection errors reach the caller unwrapped by
SQLAlchemy, and are recognised by having been raised while the pool connected.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError

# SQLSTATE class 08 is "connection exception"; these others also mean the server
# cannot serve this connection now: admin_shutdown, crash_shutdown,
# cannot_connect_now, too_many_connections.
_CONNECTION_CLASS = "08"
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
_DATA_EXCEPTION_CLASS = "22"

# SQLite's primary result codes for a file that is locked past the busy
# timeout (SQLITE_BUSY, SQLITE_LOCKED) or cannot be opened (SQLITE_CANTOPEN).
_SQLITE_UNAVAILABLE = frozenset({5, 6, 14})

_POSTGRES_DRIVERS = frozenset({"psycopg", "psycopg2"})

# Causes followed from one exception; chains are short, cycles are possible.
_MAX_CHAIN = 16


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether *exc* says the database cannot be reached now, rather than a bug.

    True for an error SQLAlchemy saw invalidate the connection
    (``connection_invalidated``), an ``OperationalError`` or ``InterfaceError``
    whose driver error is connection-level, and a connection error a driver
    raised unwrapped while SQLAlchemy's pool was connecting (asyncpg's
    ``ConnectionRefusedError``).
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if not isinstance(exc, OperationalError | InterfaceError):
            return False
        return any(_connection_level(error) for error in _chain(exc.orig))
    return _raised_while_connecting(exc) and any(_connection_level(e) for e in _chain(exc))


def is_bad_value(exc: BaseException) -> bool:
    """Whether *exc* is the database refusing a value of the statement (SQLSTATE class 22).

    asyncpg's such errors reach SQLAlchemy as a plain ``DBAPIError``, not a
    ``DataError``; their SQLSTATE tells.
    """
    if isinstance(exc, DataError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return any(
        isinstance(code := _sqlstate(error), str) and code.startswith(_DATA_EXCEPTION_CLASS)
        for error in _chain(exc.orig)
    )


def _connection_level(error: BaseException) -> bool:
    if isinstance(error, OSError):  # refused, reset, unreachable, timed out
        return True
    code = _sqlstate(error)
    if isinstance(code, str):
        return code.startswith(_CONNECTION_CLASS) or code in _UNAVAILABLE_SQLSTATES
    if code is None and _is_postgres_client_error(error):
        return True
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    return isinstance(sqlite_code, int) and sqlite_code & 0xFF in _SQLITE_UNAVAILABLE


def _is_postgres_client_error(error: BaseException) -> bool:
    # psycopg raises its base OperationalError, with no SQLSTATE, when the
    # connection fails or is lost on the client's side; every error the
    # server reports has a SQLSTATE and a subclass of its own.
    kind = type(error)
    return kind.__name__ == "OperationalError" and kind.__module__ in _POSTGRES_DRIVERS


_NO_SQLSTATE = object()


def _sqlstate(error: BaseException) -> object:
    """The error's SQLSTATE (``sqlstate``, or psycopg2's ``pgcode``); a sentinel without one."""
    code = getattr(error, "sqlstate", _NO_SQLSTATE)
    return getattr(error, "pgcode", _NO_SQLSTATE) if code is _NO_SQLSTATE else code


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """*error* and the exceptions it was raised from or during."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _raised_while_connecting(exc: BaseException) -> bool:
    """Whether SQLAlchemy's pool was opening a connection when *exc* was raised."""
    traceback = exc.__traceback__
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith("sqlalchemy.pool"):
            return True
        traceback = traceback.tb_next
    return False
