"""Streamed responses take their connection before the status goes out, on both sides,
and give it back however the response ends."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, Response, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, ScalarResult, event, select, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import ClientDisconnect
from starlette.responses import Response as StarletteResponse
from starlette.types import Message

from bridge import (
    AsyncDatabase,
    AsyncDatabaseError,
    DatabaseSettings,
    RowStream,
    install_error_envelope,
    scalars,
    stream_rows,
    stream_rows_response,
)
from bridge._porting.streaming import CHUNK_SIZE
from bridge._serving.wsgi import LegacyWSGI
from tests.bridge.apps import (
    Item,
    SentMessages,
    error_body,
    http_scope,
    insert_items,
    receive_body,
)
from tests.conftest import checked_out

pytestmark = [pytest.mark.anyio, pytest.mark.async_side]  # the FastAPI streams use async engines

TIMEOUT = 10
ROWS = 3000
BUSY = "the database is busy"
NAMES = [f"item {number:05d}" for number in range(ROWS)]


def item_lines(items: Iterable[Item]) -> Iterator[str]:
    """A header, then one line per item, padded so that the body spans many chunks."""
    yield "name\n"
    for item in items:
        yield f"{item.name:<200}\n"


EXPECTED = "".join(item_lines(Item(name=name) for name in NAMES)).encode()


def all_items() -> Any:
    return scalars(select(Item).order_by(Item.name))


def broken_query() -> Any:
    return scalars(select(Item).where(text("no_such_column = 1")))


def render_then_fail(items: ScalarResult[Item]) -> Iterator[str]:
    yield from item_lines(items.fetchmany(CHUNK_SIZE // 100))
    raise LookupError("the render broke")


@pytest.fixture
def items(tables: Engine) -> Engine:
    insert_items(tables, *NAMES)
    return tables


@pytest.fixture
def one_connection(database_settings: DatabaseSettings) -> DatabaseSettings:
    """A pool of one connection that gives up after a fifth of a second."""
    return dataclasses.replace(database_settings, pool_size=1, max_overflow=0, pool_timeout=0.2)


def idle_in_transaction(engine: Engine) -> int:
    """Other sessions on this PostgreSQL database left inside a transaction; 0 on SQLite."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
            )
        )


# ------------------------------------------------------------------ Flask


@pytest.fixture
def legacy(one_connection: DatabaseSettings, items: Engine) -> Iterator[tuple[Flask, SQLAlchemy]]:
    """A Flask app that exports the items, with a 503 for a busy pool as a legacy app has it."""
    app = Flask(__name__)
    app.config.update(one_connection.flask_config())
    db = SQLAlchemy(app)

    @app.errorhandler(PoolTimeoutError)
    def busy(_error: PoolTimeoutError) -> Any:
        return jsonify(error_body(503, "Service Unavailable", BUSY)), 503, {"Retry-After": "1"}

    @app.get("/items.csv")
    def export() -> Response:
        return Response(stream_rows(db.engine, all_items(), item_lines), mimetype="text/csv")

    @app.get("/broken.csv")
    def broken() -> Response:
        return Response(stream_rows(db.engine, broken_query(), item_lines))

    @app.get("/fails-midway.csv")
    def fails_midway() -> Response:
        return Response(stream_rows(db.engine, all_items(), render_then_fail))

    yield app, db
    with app.app_context():
        leaked = checked_out(db.engine)
        db.engine.dispose()
    assert leaked == 0, f"{leaked} connection(s) still checked out after the test"


def legacy_checked_out(app: Flask, db: SQLAlchemy) -> int:
    with app.app_context():
        return checked_out(db.engine)


def test_a_flask_stream_is_every_row_in_chunks(legacy: tuple[Flask, SQLAlchemy]) -> None:
    app, db = legacy
    with app.test_client() as client:
        response = client.get("/items.csv")
        assert response.is_streamed
        chunks = list(response.iter_encoded())
        response.close()

    assert b"".join(chunks) == EXPECTED
    assert len(chunks) > 1
    assert all(len(chunk) >= CHUNK_SIZE for chunk in chunks[:-1])
    assert legacy_checked_out(app, db) == 0


def test_the_connection_is_taken_in_the_view(legacy: tuple[Flask, SQLAlchemy]) -> None:
    app, db = legacy
    with app.test_request_context("/items.csv"):
        response = app.full_dispatch_request()  # the view ran; not a byte of the body yet
    assert legacy_checked_out(app, db) == 1

    response.close()  # what a server does with a body it stops reading
    assert legacy_checked_out(app, db) == 0


def test_an_exhausted_pool_is_the_handlers_503_not_a_cut_200(
    legacy: tuple[Flask, SQLAlchemy],
) -> None:
    app, db = legacy
    with app.app_context(), db.engine.connect(), app.test_client() as client:
        response = client.get("/items.csv")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json == error_body(503, "Service Unavailable", BUSY)


def test_an_operation_that_fails_is_an_error_response(legacy: tuple[Flask, SQLAlchemy]) -> None:
    app, db = legacy
    with app.test_client() as client:
        response = client.get("/broken.csv")

    assert response.status_code == 500
    assert legacy_checked_out(app, db) == 0


def test_head_gives_the_connection_back_unread(legacy: tuple[Flask, SQLAlchemy]) -> None:
    app, db = legacy
    with app.test_client() as client:
        response = client.head("/items.csv")
        response.close()

    assert response.status_code == 200
    assert legacy_checked_out(app, db) == 0


async def test_a_client_that_leaves_a_flask_stream_frees_its_connection(
    legacy: tuple[Flask, SQLAlchemy], items: Engine
) -> None:
    app, db = legacy
    wsgi = LegacyWSGI(app, threads=1)
    client = LeavingClient()
    with anyio.fail_after(TIMEOUT):
        await wsgi(http_scope("GET", "/items.csv"), client.receive, client.send)
        while legacy_checked_out(app, db):  # the worker closes the body after the call returns
            await anyio.sleep(0.01)
    wsgi.shutdown()

    assert client.sent.status == 200
    assert 0 < len(client.sent.body) < len(EXPECTED)
    assert idle_in_transaction(items) == 0


async def test_a_client_gone_before_the_status_frees_the_flask_streams_connection(
    legacy: tuple[Flask, SQLAlchemy],
) -> None:
    app, db = legacy
    gone = threading.Event()

    @app.get("/after-the-client-left.csv")
    def after_the_client_left() -> Response:
        assert gone.wait(TIMEOUT)
        return Response(stream_rows(db.engine, all_items(), item_lines))

    async def receive() -> Message:
        if not gone.is_set():
            gone.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    wsgi = LegacyWSGI(app, threads=1)
    sent = SentMessages()
    with anyio.fail_after(TIMEOUT):
        await wsgi(http_scope("GET", "/after-the-client-left.csv"), receive, sent)
    wsgi.shutdown()

    # The responder notices a gone client once the response streams, so at most
    # the first batch went out; then it closed the body, and the connection is back.
    bodies = [m for m in sent.messages if m["type"] == "http.response.body"]
    assert len(bodies) <= 1
    assert legacy_checked_out(app, db) == 0


async def test_a_flask_stream_that_fails_midway_frees_its_connection(
    legacy: tuple[Flask, SQLAlchemy],
) -> None:
    app, db = legacy
    wsgi = LegacyWSGI(app, threads=1)
    sent = SentMessages()
    with anyio.fail_after(TIMEOUT), pytest.raises(LookupError, match="the render broke"):
        await wsgi(http_scope("GET", "/fails-midway.csv"), receive_body([]), sent)
    wsgi.shutdown()

    assert sent.status == 200  # too late for another status; the server cuts the body
    assert legacy_checked_out(app, db) == 0


def test_selects_fetch_in_batches_unless_the_statement_says(items: Engine) -> None:
    fetched: list[Any] = []

    @event.listens_for(items, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, _many: Any) -> None:
        fetched.append(context.execution_options.get("yield_per"))

    own = scalars(select(Item).order_by(Item.name).execution_options(yield_per=7))
    for operation in (all_items(), own):
        stream = stream_rows(items, operation, item_lines, yield_per=50)
        assert b"".join(stream) == EXPECTED
        assert stream.closed

    assert fetched == [50, 7]


def test_a_stream_closed_twice_is_closed_once(items: Engine) -> None:
    stream = stream_rows(items, all_items(), item_lines)
    assert isinstance(stream, RowStream)
    next(stream)
    stream.close()
    stream.close()

    assert stream.closed
    assert list(stream) == []
    assert checked_out(items) == 0


# ------------------------------------------------------------------ FastAPI


@asynccontextmanager
async def ported(settings: DatabaseSettings) -> AsyncIterator[tuple[FastAPI, AsyncEngine]]:
    """A FastAPI app exporting the items, with its lifespan running."""
    database = AsyncDatabase(settings)
    app = FastAPI(lifespan=database.lifespan)
    database.install(app)
    install_error_envelope(app, error_body, messages={503: BUSY})

    @app.get("/items.csv")
    async def export(request: Request) -> StarletteResponse:
        return await stream_rows_response(request, all_items(), item_lines, media_type="text/csv")

    @app.get("/broken.csv")
    async def broken() -> StarletteResponse:
        return await stream_rows_response(database, broken_query(), item_lines)

    @app.get("/fails-midway.csv")
    async def fails_midway() -> StarletteResponse:
        return await stream_rows_response(database.engine, all_items(), render_then_fail)

    async with app.router.lifespan_context(app):
        engine = database.engine
        yield app, engine
        leaked = checked_out(engine.sync_engine)
    assert leaked == 0, f"{leaked} async connection(s) still checked out after the test"


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_a_fastapi_stream_is_every_row(
    one_connection: DatabaseSettings, items: Engine
) -> None:
    async with ported(one_connection) as (app, engine), client_for(app) as client:
        response = await client.get("/items.csv")
        assert checked_out(engine.sync_engine) == 0

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content == EXPECTED


async def test_an_exhausted_async_pool_is_the_envelopes_503_not_a_cut_200(
    one_connection: DatabaseSettings, items: Engine
) -> None:
    async with (
        ported(one_connection) as (app, engine),
        client_for(app) as client,
        engine.connect(),  # another request holds the only connection
    ):
        response = await client.get("/items.csv")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == error_body(503, "Service Unavailable", BUSY)


async def test_an_async_operation_that_fails_is_an_error_response(
    one_connection: DatabaseSettings, items: Engine
) -> None:
    async with ported(one_connection) as (app, engine), client_for(app) as client:
        response = await client.get("/broken.csv")
        assert checked_out(engine.sync_engine) == 0

    assert response.status_code == 500
    assert response.json()["error"]["code"] == 500


class LeavingClient:
    """A client that sends its request, reads one chunk of the body, and leaves."""

    def __init__(self) -> None:
        self.sent = SentMessages()
        self.request: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]
        self.first_chunk = anyio.Event()

    async def receive(self) -> Message:
        if self.request:
            return self.request.pop(0)
        await self.first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self.sent(message)
        if message["type"] == "http.response.body":
            self.first_chunk.set()


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_a_client_that_leaves_a_fastapi_stream_frees_its_connection(
    one_connection: DatabaseSettings, items: Engine, spec_version: str
) -> None:
    # 2.3: Starlette listens for the disconnect and cancels the stream (uvicorn).
    # 2.4: the server's send raises OSError once the client is gone.
    client = LeavingClient()

    async def send(message: Message) -> None:
        if spec_version == "2.4" and client.first_chunk.is_set():
            raise OSError("the client is gone")
        await client.send(message)

    scope = {
        **http_scope("GET", "/items.csv"),
        "asgi": {"version": "3.0", "spec_version": spec_version},
    }
    async with ported(one_connection) as (app, engine):
        leaving = pytest.raises(ClientDisconnect) if spec_version == "2.4" else nullcontext()
        with anyio.fail_after(TIMEOUT), leaving:
            await app(scope, client.receive, send)
        assert checked_out(engine.sync_engine) == 0

        async with client_for(app) as http:  # the one connection serves the next request
            assert (await http.get("/items.csv")).content == EXPECTED

    assert client.sent.status == 200
    assert 0 < len(client.sent.body) < len(EXPECTED)
    assert idle_in_transaction(items) == 0


async def test_a_fastapi_stream_that_fails_midway_frees_its_connection(
    one_connection: DatabaseSettings, items: Engine
) -> None:
    sent = SentMessages()
    async with ported(one_connection) as (app, engine):
        with anyio.fail_after(TIMEOUT), pytest.raises(LookupError, match="the render broke"):
            await app(http_scope("GET", "/fails-midway.csv"), receive_body([]), sent)
        assert checked_out(engine.sync_engine) == 0

    assert sent.status == 200


async def test_a_request_without_an_installed_database_is_told_how_to_install_it(
    one_connection: DatabaseSettings,
) -> None:
    app = FastAPI()

    @app.get("/items.csv")
    async def export(request: Request) -> StarletteResponse:
        return await stream_rows_response(request, all_items(), item_lines)

    with pytest.raises(AsyncDatabaseError, match=r"call AsyncDatabase.install\(app\)"):
        await app(http_scope("GET", "/items.csv"), receive_body([]), SentMessages())
