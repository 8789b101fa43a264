"""Fixtures for the legacy Flask app: a fresh, seeded database for every test.

SQLite: a file under the test's ``tmp_path``. With ``TEST_DATABASE_URL`` set to
PostgreSQL, the tables live in a schema of their own for the session (other
suites may use the same database at the same time) and are created and dropped
around each test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

from bridge._porting.database import DatabaseSettings
from bridge._porting.repository import run_sync
from legacy_flask_app import create_app
from legacy_flask_app.extensions import db
from shop.seed import DEMO_PASSWORD, is_seeded, seed

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith(("postgresql", "postgres:"))

MakeApp = Callable[..., Flask]
Login = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``TEST_DATABASE_URL`` pointed at a schema only this session uses."""
    schema = f"legacy_tests_{os.getpid()}"
    admin = create_engine(DatabaseSettings(url=TEST_DATABASE_URL).sync_url)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    # lock_timeout: a leaked connection makes drop_all fail instead of hang.
    options = f"-csearch_path={schema} -clock_timeout=10s"
    yield (
        make_url(TEST_DATABASE_URL)
        .update_query_dict({"options": options})
        .render_as_string(hide_password=False)
    )
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of this test's database."""
    if ON_POSTGRES:
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/legacy.sqlite3"


@pytest.fixture
def make_app(database_url: str) -> Iterator[MakeApp]:
    """Build apps on the test database, seeded; fails the test if a connection leaked.

    Keyword arguments are config overrides. With ``SEED_DEMO_DATA=True`` the app
    creates and seeds the tables itself, as in production.
    """
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        config = {
            **DatabaseSettings(url=database_url).flask_config(),
            "TESTING": True,
            "SEED_DEMO_DATA": False,
            **overrides,
        }
        app = create_app(config)
        apps.append(app)
        if not config["SEED_DEMO_DATA"]:
            with app.app_context():
                db.create_all()
                if not run_sync(db.session(), is_seeded()):
                    run_sync(db.session(), seed())
                    db.session.commit()
        return app

    yield make
    leaked = []
    for app in apps:
        with app.app_context():
            leaked.append(db.engine.pool.checkedout())  # type: ignore[attr-defined]
            db.drop_all()
            db.engine.dispose()
    assert not any(leaked), f"connections still checked out after the test: {leaked}"


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    """The legacy app with TESTING on, on a freshly seeded database."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of :func:`app`; it keeps the session cookie between requests."""
    return app.test_client()


@pytest.fixture
def login() -> Login:
    """``login(client, email, password=DEMO_PASSWORD)`` logs *client* in, or fails."""

    def log_in(client: FlaskClient, email: str, password: str = DEMO_PASSWORD) -> dict[str, Any]:
        response = client.post("/api/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.json
        body: dict[str, Any] = response.json  # type: ignore[assignment]
        return body

    return log_in


@pytest.fixture
def db_session(app: Flask) -> Iterator[Session]:
    """The app's ``db.session``, in an app context, for running operations directly."""
    with app.app_context():
        yield db.session  # type: ignore[misc]
