"""Which real driver errors mean "the database is down" and which "a bad value".

The errors are raised by the drivers themselves: a closed port (nothing
listens on 127.0.0.1:1), a SQLite file that cannot be opened or stays
locked, and, on PostgreSQL, a backend terminated in the middle of a session.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge._porting.database import DatabaseSettings, configure_sqlite
from bridge._porting.db_errors import is_bad_value, is_database_unavailable
from tests.conftest import ON_POSTGRES, TEST_DATABASE_URL
from tests.drivers import CLOSED_PORT_URL, aiosqlite_threads_stopped, terminate_backend

pytestmark = pytest.mark.anyio

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")


def sync_error(engine: Engine, statement: str, **params: Any) -> BaseException:
    with pytest.raises(Exception) as caught, engine.connect() as connection:
        connection.execute(text(statement), params)
    return caught.value


async def async_error(engine: AsyncEngine, statement: str, **params: Any) -> BaseException:
    with pytest.raises(Exception) as caught:
        async with engine.connect() as connection:
            await connection.execute(text(statement), params)
    return caught.value


def sync_engine_for(settings: DatabaseSettings) -> Engine:
    engine = create_engine(settings.sync_url, **settings.engine_options())
    if settings.backend == "sqlite":
        configure_sqlite(engine)
    return engine


@pytest.fixture
def closed_sync() -> Iterator[Engine]:
    engine = sync_engine_for(DatabaseSettings(url=CLOSED_PORT_URL))
    yield engine
    engine.dispose()


@pytest.fixture(params=["asyncpg", "psycopg"])
async def closed_async(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    engine = DatabaseSettings(url=CLOSED_PORT_URL, async_driver=request.param).create_async_engine()
    yield engine
    await engine.dispose()


def test_connection_refused_on_the_sync_driver_is_unavailable(closed_sync: Engine) -> None:
    error = sync_error(closed_sync, "SELECT 1")

    assert isinstance(error, OperationalError)
    assert is_database_unavailable(error)
    assert not is_bad_value(error)


async def test_connection_refused_on_each_async_driver_is_unavailable(
    closed_async: AsyncEngine,
) -> None:
    # asyncpg's ConnectionRefusedError reaches the caller unwrapped by SQLAlchemy.
    error = await async_error(closed_async, "SELECT 1")

    assert is_database_unavailable(error)
    assert not is_bad_value(error)


def test_an_oserror_raised_outside_the_pool_is_not_the_database() -> None:
    def refuse() -> None:
        raise ConnectionRefusedError("a web service of the app refused")

    with pytest.raises(ConnectionRefusedError) as caught:
        refuse()

    assert not is_database_unavailable(caught.value)


def test_exceptions_that_are_not_database_errors_are_neither() -> None:
    for error in (ValueError("x"), RuntimeError("y"), KeyError("z")):
        assert not is_database_unavailable(error)
        assert not is_bad_value(error)


# ---------------------------------------------------------------- SQLite


@pytest.fixture
def unopenable(tmp_path: Path) -> DatabaseSettings:
    # A directory where the database file should be: SQLITE_CANTOPEN, even for
    # root, whom file permissions do not stop.
    (tmp_path / "shop.sqlite3").mkdir()
    return DatabaseSettings(url=f"sqlite:///{tmp_path}/shop.sqlite3")


def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(unopenable: DatabaseSettings) -> None:
    engine = sync_engine_for(unopenable)
    error = sync_error(engine, "SELECT 1")
    engine.dispose()

    assert is_database_unavailable(error)


async def test_a_sqlite_file_that_cannot_be_opened_is_unavailable_to_aiosqlite(
    unopenable: DatabaseSettings,
) -> None:
    engine = unopenable.create_async_engine()
    error = await async_error(engine, "SELECT 1")
    await engine.dispose()
    await aiosqlite_threads_stopped()

    assert is_database_unavailable(error)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[DatabaseSettings]:
    """A SQLite file another process holds an exclusive lock on, and a short busy timeout."""
    path = tmp_path / "shop.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
    holder.execute("BEGIN EXCLUSIVE")
    yield DatabaseSettings(url=f"sqlite:///{path}", sqlite_busy_timeout=0.1)
    holder.execute("ROLLBACK")
    holder.close()


def test_a_sqlite_file_locked_past_the_busy_timeout_is_unavailable(
    locked: DatabaseSettings,
) -> None:
    engine = sync_engine_for(locked)
    error = sync_error(engine, "INSERT INTO items DEFAULT VALUES")
    engine.dispose()

    assert is_database_unavailable(error)


async def test_a_sqlite_file_locked_past_the_busy_timeout_is_unavailable_to_aiosqlite(
    locked: DatabaseSettings,
) -> None:
    engine = locked.create_async_engine()
    error = await async_error(engine, "INSERT INTO items DEFAULT VALUES")
    await engine.dispose()

    assert is_database_unavailable(error)


# ---------------------------------------------------------------- the test database


async def test_a_sql_error_is_neither(
    database_settings: DatabaseSettings, sync_engine: Engine
) -> None:
    # "no such table" is an OperationalError on SQLite: still a bug, a 500.
    sync = sync_error(sync_engine, "SELECT * FROM no_such_table")
    engine = database_settings.create_async_engine()
    asynchronous = await async_error(engine, "SELECT * FROM no_such_table")
    await engine.dispose()

    for error in (sync, asynchronous):
        assert isinstance(error, DBAPIError)
        assert not is_database_unavailable(error)
        assert not is_bad_value(error)


@needs_postgres
@pytest.mark.parametrize(
    ("statement", "value"),
    [
        ("SELECT CAST(:value AS text)", "a\x00b"),  # NUL in text
        ("SELECT 1 OFFSET :value", 2**64),  # out of bigint's range
        ("SELECT CAST(:value AS integer)", "twelve"),  # invalid text representation
    ],
    ids=["nul", "bigint-range", "not-an-integer"],
)
async def test_a_value_postgresql_refuses_is_a_bad_value(
    database_settings: DatabaseSettings, sync_engine: Engine, statement: str, value: Any
) -> None:
    sync = sync_error(sync_engine, statement, value=value)
    engine = database_settings.create_async_engine()
    asynchronous = await async_error(engine, statement, value=value)
    await engine.dispose()

    for error in (sync, asynchronous):
        assert is_bad_value(error), repr(error)
        assert not is_database_unavailable(error)


@needs_postgres
async def test_a_cancelled_statement_is_neither(
    database_settings: DatabaseSettings, sync_engine: Engine
) -> None:
    # QueryCanceled is an OperationalError with SQLSTATE 57014: not an outage.
    with pytest.raises(OperationalError) as caught, sync_engine.begin() as connection:
        connection.execute(text("SET LOCAL statement_timeout = 1"))
        connection.execute(text("SELECT pg_sleep(1)"))

    assert not is_database_unavailable(caught.value)
    assert not is_bad_value(caught.value)


@needs_postgres
def test_a_terminated_backend_is_unavailable_to_the_sync_driver(sync_engine: Engine) -> None:
    with pytest.raises(DBAPIError) as caught, sync_engine.connect() as connection:
        terminate_backend(TEST_DATABASE_URL, backend_pid(connection))
        connection.execute(text("SELECT 1"))

    assert is_database_unavailable(caught.value)


@needs_postgres
async def test_a_terminated_backend_is_unavailable_to_each_async_driver(
    database_settings: DatabaseSettings,
) -> None:
    engine = database_settings.create_async_engine()
    with pytest.raises(DBAPIError) as caught:
        async with engine.connect() as connection:
            terminate_backend(TEST_DATABASE_URL, await async_backend_pid(connection))
            await connection.execute(text("SELECT 1"))
    await engine.dispose()

    assert is_database_unavailable(caught.value)


def backend_pid(connection: Connection) -> int:
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


async def async_backend_pid(connection: AsyncConnection) -> int:
    return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())
