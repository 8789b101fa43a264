"""The demo shop on three sides: the legacy app, the FastAPI app and the hybrid.

Every side runs on the shop's tables, made and seeded once per session and put
back before each test (see ``tests/conftest.py``). The clock of the shop's
models is frozen, so rows written at different moments by different sides carry
the same timestamps and can be compared to the byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask
from sqlalchemy import Engine, select

import async_app
import legacy_flask_app
import shop.models
from bridge._porting.database import DatabaseSettings
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, load_manifest
from legacy_flask_app.extensions import db
from shop.models import Base
from tests.conftest import SeededDatabase

SECRET_KEY = "demo-tests-secret-key"
FROZEN_NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
BASE_URL = "http://localhost"


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FrozenDatetime:
        return cls.fromtimestamp(FROZEN_NOW.timestamp(), tz)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shop.models, "datetime", FrozenDatetime)


@pytest.fixture
def database_url(shop_database: SeededDatabase, tmp_path: Path) -> str:
    """The shop's database: this test's own file on SQLite, the session's schema on PostgreSQL."""
    return shop_database.url(tmp_path)


@pytest.fixture
def reset_database(shop_database: SeededDatabase, database_url: str) -> None:
    """The shop's tables holding exactly the seed data, as the test starts."""
    shop_database.reset(database_url)


@pytest.fixture
def legacy_app(database_settings: DatabaseSettings, reset_database: None) -> Iterator[Flask]:
    """The legacy app as in production: TESTING off, errors rendered by its handlers."""
    app = legacy_flask_app.create_app(
        {**database_settings.flask_config(), "SECRET_KEY": SECRET_KEY, "SEED_DEMO_DATA": False}
    )
    yield app
    with app.app_context():
        leaked = db.engine.pool.checkedout()  # type: ignore[attr-defined]
        db.engine.dispose()
    assert leaked == 0, f"the legacy app left {leaked} connection(s) checked out"


@pytest.fixture
async def fastapi_app(
    database_settings: DatabaseSettings, reset_database: None
) -> AsyncIterator[FastAPI]:
    """The ported routes, with their engine started as the server would start it."""
    app = async_app.create_app(database_settings, secret_key=SECRET_KEY)
    async with app.router.lifespan_context(app):
        yield app
        leaked = app.state.database.engine.sync_engine.pool.checkedout()
    assert leaked == 0, f"the async app left {leaked} connection(s) checked out"


@pytest.fixture
def manifest() -> Manifest:
    return load_manifest(Path(__file__).parents[2] / "migration.toml")


@pytest.fixture
def hybrid(legacy_app: Flask, fastapi_app: FastAPI, manifest: Manifest) -> Iterator[HybridApp]:
    app = HybridApp(legacy_app, fastapi_app, manifest)
    yield app
    app.legacy.shutdown()


@pytest.fixture
def session_cookie() -> FlaskSessionCookie:
    """Signs Flask session cookies with the demo apps' key."""
    return FlaskSessionCookie(FlaskSessionConfig(secret_key=SECRET_KEY))


def table_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every shop table, in primary key order."""
    with engine.connect() as connection:
        return {
            table.name: [
                tuple(row) for row in connection.execute(select(table).order_by(*table.primary_key))
            ]
            for table in Base.metadata.sorted_tables
        }
