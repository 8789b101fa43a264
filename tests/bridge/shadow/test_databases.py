"""A shadow run refuses to start when the two sides would use different databases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, make_url, text

from bridge._exceptions import ConfigurationError
from bridge._porting.database import DatabaseSettings
from bridge._serving.manifest import Manifest
from bridge._shadow.cases import Case
from bridge._shadow.databases import check_same_database, database_identity
from bridge._shadow.runner import Outcome
from bridge._shadow.session import shadow_session
from tests.bridge import shadow_apps

pytestmark = pytest.mark.anyio


def test_the_driver_and_the_spelling_of_localhost_do_not_matter() -> None:
    psycopg = make_url("postgresql+psycopg://app@localhost/shop")
    asyncpg = make_url("postgresql+asyncpg://app@127.0.0.1:5432/shop")
    assert database_identity(psycopg) == database_identity(asyncpg)
    assert database_identity(psycopg) != database_identity(make_url("postgresql://app@/other"))
    assert database_identity(psycopg) != database_identity(make_url("postgresql://bob@/shop"))


def test_a_relative_sqlite_path_is_the_same_file_as_its_absolute_one() -> None:
    relative = make_url("sqlite:///shop.sqlite3")
    absolute = make_url(f"sqlite+aiosqlite:///{os.getcwd()}/shop.sqlite3")
    assert database_identity(relative) == database_identity(absolute)


def test_the_error_names_both_databases_and_the_fix() -> None:
    with pytest.raises(ConfigurationError) as error:
        check_same_database(
            [
                ("DATABASE_URL", make_url("sqlite:///a.sqlite3")),
                ("the Flask app's Flask-SQLAlchemy engine", None),  # not known: not checked
                ("the Flask app's Flask-SQLAlchemy engine", make_url("sqlite:///b.sqlite3")),
            ]
        )
    message = str(error.value)
    assert "\n" not in message
    assert "b.sqlite3 but DATABASE_URL uses sqlite:///a.sqlite3" in message
    assert "point SQLALCHEMY_DATABASE_URI at DATABASE_URL" in message


def flask_sqlalchemy_app(uri: str) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    app.config["SECRET_KEY"] = shadow_apps.SECRET_KEY
    db = SQLAlchemy()
    db.init_app(app)

    @app.after_request
    def app_version(response: Any) -> Any:
        response.headers["X-App-Version"] = shadow_apps.APP_VERSION
        return response

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int) -> Any:
        text_ = db.session.execute(
            text("SELECT text FROM shadow_notes WHERE id = :id"), {"id": note_id}
        ).scalar()
        return jsonify(id=note_id, text=text_)

    return app


async def test_a_flask_app_on_another_database_stops_the_run_before_any_request(
    database_settings: DatabaseSettings, sync_engine: Engine, tmp_path: Path
) -> None:
    other = f"sqlite:///{tmp_path}/other.sqlite3"
    flask_app = flask_sqlalchemy_app(other)
    port = shadow_apps.create_port(database_settings)

    with pytest.raises(ConfigurationError) as error:
        async with shadow_session(flask_app, port, Manifest(), database=sync_engine):
            pytest.fail("the session must not start")

    assert f"the Flask app's Flask-SQLAlchemy engine uses {other}" in str(error.value)
    assert not (tmp_path / "other.sqlite3").exists()  # nothing ran against it


async def test_one_database_on_both_sides_runs(
    database_settings: DatabaseSettings, sync_engine: Engine
) -> None:
    shadow_apps.create_schema(database_settings)
    flask_app = flask_sqlalchemy_app(database_settings.flask_config()["SQLALCHEMY_DATABASE_URI"])
    port = shadow_apps.create_port(database_settings)
    try:
        async with shadow_session(flask_app, port, Manifest(), database=sync_engine) as runner:
            result = await runner.run(Case(method="GET", path="/notes/1"))
    finally:
        shadow_apps.metadata.drop_all(sync_engine)
    assert result.outcome is Outcome.SAME, result.report()
