"""The reliability suite: the hybrid as ``python -m bridge serve`` runs it, over real TCP.

Every test in this folder is marked ``reliability``: ``pytest -m reliability``
runs the folder alone, ``pytest`` runs it with the rest.

The server runs on the test database: a SQLite file, or ``TEST_DATABASE_URL``
in a schema of its own, once per async driver (see ``tests/conftest.py``). On
PostgreSQL its connections carry an ``application_name`` of their own, so
``pg_stat_activity`` tells them apart from the test's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from bridge import DatabaseSettings
from tests.conftest import ASYNC_DRIVERS, ON_POSTGRES, TEST_DATABASE_URL

# The demo's fixtures (tests/demo/conftest.py), for the fuzzing of its routes.
from tests.demo.conftest import (  # noqa: F401 - fixtures, found by name
    database_url,
    fastapi_app,
    legacy_app,
    manifest,
    reset_database,
    session_cookie,
)
from tests.reliability.server import Server, bulk_products, serve

HERE = Path(__file__).parent
BULK_PRODUCTS = 30_000  # an export of about 1.3 MB: long enough to leave in the middle


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="module", params=ASYNC_DRIVERS, ids=lambda driver: driver or "aiosqlite")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The hybrid server on the test database, with :data:`BULK_PRODUCTS` more products."""
    driver: str | None = request.param
    folder = tmp_path_factory.mktemp(f"reliability-{driver or 'sqlite'}")
    if not ON_POSTGRES:
        url = f"sqlite:///{folder}/reliability.sqlite3"
        with serve(folder, url, inspect_url=url) as running:
            bulk_products(running.engine, BULK_PRODUCTS)
            yield running
        return
    name = f"reliability_{driver}_{os.getpid()}"
    with postgres_schema(name) as inspect_url:
        named = make_url(inspect_url).update_query_dict({"application_name": name})
        served = serve(
            folder,
            named.render_as_string(hide_password=False),
            inspect_url=inspect_url,
            async_driver=driver,
            application_name=name,
        )
        with served as running:
            bulk_products(running.engine, BULK_PRODUCTS)
            yield running


@pytest.fixture
def hybrid(server: Server) -> Iterator[Server]:
    """The server, checked after the test: no connection left inside a transaction."""
    yield server
    server.close_clients()
    states = server.settle()
    assert states.get("idle in transaction", 0) == 0, f"{states}\n{server.log_tail()}"


@contextmanager
def postgres_schema(name: str) -> Iterator[str]:
    """``TEST_DATABASE_URL`` pointed at a new schema *name*, dropped afterwards."""
    admin = create_engine(DatabaseSettings(url=TEST_DATABASE_URL).sync_url)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield (
            make_url(TEST_DATABASE_URL)
            .update_query_dict({"options": f"-csearch_path={name}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()
