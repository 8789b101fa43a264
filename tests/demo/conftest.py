"""The demo shop on three sides: the legacy app, the FastAPI app and the hybrid.

Every side runs on the test database (see ``tests/conftest.py``). The clock of
the shop's models is frozen, so rows written at different moments by different
sides carry the same timestamps and can be compared to the byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import async_app
import legacy_flask_app
import shop.models
from bridge._porting.database import DatabaseSettings
from bridge._porting.repository import run_sync
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, load_manifest
from legacy_flask_app.extensions import db
from shop.models import Base
from shop.seed import seed

from .cases import Case

SECRET_KEY = "demo-tests-secret-key"
FROZEN_NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
BASE_URL = "http://localhost"

# The response headers clients of the shop rely on; transport headers such as
# Date, Server and Content-Length are not compared (the bodies are, to the byte).
COMPARED_HEADERS = (
    "content-type",
    "location",
    "allow",
    "retry-after",
    "vary",
    "content-disposition",
    "cache-control",
    "www-authenticate",
)


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FrozenDatetime:
        return cls.fromtimestamp(FROZEN_NOW.timestamp(), tz)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shop.models, "datetime", FrozenDatetime)


@pytest.fixture
def reset_database(sync_engine: Engine) -> Iterator[Callable[[], None]]:
    """Recreate the shop's tables with the seed data; done once before the test."""

    def reset() -> None:
        Base.metadata.drop_all(sync_engine)
        Base.metadata.create_all(sync_engine)
        with Session(sync_engine) as session, session.begin():
            run_sync(session, seed())

    reset()
    yield reset
    Base.metadata.drop_all(sync_engine)


@pytest.fixture
def legacy_app(database_settings: DatabaseSettings, reset_database: Any) -> Iterator[Flask]:
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
    database_settings: DatabaseSettings, reset_database: Any
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
    return FlaskSessionCookie(FlaskSessionConfig(secret_key=SECRET_KEY))


@dataclass(frozen=True)
class Answer:
    """What a client sees of a response, plus the rows the database holds after it."""

    status: int
    headers: dict[str, str]
    cookies: tuple[tuple[str, ...], ...]
    body: bytes
    rows: dict[str, list[tuple[Any, ...]]]


def cookie_shape(set_cookie: str) -> tuple[str, ...]:
    """A Set-Cookie header without its signed value: name, emptiness and attributes.

    The value is signed with a timestamp, so it differs from second to second;
    whether it is empty (a deletion) and every attribute must match.
    """
    first, *attributes = [part.strip() for part in set_cookie.split(";")]
    name, _, value = first.partition("=")
    return (
        name,
        "deleted" if value in ("", '""') else "set",
        *sorted(
            a.lower() for a in attributes if not a.lower().startswith("expires=") or "1970" in a
        ),
    )


def table_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every shop table, in primary key order.

    A password hash is salted at random, so only its method (``scrypt:...``)
    is compared.
    """
    rows = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            statement = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [
                tuple(
                    _hash_method(value) if key == "password_hash" else value
                    for key, value in row._mapping.items()
                )
                for row in connection.execute(statement)
            ]
    return rows


def _hash_method(password_hash: str) -> str:
    return password_hash.split("$", 1)[0]


def request_options(case: Case, cookie: FlaskSessionCookie) -> dict[str, Any]:
    headers = dict(case.headers)
    if case.session_data is not None:
        headers["Cookie"] = f"session={cookie.dump(case.session_data)}"
    options: dict[str, Any] = {"headers": headers}
    if case.json is not None:
        options["json"] = case.json
    elif case.content is not None:
        options["content"] = case.content
    return options


def answer(response: httpx.Response, engine: Engine) -> Answer:
    return Answer(
        status=response.status_code,
        headers={h: response.headers[h] for h in COMPARED_HEADERS if h in response.headers},
        cookies=tuple(cookie_shape(c) for c in response.headers.get_list("set-cookie")),
        body=response.content,
        rows=table_rows(engine),
    )
