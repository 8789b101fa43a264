"""Fixtures for the legacy Flask app, on the shop's tables as seeded.

The tables are made and seeded once per session and put back before each test
(see ``tests/conftest.py``): SQLite copies a seeded file into the test's
``tmp_path``; on PostgreSQL (``TEST_DATABASE_URL``) they live in a schema of
the session's own, as other suites may use the same database at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from bridge._porting.database import DatabaseSettings
from legacy_flask_app import create_app
from legacy_flask_app.extensions import db
from shop.seed import DEMO_PASSWORD
from tests.conftest import SeededDatabase

MakeApp = Callable[..., Flask]
Login = Callable[..., dict[str, Any]]


@pytest.fixture
def database_url(shop_database: SeededDatabase, tmp_path: Path) -> str:
    """The URL of this test's database."""
    return shop_database.url(tmp_path)


@pytest.fixture
def make_app(shop_database: SeededDatabase, database_url: str) -> Iterator[MakeApp]:
    """Build apps on the test database; fails the test if a connection leaked.

    Keyword arguments are config overrides. The first app of a test finds the
    tables as seeded, or with ``SEED_DEMO_DATA=True`` no tables at all: that app
    creates and seeds them itself, as in production. Later apps of the test
    share the first one's database as it is.
    """
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        config = {
            **DatabaseSettings(url=database_url).flask_config(),
            "TESTING": True,
            "SEED_DEMO_DATA": False,
            **overrides,
        }
        if not apps and config["SEED_DEMO_DATA"]:
            shop_database.drop_tables(database_url)
        elif not apps:
            shop_database.reset(database_url)
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    leaked = []
    for app in apps:
        with app.app_context():
            leaked.append(db.engine.pool.checkedout())  # type: ignore[attr-defined]
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
