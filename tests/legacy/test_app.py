"""create_app: configuration, seeding, SQLite pragmas and the health route."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from legacy_flask_app import create_app
from legacy_flask_app.extensions import db
from shop.config import DEV_SECRET_KEY
from tests.conftest import ON_POSTGRES, SeededDatabase

from .conftest import Login, MakeApp


def test_health(client: FlaskClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_seed_demo_data_creates_tables_and_seeds_only_once(make_app: MakeApp) -> None:
    make_app(SEED_DEMO_DATA=True)
    again = make_app(SEED_DEMO_DATA=True)  # the same database, already seeded
    response = again.test_client().get("/api/products")
    assert response.json is not None
    assert response.json["total"] == 25


def test_a_reset_puts_back_the_seed_rows_and_the_next_ids(
    app: Flask, login: Login, shop_database: SeededDatabase, database_url: str
) -> None:
    order = {"items": [{"product_id": 1, "quantity": 2}]}
    placed = []
    for _ in range(2):
        client = app.test_client()
        login(client, "alice@example.com")
        placed.append(client.post("/api/orders", json=order).json)
        with app.app_context():
            db.engine.dispose()  # a reset replaces the SQLite file: close it first
        shop_database.reset(database_url)
    assert [body["id"] for body in placed if body] == [4, 4]
    stock = app.test_client().get("/api/products/1").json
    assert stock is not None
    assert stock["stock"] == 12


def test_overrides_win_over_defaults(app: Flask) -> None:
    assert app.config["TESTING"] is True
    assert app.config["SEED_DEMO_DATA"] is False


def test_secret_key_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_app: MakeApp
) -> None:
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert make_app().secret_key == "from-the-environment"
    monkeypatch.delenv("SECRET_KEY")
    assert make_app().secret_key == DEV_SECRET_KEY


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite only")
def test_sqlite_enforces_foreign_keys(app: Flask) -> None:
    with app.app_context():
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.skipif(ON_POSTGRES, reason="DATABASE_URL here is a SQLite path")
def test_relative_sqlite_path_is_read_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Flask-SQLAlchemy alone would open a relative path in the instance folder,
    # and the async side, opening it from the working directory, another file.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///data/shop.sqlite3")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    app = create_app({"TESTING": True})
    with app.app_context():
        database, pool_size = db.engine.url.database, db.engine.pool.size()  # type: ignore[attr-defined]
        db.engine.dispose()
    assert database == os.path.join(tmp_path, "data", "shop.sqlite3")
    assert pool_size == 3
    assert (tmp_path / "data" / "shop.sqlite3").stat().st_size > 0
