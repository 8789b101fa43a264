"""Database fixtures shared by the whole suite.

The suite runs on a SQLite file per test by default. With ``TEST_DATABASE_URL``
set to a PostgreSQL URL it runs there instead, and every test that touches the
async side runs twice, on asyncpg and on psycopg; a test that only uses the sync
side runs once (see :func:`touches_async_side`).

Suites that need seeded tables (the demo shop) make them once per session and
put the seed rows back before each test (see :class:`SeededDatabase`).
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, insert, make_url, text
from sqlalchemy.orm import Session

from bridge._porting.database import DatabaseSettings, configure_sqlite
from bridge._porting.repository import Operation, run_sync

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith(("postgresql", "postgres:"))
ASYNC_DRIVERS = ["asyncpg", "psycopg"] if ON_POSTGRES else [None]


# Fixtures that start the async side: a test that uses one, itself or through
# another fixture, runs on every async driver.
ASYNC_SIDE_FIXTURES = frozenset({"async_engine", "fastapi_app", "shadow"})
ASYNC_SIDE = "async_side"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ASYNC_SIDE}: the test builds an async engine or app from database_settings in a "
        "fixture of its own; run it on every async driver",
    )


def touches_async_side(
    fixturenames: Iterable[str], function: Callable[..., Any], marked: bool
) -> bool:
    """Whether a test that uses the test database may reach it through an async driver.

    It does when it uses a fixture that starts the async side, is marked
    ``async_side``, or asks for ``database_settings`` itself (it may build an
    async engine from them). :func:`async_side_guard` fails a test that
    connects an async engine without being counted here.
    """
    if marked or not ASYNC_SIDE_FIXTURES.isdisjoint(fixturenames):
        return True
    return "database_settings" in inspect.signature(function).parameters


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_settings" not in metafunc.fixturenames:
        return
    marked = metafunc.definition.get_closest_marker(ASYNC_SIDE) is not None
    if touches_async_side(metafunc.fixturenames, metafunc.function, marked):
        metafunc.parametrize(
            "database_settings",
            ASYNC_DRIVERS,
            indirect=True,
            ids=lambda driver: driver or "aiosqlite",
        )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # a2wsgi runs on asyncio only


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The URL of this test's database: a file of its own on SQLite."""
    if ON_POSTGRES:
        return TEST_DATABASE_URL
    return f"sqlite:///{tmp_path}/test.sqlite3"


@pytest.fixture
def database_settings(request: pytest.FixtureRequest, database_url: str) -> DatabaseSettings:
    """Settings for this test's database; on PostgreSQL, once per async driver
    for a test that touches the async side."""
    return DatabaseSettings(url=database_url, async_driver=getattr(request, "param", None))


@pytest.fixture(autouse=True)
def async_side_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that runs on one async driver only but connects an async engine."""
    node = request.node
    if "database_settings" not in request.fixturenames or touches_async_side(
        request.fixturenames, node.function, node.get_closest_marker(ASYNC_SIDE) is not None
    ):
        yield
        return
    connected: list[str] = []

    def on_connect(connection: Connection) -> None:
        if connection.dialect.is_async:
            connected.append(connection.dialect.driver)

    event.listen(Engine, "engine_connect", on_connect)
    yield
    event.remove(Engine, "engine_connect", on_connect)
    assert not connected, (
        f"the test connected an async engine ({connected[0]}) but runs on one driver only: "
        f"mark it @pytest.mark.{ASYNC_SIDE} or use a fixture of {sorted(ASYNC_SIDE_FIXTURES)}"
    )


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


# -- Seeded tables, made once per session ---------------------------------------


Seed = Callable[[], Operation[None]]


class SeededDatabase(Protocol):
    """Tables with seed rows, made once per session and put back before each test.

    Dropping, creating and seeding the tables for every test took a third of
    the suite's time; a reset costs a file copy (SQLite) or one transaction
    (PostgreSQL). After a reset the database is exactly as seeded, generated
    ids included.
    """

    def url(self, tmp_path: Path) -> str:
        """The database URL of the test whose folder is *tmp_path*."""
        ...

    def reset(self, url: str) -> None:
        """Put the tables and exactly the seed rows at *url*; close connections to it
        first (SQLite replaces the file)."""
        ...

    def drop_tables(self, url: str) -> None:
        """Leave the database at *url* without the tables, for code that creates them."""
        ...

    def close(self) -> None: ...


def create_tables(engine: Engine, metadata: MetaData, seed: Seed) -> None:
    metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        run_sync(session, seed())


class SQLiteTemplate:
    """A seeded database file copied over each test's own file."""

    def __init__(self, folder: Path, name: str, metadata: MetaData, seed: Seed) -> None:
        self.name = name
        self.template = folder / f"{name}.sqlite3"
        engine = create_engine(f"sqlite:///{self.template}")
        create_tables(engine, metadata, seed)
        engine.dispose()  # no journal left beside the file: the copy is the database

    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/{self.name}.sqlite3"

    def reset(self, url: str) -> None:
        self.drop_tables(url)
        shutil.copyfile(self.template, self._path(url))

    def drop_tables(self, url: str) -> None:
        path = self._path(url)
        for stale in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
            stale.unlink(missing_ok=True)

    def close(self) -> None:
        pass

    @staticmethod
    def _path(url: str) -> Path:
        return Path(make_url(url).database or "")


class PostgresSchema:
    """Seeded tables in a schema of their own, emptied and refilled in one transaction.

    The schema keeps the tables apart from other suites on the same database.
    """

    def __init__(self, schema: str, metadata: MetaData, seed: Seed) -> None:
        self.schema = schema
        self.metadata = metadata
        self.admin = create_engine(DatabaseSettings(url=TEST_DATABASE_URL).sync_url)
        with self.admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        self._url = (
            make_url(TEST_DATABASE_URL)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
        self.engine = create_engine(DatabaseSettings(url=self._url).sync_url, pool_size=1)
        create_tables(self.engine, metadata, seed)
        with self.engine.connect() as connection:
            self.rows = {
                table.name: [dict(row) for row in connection.execute(table.select()).mappings()]
                for table in metadata.sorted_tables
            }
            self.sequences = self._sequences(connection)
        self.has_tables = True

    def url(self, tmp_path: Path) -> str:
        return self._url

    def reset(self, url: str) -> None:
        with self.engine.begin() as connection:
            # A connection a test leaked would make this wait forever: fail instead.
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            if not self.has_tables:
                self.metadata.create_all(connection)
                self.has_tables = True
            # DELETE, not TRUNCATE: for a few rows it is many times faster.
            for table in reversed(self.metadata.sorted_tables):
                connection.execute(table.delete())
            for table in self.metadata.sorted_tables:
                if self.rows[table.name]:
                    connection.execute(insert(table), self.rows[table.name])
            for name, (value, called) in self.sequences.items():
                connection.execute(
                    text("SELECT setval(CAST(:name AS regclass), :value, :called)"),
                    {"name": name, "value": value, "called": called},
                )

    def drop_tables(self, url: str) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            self.metadata.drop_all(connection)
        self.has_tables = False

    def close(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()

    def _sequences(self, connection: Connection) -> dict[str, tuple[int, bool]]:
        names = connection.scalars(
            text(
                "SELECT quote_ident(c.relname) FROM pg_class AS c"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'S' AND n.nspname = :schema"
            ),
            {"schema": self.schema},
        ).all()
        sequences = {}
        for name in names:
            qualified = f'"{self.schema}".{name}'
            value, called = connection.execute(
                text(f"SELECT last_value, is_called FROM {qualified}")
            ).one()
            sequences[qualified] = (value, called)
        return sequences


def seeded_database(
    tmp_path_factory: pytest.TempPathFactory, name: str, metadata: MetaData, seed: Seed
) -> SeededDatabase:
    """The seeded database for this session: a template file, or a PostgreSQL schema."""
    if ON_POSTGRES:
        return PostgresSchema(f"{name}_tests_{os.getpid()}", metadata, seed)
    return SQLiteTemplate(tmp_path_factory.mktemp(name), name, metadata, seed)


@pytest.fixture(scope="session")
def shop_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededDatabase]:
    """The demo shop's tables and seed data, for the demo's and the legacy app's tests."""
    from shop.models import Base
    from shop.seed import seed

    database = seeded_database(tmp_path_factory, "shop", Base.metadata, seed)
    yield database
    database.close()
