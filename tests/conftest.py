"""Database fixtures shared by the whole suite.

The suite runs on a SQLite file per test by default. With ``TEST_DATABASE_URL``
set to a PostgreSQL URL it runs there instead, and every test that uses the
async side runs twice, on asyncpg and on psycopg.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from bridge._porting.database import DatabaseSettings, configure_sqlite

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith(("postgresql", "postgres:"))
ASYNC_DRIVERS = ["asyncpg", "psycopg"] if ON_POSTGRES else [None]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # a2wsgi runs on asyncio only


@pytest.fixture(params=ASYNC_DRIVERS, ids=lambda driver: driver or "aiosqlite")
def database_settings(
    request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
) -> DatabaseSettings:
    """Settings for this test's database; on PostgreSQL, once per async driver."""
    if ON_POSTGRES:
        return DatabaseSettings(url=TEST_DATABASE_URL, async_driver=request.param)
    return DatabaseSettings(url=f"sqlite:///{tmp_path}/test.sqlite3")


def checked_out(engine: Engine) -> int:
    """Connections of *engine*'s pool that are in use right now."""
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


@pytest.fixture
def sync_engine(database_settings: DatabaseSettings) -> Iterator[Engine]:
    """A sync engine on the test database; the test fails if it leaves a connection out."""
    engine = create_engine(database_settings.sync_url, **database_settings.engine_options())
    if database_settings.backend == "sqlite":
        configure_sqlite(engine)
    yield engine
    leaked = checked_out(engine)
    engine.dispose()
    assert leaked == 0, f"{leaked} connection(s) still checked out after the test"
