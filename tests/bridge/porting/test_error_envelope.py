from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from flask import Blueprint, Flask, jsonify, session
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
)
from werkzeug.test import EnvironBuilder

from bridge._exceptions import PageNotFound
from bridge._porting.database import DatabaseSettings
from bridge._porting.error_envelope import (
    default_message,
    flask_error_response,
    install_error_envelope,
    status_name,
)
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionMiddleware
from tests.bridge.apps import error_body
from tests.drivers import CLOSED_PORT_URL, aiosqlite_threads_stopped
from tests.live_server import HTTPImplementation, live_server, read_responses

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    quantity: int


def ported_app() -> FastAPI:
    app = FastAPI()
    install_error_envelope(app, error_body)

    @app.get("/missing")
    def missing() -> None:
        raise HTTPException(404, detail="Product 3 does not exist.")

    @app.get("/forbidden")
    def forbidden() -> None:
        raise HTTPException(403)

    @app.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418, detail="Short and stout.", headers={"X-Pot": "1"})

    @app.get("/unusual")
    def unusual() -> None:
        raise HTTPException(499, detail="The client closed the request.")

    @app.get("/only-get")
    def only_get() -> dict[str, Any]:
        return {}

    @app.post("/orders")
    def place(order: Order) -> dict[str, Any]:
        return {"quantity": order.quantity}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    @app.get("/page")
    def page() -> None:
        raise PageNotFound("page 9 is past the last page")

    @app.get("/pool")
    def pool() -> None:
        raise PoolTimeoutError("QueuePool limit of size 1 overflow 0 reached")

    @app.get("/bug")
    def bug() -> None:
        raise ZeroDivisionError

    return app


async def get(path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=ported_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.request(method, path, **kwargs)


def envelope(code: int, name: str, message: str) -> dict[str, Any]:
    return error_body(code, name, message)


async def test_http_exception_with_detail_keeps_the_message() -> None:
    response = await get("/missing")

    assert response.status_code == 404
    assert response.json() == envelope(404, "Not Found", "Product 3 does not exist.")


async def test_http_exception_without_detail_gets_werkzeugs_description() -> None:
    response = await get("/forbidden")

    assert response.status_code == 403
    assert response.json() == envelope(403, "Forbidden", Forbidden.description)


async def test_http_exception_headers_are_kept() -> None:
    response = await get("/teapot")

    assert response.status_code == 418
    assert response.json() == envelope(418, "I'm a teapot", "Short and stout.")
    assert response.headers["x-pot"] == "1"


async def test_http_exception_with_an_unusual_status_still_gets_the_envelope() -> None:
    response = await get("/unusual")

    assert response.status_code == 499
    assert response.json() == envelope(499, "Unknown Error", "The client closed the request.")


async def test_unknown_route_is_starlettes_404_in_the_envelope() -> None:
    response = await get("/nowhere")

    assert response.status_code == 404
    assert response.json() == envelope(404, "Not Found", NotFound.description)


async def test_wrong_method_is_405_with_allow_in_the_envelope() -> None:
    response = await get("/only-get", method="DELETE")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == envelope(405, "Method Not Allowed", MethodNotAllowed.description)


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/orders", {"json": {"quantity": "many"}}),
        ("/orders", {"json": {}}),
        ("/orders", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/items/abc", {}),
    ],
)
async def test_validation_errors_are_400_never_422(path: str, kwargs: dict[str, Any]) -> None:
    method = "POST" if path == "/orders" else "GET"
    response = await get(path, method=method, **kwargs)

    assert response.status_code == 400
    assert response.json() == envelope(400, "Bad Request", BadRequest.description)


async def test_page_past_the_end_is_404() -> None:
    response = await get("/page")

    assert response.status_code == 404
    assert response.json() == envelope(404, "Not Found", NotFound.description)


async def test_pool_timeout_is_503_with_retry_after() -> None:
    response = await get("/pool")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == envelope(503, "Service Unavailable", ServiceUnavailable.description)


async def test_unhandled_exception_is_500_in_the_envelope() -> None:
    response = await get("/bug")

    assert response.status_code == 500
    assert response.json() == envelope(
        500, "Internal Server Error", InternalServerError.description
    )


async def test_envelope_bodies_are_written_as_flask_writes_them() -> None:
    response = await get("/missing")
    flask_app = Flask(__name__)
    with flask_app.app_context():
        expected = jsonify(envelope(404, "Not Found", "Product 3 does not exist.")).data

    assert response.content == expected


async def test_messages_replace_werkzeugs_default_but_not_a_detail() -> None:
    app = FastAPI()
    install_error_envelope(app, error_body, messages={503: "The shop is busy.", 404: "Nope."})

    @app.get("/pool")
    def pool() -> None:
        raise PoolTimeoutError("exhausted")

    @app.get("/missing")
    def missing() -> None:
        raise HTTPException(404, detail="Product 3 does not exist.")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        busy = await http.get("/pool")
        missing_detail = await http.get("/missing")
        unknown = await http.get("/nowhere")

    assert busy.json() == error_body(503, "Service Unavailable", "The shop is busy.")
    assert busy.headers["retry-after"] == "1"
    assert missing_detail.json()["error"]["message"] == "Product 3 does not exist."
    assert unknown.json() == error_body(404, "Not Found", "Nope.")


@pytest.mark.parametrize(
    ("code", "name"),
    [(400, "Bad Request"), (413, "Request Entity Too Large"), (418, "I'm a teapot"),
     (422, "Unprocessable Entity"), (507, "Insufficient Storage"), (299, "Unknown Error")],
)  # fmt: skip
def test_status_name_is_werkzeugs(code: int, name: str) -> None:
    assert status_name(code) == name


def test_default_message_is_abort_description() -> None:
    assert default_message(413) == RequestEntityTooLarge.description
    assert default_message(299) == "Unknown Error"


def blueprint_app() -> Flask:
    app = Flask(__name__)
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.post("/upload")
    def upload() -> str:
        raise AssertionError("the view must not run")

    @api.errorhandler(413)
    def api_too_large(error: RequestEntityTooLarge) -> Any:
        return jsonify(message=error.description), 413

    @app.post("/upload")
    def site_upload() -> str:
        raise AssertionError("the view must not run")

    @app.errorhandler(413)
    def site_too_large(error: RequestEntityTooLarge) -> Any:
        return f"<p>{error.description}</p>", 413, {"X-Handler": "site"}

    app.register_blueprint(api)
    return app


def environ(path: str) -> dict[str, Any]:
    return EnvironBuilder(path=path, method="POST").get_environ()


def test_flask_error_response_uses_the_blueprints_handler() -> None:
    error = RequestEntityTooLarge("Too big.")

    status, headers, body = flask_error_response(blueprint_app(), error, environ("/api/upload"))

    assert status == 413
    assert body == b'{"message":"Too big."}\n'
    assert (b"content-type", b"application/json") in headers


def test_flask_error_response_uses_the_apps_handler_outside_the_blueprint() -> None:
    error = RequestEntityTooLarge("Too big.")

    status, headers, body = flask_error_response(blueprint_app(), error, environ("/upload"))

    assert (status, body) == (413, b"<p>Too big.</p>")
    assert (b"x-handler", b"site") in headers


def test_flask_error_response_without_a_handler_is_werkzeugs_page() -> None:
    status, _headers, body = flask_error_response(
        Flask(__name__), RequestEntityTooLarge(), environ("/x")
    )

    assert status == 413
    assert b"Request Entity Too Large" in body


@pytest.mark.parametrize("code", [204, 304])
async def test_statuses_without_a_body_get_none(code: int) -> None:
    app = FastAPI()
    install_error_envelope(app, error_body)

    @app.get("/empty")
    def empty() -> None:
        raise HTTPException(code, headers={"ETag": '"v1"'})

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/empty")
    assert response.status_code == code
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers["etag"] == '"v1"'


async def test_an_unhandled_exception_keeps_what_outer_middleware_adds() -> None:
    # A 500 from Flask still carries the session cookie and Vary: Cookie.
    legacy = Flask(__name__)
    legacy.secret_key = "k"

    @legacy.get("/boom")
    def legacy_boom() -> str:
        session["seen"] = 1
        raise RuntimeError("boom")

    @legacy.errorhandler(500)
    def legacy_500(error: Any) -> Any:
        return jsonify(error_body(500, error.name, error.description)), 500

    app = FastAPI()
    install_error_envelope(app, error_body)
    app.add_middleware(FlaskSessionMiddleware, config=FlaskSessionConfig(secret_key="k"))

    @app.get("/boom")
    def ported_boom(request: Request) -> None:
        request.session["seen"] = 1
        raise RuntimeError("boom")

    flask_transport = httpx.WSGITransport(app=legacy)
    asgi_transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with httpx.Client(transport=flask_transport, base_url="http://testserver") as flask_client:
        flask_response = flask_client.get("/boom")
    async with httpx.AsyncClient(transport=asgi_transport, base_url="http://testserver") as client:
        ported_response = await client.get("/boom")
    for response in (flask_response, ported_response):
        assert response.status_code == 500
        assert response.headers["vary"] == "Cookie"
        assert response.headers["set-cookie"].startswith("session=")
    assert ported_response.content == flask_response.content


def pipelining_app() -> tuple[FastAPI, list[int]]:
    """A port that raises, and one that writes: the writes are counted."""
    writes: list[int] = []
    app = FastAPI()
    install_error_envelope(app, error_body)

    @app.get("/bug")
    def bug() -> None:
        raise ZeroDivisionError

    @app.post("/orders")
    def place() -> dict[str, int]:
        writes.append(1)
        return {"id": len(writes)}

    return app, writes


PIPELINED = (
    b"GET /bug HTTP/1.1\r\nHost: testserver\r\n\r\n"
    b"POST /orders HTTP/1.1\r\nHost: testserver\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_500_leaves_the_connection_usable_for_a_pipelined_write(http: HTTPImplementation) -> None:
    # Re-raising after the 500 made uvicorn close the connection: the write
    # pipelined behind it was committed and never answered.
    app, writes = pipelining_app()
    with live_server(app, http=http) as server, server.connect() as sock:
        sock.sendall(PIPELINED)
        first, second = read_responses(sock, 2)

    assert first.status == 500
    assert first.header("connection") != "close"
    assert json.loads(first.body) == envelope(
        500, "Internal Server Error", InternalServerError.description
    )
    assert (second.status, json.loads(second.body)) == (200, {"id": 1})
    assert writes == [1]


async def test_an_unhandled_exception_is_logged_with_its_traceback_as_flask_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="flask2fastapi"):
        response = await get("/bug")

    assert response.status_code == 500
    [record] = [r for r in caplog.records if r.name == "flask2fastapi"]
    assert record.getMessage() == "Exception on /bug [GET]"
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


async def test_an_exception_after_a_complete_response_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_error_envelope(app, error_body)

    def fail() -> None:
        raise ZeroDivisionError

    @app.get("/later")
    def later() -> Response:
        return Response(b"done", background=BackgroundTask(fail))

    transport = httpx.ASGITransport(app=app)  # raises what the app raises
    with caplog.at_level(logging.ERROR, logger="flask2fastapi"):
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/later")

    assert (response.status_code, response.content) == (200, b"done")
    assert [r.getMessage() for r in caplog.records] == ["Exception on /later [GET]"]


async def test_an_exception_in_the_middle_of_a_response_still_reaches_the_server() -> None:
    # The response is cut short: only the server can end it, by closing the connection.
    app = FastAPI()
    install_error_envelope(app, error_body)

    def chunks() -> Iterator[bytes]:
        yield b"first"
        raise ZeroDivisionError

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(chunks())

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        with pytest.raises(ZeroDivisionError):
            await http.get("/stream")


def database_app(tmp_path: Path) -> FastAPI:
    """Routes that fail on a database, for real: down, refusing a value, or a SQL error."""
    (tmp_path / "down.sqlite3").mkdir()  # cannot be opened: SQLITE_CANTOPEN
    app = FastAPI()
    install_error_envelope(app, error_body, messages={503: "The database is down."})

    async def run(url: str, statement: str, async_driver: Any = None) -> None:
        engine = DatabaseSettings(url=url, async_driver=async_driver).create_async_engine()
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    @app.get("/down")
    async def down() -> None:
        await run(f"sqlite:///{tmp_path}/down.sqlite3", "SELECT 1")

    @app.get("/refused/{driver}")
    async def refused(driver: str) -> None:
        await run(CLOSED_PORT_URL, "SELECT 1", driver)

    @app.get("/sql-error")
    async def sql_error() -> None:
        await run(f"sqlite:///{tmp_path}/up.sqlite3", "SELECT * FROM no_such_table")

    @app.get("/bad-value")
    def bad_value() -> None:
        raise DataError("SELECT %(v)s", {"v": "a\x00b"}, ValueError("NUL in a text value"))

    return app


@pytest.mark.parametrize("path", ["/down", "/refused/asyncpg", "/refused/psycopg"])
async def test_a_database_that_cannot_be_reached_is_503_with_retry_after(
    tmp_path: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=database_app(tmp_path), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path)
    await aiosqlite_threads_stopped()

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == error_body(503, "Service Unavailable", "The database is down.")
    assert [r.levelname for r in caplog.records if r.name == "flask2fastapi"] == ["WARNING"]


async def test_a_value_the_database_refused_is_400(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=database_app(tmp_path), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/bad-value")

    assert response.status_code == 400
    assert response.json() == error_body(400, "Bad Request", BadRequest.description)


async def test_a_sql_error_is_still_a_500(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=database_app(tmp_path), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/sql-error")

    assert response.status_code == 500
    assert "retry-after" not in response.headers
