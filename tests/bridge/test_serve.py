"""``flask2fastapi serve`` over TCP, facing what production sends and how it stops.

Each test starts ``python -m bridge serve`` on a free port with two small apps
that write to the database: a Flask app with Flask-SQLAlchemy, and a FastAPI
app with :class:`bridge.AsyncDatabase` serving URLs under ``/async``.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bridge._porting.database import DatabaseSettings
from tests.bridge.test_cli import Project, serving
from tests.conftest import ON_POSTGRES, TEST_DATABASE_URL

LEGACY_SOURCE = """
    import os

    from flask import Flask, request
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import text

    from bridge import DatabaseSettings, configure_sqlite

    TABLE = os.environ["NOTES_TABLE"]


    def create_app():
        settings = DatabaseSettings.from_env()
        app = Flask(__name__)
        app.config.update(settings.flask_config())
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
        if settings.backend == "postgresql":
            # Each process names its connections, so that a test can tell whose they are.
            app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] = {
                "application_name": f"{TABLE}-{os.getpid()}"
            }
        db = SQLAlchemy(app)
        with app.app_context():
            if settings.backend == "sqlite":
                configure_sqlite(db.engine)
            db.session.execute(text(f"CREATE TABLE IF NOT EXISTS {TABLE} (side VARCHAR(10))"))
            db.session.commit()

        @app.get("/client")
        def client():
            return {"address": request.remote_addr, "scheme": request.scheme}

        @app.post("/notes")
        def add_note():
            db.session.execute(text(f"INSERT INTO {TABLE} (side) VALUES ('legacy')"))
            db.session.commit()
            return {"side": "legacy"}

        return app
"""

PORTED_SOURCE = """
    import os

    from fastapi import FastAPI, Request
    from sqlalchemy import text

    from bridge import AsyncDatabase, DbSession

    TABLE = os.environ["NOTES_TABLE"]
    database = AsyncDatabase()
    app = FastAPI(lifespan=database.lifespan)
    database.install(app)


    @app.get("/async/client")
    def client(request: Request):
        return {"address": request.client.host, "scheme": request.url.scheme}


    @app.post("/async/notes")
    async def add_note(session: DbSession):
        await session.execute(text(f"INSERT INTO {TABLE} (side) VALUES ('async')"))
        return {"side": "async"}
"""

MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
    fastapi = "{ported}:app"
"""

FORWARDED = {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    suffix = uuid.uuid4().hex[:8]
    legacy, ported = f"serve_legacy_{suffix}", f"serve_ported_{suffix}"
    (tmp_path / f"{legacy}.py").write_text(textwrap.dedent(LEGACY_SOURCE), encoding="utf-8")
    (tmp_path / f"{ported}.py").write_text(textwrap.dedent(PORTED_SOURCE), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    created = Project(tmp_path, legacy, ported)
    created.write_manifest(MANIFEST.format(legacy=legacy, ported=ported))
    yield created
    sys.modules.pop(legacy, None)
    sys.modules.pop(ported, None)


@pytest.fixture
def table() -> Iterator[str]:
    """The name of the table the apps write to, dropped afterwards on PostgreSQL."""
    name = f"serve_notes_{uuid.uuid4().hex[:8]}"
    yield name
    if ON_POSTGRES:
        engine = create_engine(DatabaseSettings(url=TEST_DATABASE_URL).sync_url)
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
        engine.dispose()


def test_a_half_sent_request_head_gets_408(project: Project, table: str) -> None:
    database_url = f"sqlite:///{project.folder}/notes.sqlite3"
    env = {"NOTES_TABLE": table}
    with serving(project, database_url, "--header-timeout", "0.5", env=env, ready="/client") as (
        http,
        _served,
    ):
        host, port = http.base_url.host, http.base_url.port
        assert port is not None
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"GET /client HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_proxy_headers_are_ignored_by_default(project: Project, table: str) -> None:
    database_url = f"sqlite:///{project.folder}/notes.sqlite3"
    env = {"NOTES_TABLE": table, "FORWARDED_ALLOW_IPS": "*"}  # trusted, yet off
    with serving(project, database_url, env=env, ready="/client") as (http, _served):
        legacy = http.get("/client", headers=FORWARDED).json()
        ported = http.get("/async/client", headers=FORWARDED).json()

    assert legacy == {"address": "127.0.0.1", "scheme": "http"}
    assert ported == {"address": "127.0.0.1", "scheme": "http"}


def test_proxy_headers_from_a_trusted_proxy_set_client_and_scheme_on_both_sides(
    project: Project, table: str
) -> None:
    database_url = f"sqlite:///{project.folder}/notes.sqlite3"
    options = ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    env = {"NOTES_TABLE": table}
    with serving(project, database_url, *options, env=env, ready="/client") as (http, _served):
        legacy = http.get("/client", headers=FORWARDED).json()
        ported = http.get("/async/client", headers=FORWARDED).json()

    assert legacy == {"address": "1.2.3.4", "scheme": "https"}
    assert ported == {"address": "1.2.3.4", "scheme": "https"}


def test_proxy_headers_from_an_untrusted_peer_are_ignored(project: Project, table: str) -> None:
    database_url = f"sqlite:///{project.folder}/notes.sqlite3"
    options = ["--proxy-headers", "--forwarded-allow-ips", "10.1.2.3"]
    env = {"NOTES_TABLE": table}
    with serving(project, database_url, *options, env=env, ready="/client") as (http, _served):
        legacy = http.get("/client", headers=FORWARDED).json()
        ported = http.get("/async/client", headers=FORWARDED).json()

    assert legacy == {"address": "127.0.0.1", "scheme": "http"}
    assert ported == {"address": "127.0.0.1", "scheme": "http"}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_gracefully_with_status_0_and_sqlite_keeps_every_row(
    project: Project, table: str, workers: str
) -> None:
    database = project.folder / "notes.sqlite3"
    env = {"NOTES_TABLE": table}
    with serving(
        project, f"sqlite:///{database}", "--workers", workers, env=env, ready="/client"
    ) as (http, served):
        assert http.post("/notes").json() == {"side": "legacy"}
        assert http.post("/async/notes").json() == {"side": "async"}

    assert served.returncode == 0, served.stderr
    assert "Traceback" not in served.stderr
    # The rows are in the database file itself: the last connection to close
    # folded the write-ahead log into it. immutable=1 reads the file alone.
    in_file = sqlite3.connect(f"file:{database}?immutable=1", uri=True)
    fresh = sqlite3.connect(database)
    try:
        query = f"SELECT side FROM {table} ORDER BY side"
        assert in_file.execute(query).fetchall() == [("async",), ("legacy",)]
        assert fresh.execute(query).fetchall() == [("async",), ("legacy",)]
    finally:
        in_file.close()
        fresh.close()


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")
def test_sigterm_on_postgresql_exits_0(project: Project, table: str) -> None:
    env = {"NOTES_TABLE": table}
    with serving(project, TEST_DATABASE_URL, "--workers", "2", env=env, ready="/client") as (
        http,
        served,
    ):
        assert http.post("/notes").json() == {"side": "legacy"}
        assert http.post("/async/notes").json() == {"side": "async"}

    assert served.returncode == 0, served.stderr
    assert "Traceback" not in served.stderr


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")
def test_with_workers_the_parent_process_holds_no_connection(project: Project, table: str) -> None:
    env = {"NOTES_TABLE": table}
    with serving(project, TEST_DATABASE_URL, "--workers", "2", env=env, ready="/client") as (
        http,
        served,
    ):
        http.get("/client")
        names = connection_names(prefix=f"{table}-")

    # The workers' connections are seen; the parent, which built the apps only
    # to check them, has closed its own.
    assert names, "no worker connection seen: the application_name filter is wrong"
    assert f"{table}-{served.pid}" not in names


def connection_names(prefix: str) -> list[str]:
    """The application_name of every PostgreSQL connection whose name starts with *prefix*."""
    engine = create_engine(DatabaseSettings(url=TEST_DATABASE_URL).sync_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE :p"
                ),
                {"p": prefix + "%"},
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()
