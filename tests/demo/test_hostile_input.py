"""The demo against what production sends: hostile clients and a failing database.

Every answer here is a 4xx or a 503 in the shop's envelope, never a 500, and
the legacy route and its port answer alike. Each request goes through the
hybrid twice where it matters: once with the route ported, once with it
legacy (the manifest flipped), as a rollout or a rollback would serve it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session

import async_app
import legacy_flask_app
from bridge._porting.database import DatabaseSettings
from bridge._porting.repository import run_sync
from bridge._porting.sessions import FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, RouteKey, RouteState
from legacy_flask_app.extensions import db
from shop.errors import POOL_TIMEOUT_MESSAGE
from shop.models import Base
from shop.seed import DEMO_PASSWORD, seed
from tests.conftest import ON_POSTGRES, TEST_DATABASE_URL
from tests.drivers import CLOSED_PORT_URL, aiosqlite_threads_stopped, terminate_backend
from tests.live_server import HTTPImplementation, live_server

from .conftest import BASE_URL, SECRET_KEY, table_rows

pytestmark = pytest.mark.anyio

ALICE = {"email": "alice@example.com", "password": DEMO_PASSWORD}
ALICE_ID = 2  # the seed's second user; the first is the admin

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")


def all_legacy(manifest: Manifest) -> Manifest:
    """The manifest with every route sent to the Flask app."""
    routes = {key: RouteState.LEGACY for key in manifest.routes}
    return dataclasses.replace(manifest, routes=routes)


def with_state(manifest: Manifest, key: str, state: RouteState) -> Manifest:
    method, rule = key.split(" ", 1)
    return dataclasses.replace(manifest, routes={**manifest.routes, RouteKey(method, rule): state})


@pytest.fixture
async def sides(
    legacy_app: Flask, fastapi_app: FastAPI, manifest: Manifest
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client of the demo's hybrid as migrated ("async") and with every route legacy."""
    hybrids = {
        "async": HybridApp(legacy_app, fastapi_app, manifest),
        "legacy": HybridApp(legacy_app, fastapi_app, all_legacy(manifest)),
    }
    clients = {
        side: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=hybrid, raise_app_exceptions=False),
            base_url=BASE_URL,
        )
        for side, hybrid in hybrids.items()
    }
    yield clients
    for client in clients.values():
        await client.aclose()
    for hybrid in hybrids.values():
        hybrid.legacy.shutdown()


async def on_both(
    sides: dict[str, httpx.AsyncClient], method: str, url: str, **options: Any
) -> dict[str, httpx.Response]:
    """The same request sent to the ported route and to the legacy one."""
    answers = {}
    for side, client in sides.items():
        response = await client.request(method, url, **options)
        assert response.headers["x-bridge-side"] == side, (side, url)
        answers[side] = response
    return answers


def assert_same_answer(answers: dict[str, httpx.Response]) -> httpx.Response:
    ported, legacy = answers["async"], answers["legacy"]
    assert (ported.status_code, ported.content) == (legacy.status_code, legacy.content)
    return ported


def assert_error(response: httpx.Response, code: int) -> None:
    """A *code* response in the shop's envelope."""
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "name", "message"}
    assert error["code"] == code


# ---------------------------------------------------------------- cookies


@pytest.mark.parametrize("session_first", [True, False])
async def test_two_cookie_headers_are_read_alike_on_both_sides(
    sides: dict[str, httpx.AsyncClient], session_cookie: FlaskSessionCookie, session_first: bool
) -> None:
    # The port joined repeated Cookie headers with "; " and logged the user in;
    # the legacy side, through a2wsgi, sees "session=...,theme=dark" and does not.
    session = ("cookie", f"session={session_cookie.dump({'user_id': ALICE_ID})}")
    other = ("cookie", "theme=dark")
    headers = [session, other] if session_first else [other, session]

    me = assert_same_answer(await on_both(sides, "GET", "/api/auth/me", headers=headers))

    assert_error(me, 401)


async def test_one_cookie_header_logs_in_on_both_sides(
    sides: dict[str, httpx.AsyncClient], session_cookie: FlaskSessionCookie
) -> None:
    cookie = f"session={session_cookie.dump({'user_id': ALICE_ID})}; theme=dark"

    me = assert_same_answer(await on_both(sides, "GET", "/api/auth/me", headers={"cookie": cookie}))

    assert (me.status_code, me.json()["email"]) == (200, "alice@example.com")


def login_cookie(cookie: FlaskSessionCookie, user_id: Any = ALICE_ID) -> dict[str, str]:
    return {"cookie": f"session={cookie.dump({'user_id': user_id})}"}


# ---------------------------------------------------------------- pages


@pytest.mark.parametrize("page", [10**19, 2**63, 2**62 + 1, int("9" * 4000)])
@pytest.mark.parametrize(
    "url",
    ["/api/products", "/api/products/1/reviews", "/api/orders"],
    ids=["products", "reviews", "orders"],
)
async def test_a_page_whose_offset_overflows_64_bits_is_404(
    sides: dict[str, httpx.AsyncClient], session_cookie: FlaskSessionCookie, url: str, page: int
) -> None:
    # The OFFSET (page - 1) * per_page went to the database, which refused it: a 500.
    answers = await on_both(
        sides, "GET", f"{url}?page={page}", headers=login_cookie(session_cookie)
    )

    assert_error(assert_same_answer(answers), 404)


# ---------------------------------------------------------------- JSON bodies

DEEP_JSON = [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]


@pytest.mark.parametrize("body", DEEP_JSON, ids=["unclosed-lists", "nested-objects"])
@pytest.mark.parametrize("url", ["/api/auth/login", "/api/orders", "/api/products/1/reviews"])
async def test_json_nested_past_the_recursion_limit_is_400(
    sides: dict[str, httpx.AsyncClient], session_cookie: FlaskSessionCookie, url: str, body: bytes
) -> None:
    # json.loads raises RecursionError, which neither get_json turned into a 400.
    headers = {"content-type": "application/json", **login_cookie(session_cookie)}

    answers = await on_both(sides, "POST", url, content=body, headers=headers)

    assert_error(assert_same_answer(answers), 400)


@pytest.mark.parametrize("body", DEEP_JSON, ids=["unclosed-lists", "nested-objects"])
async def test_json_nested_too_deep_is_400_on_a_legacy_only_route(
    sides: dict[str, httpx.AsyncClient], body: bytes
) -> None:
    response = await sides["async"].post(
        "/api/auth/register", content=body, headers={"content-type": "application/json"}
    )

    assert response.headers["x-bridge-side"] == "legacy"
    assert_error(response, 400)


# JSON texts whose strings hold what no database column takes: a NUL (PostgreSQL
# refuses it) or an unpaired surrogate (no driver can encode it).
UNSTORABLE = [
    pytest.param("\\u0000", id="nul"),
    pytest.param("\\ud800", id="lone-high-surrogate"),
    pytest.param("\\udfff", id="lone-low-surrogate"),
]


@pytest.mark.parametrize("bad", UNSTORABLE)
@pytest.mark.parametrize(
    ("url", "template"),
    [
        ("/api/auth/login", '{"email": "alice@example.com%s", "password": "x"}'),
        ("/api/auth/login", '{"email": "alice@example.com", "password": "x%s"}'),
        ("/api/products/1/reviews", '{"rating": 4, "body": "fine%s"}'),
    ],
    ids=["login-email", "login-password", "review-body"],
)
async def test_json_strings_no_database_can_store_are_400(
    sides: dict[str, httpx.AsyncClient],
    session_cookie: FlaskSessionCookie,
    url: str,
    template: str,
    bad: str,
) -> None:
    headers = {"content-type": "application/json", **login_cookie(session_cookie)}
    body = (template % bad).encode()

    answers = await on_both(sides, "POST", url, content=body, headers=headers)

    assert_error(assert_same_answer(answers), 400)


async def test_a_password_with_a_lone_surrogate_for_a_real_user_is_400(
    sides: dict[str, httpx.AsyncClient],
) -> None:
    # check_password_hash encodes the password: an unpaired surrogate raised there.
    body = b'{"email": "alice@example.com", "password": "\\ud800"}'
    headers = {"content-type": "application/json"}

    answers = await on_both(sides, "POST", "/api/auth/login", content=body, headers=headers)

    assert_error(assert_same_answer(answers), 400)


@pytest.mark.parametrize("bad", UNSTORABLE)
@pytest.mark.parametrize("field", ["email", "name", "password"])
async def test_registration_refuses_what_no_database_can_store(
    sides: dict[str, httpx.AsyncClient], field: str, bad: str
) -> None:
    fields = {"email": "new@example.com", "name": "New", "password": "long enough"}
    fields[field] += bad
    body = ("{" + ", ".join(f'"{k}": "{v}"' for k, v in fields.items()) + "}").encode()

    response = await sides["async"].post(
        "/api/auth/register", content=body, headers={"content-type": "application/json"}
    )

    assert_error(response, 400)


# ---------------------------------------------------------------- query and path


@pytest.mark.parametrize(
    "query",
    [
        "q=%00",
        "q=a%00b",
        "category=%00",
        "category=books%00",
        f"q={'a' * 60_000}",
        f"category={'b' * 61}",
    ],
    ids=[
        "q-nul",
        "q-inner-nul",
        "category-nul",
        "category-inner-nul",
        "q-60k",
        "category-too-long",
    ],
)
async def test_text_filters_no_column_can_match_are_400(
    sides: dict[str, httpx.AsyncClient], query: str
) -> None:
    # PostgreSQL refuses a NUL in text; SQLite refuses a LIKE pattern past 50,000 bytes.
    answers = await on_both(sides, "GET", f"/api/products?{query}")

    assert_error(assert_same_answer(answers), 400)


@pytest.mark.parametrize(
    "sku", ["%00", "BK-001%00", "%ED%A0%80"], ids=["nul", "inner-nul", "surrogate-bytes"]
)
async def test_a_sku_no_column_can_hold_is_404(
    sides: dict[str, httpx.AsyncClient], sku: str
) -> None:
    answers = await on_both(sides, "GET", f"/api/products/sku/{sku}")

    assert_error(assert_same_answer(answers), 404)


# ---------------------------------------------------------------- the session's user id


@pytest.mark.parametrize(
    "user_id",
    ["2", 2.0, 2.5, True, [2], {"id": 2}, 2**70, -2, 0, None, ""],
    ids=repr,
)
async def test_a_signed_session_whose_user_id_is_no_id_is_logged_out(
    sides: dict[str, httpx.AsyncClient], session_cookie: FlaskSessionCookie, user_id: Any
) -> None:
    # The key signed it, but the value is no id: user_by_id("2") compared "0 < '2'".
    headers = login_cookie(session_cookie, user_id)

    me = assert_same_answer(await on_both(sides, "GET", "/api/auth/me", headers=headers))
    products = assert_same_answer(await on_both(sides, "GET", "/api/products", headers=headers))

    assert_error(me, 401)
    assert products.status_code == 200


# ---------------------------------------------------------------- the database down


def demo_apps(settings: DatabaseSettings) -> tuple[Flask, FastAPI]:
    legacy = legacy_flask_app.create_app(
        {**settings.flask_config(), "SECRET_KEY": SECRET_KEY, "SEED_DEMO_DATA": False}
    )
    return legacy, async_app.create_app(settings, secret_key=SECRET_KEY)


@asynccontextmanager
async def clients_of(
    legacy: Flask, ported: FastAPI, manifest: Manifest
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Clients of the hybrid as migrated and all legacy, with the port's engine started."""
    hybrids = {
        "async": HybridApp(legacy, ported, manifest),
        "legacy": HybridApp(legacy, ported, all_legacy(manifest)),
    }
    async with ported.router.lifespan_context(ported), contextlib.AsyncExitStack() as stack:
        clients = {}
        for side, hybrid in hybrids.items():
            transport = httpx.ASGITransport(app=hybrid, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
            clients[side] = await stack.enter_async_context(client)
            stack.callback(hybrid.legacy.shutdown)
        yield clients
    with legacy.app_context():
        db.engine.dispose()


def assert_unavailable(answers: dict[str, httpx.Response]) -> None:
    """503 with Retry-After and the shop's busy message, alike on both sides."""
    response = assert_same_answer(answers)
    assert_error(response, 503)
    assert response.json()["error"]["message"] == POOL_TIMEOUT_MESSAGE
    for side in answers.values():
        assert side.headers["retry-after"] == "1"


# Requests that reach the database on both sides: reads, a login, a write.
REQUESTS = [
    pytest.param("GET", "/api/products/1", None, id="product"),
    pytest.param("GET", "/api/categories", None, id="categories"),
    pytest.param("POST", "/api/auth/login", ALICE, id="login"),
    pytest.param("POST", "/api/orders", {"items": [{"product_id": 1, "quantity": 1}]}, id="order"),
]


@pytest.fixture(
    params=["asyncpg", "psycopg", "unopenable-sqlite"],
)
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseSettings:
    """A database no connection reaches: a closed port, or a SQLite file that cannot be opened."""
    if request.param == "unopenable-sqlite":
        (tmp_path / "shop.sqlite3").mkdir()  # a directory: SQLITE_CANTOPEN, even for root
        return DatabaseSettings(url=f"sqlite:///{tmp_path}/shop.sqlite3")
    return DatabaseSettings(url=CLOSED_PORT_URL, async_driver=request.param)


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS)
async def test_a_database_nothing_can_reach_is_503_with_retry_after(
    unreachable: DatabaseSettings,
    manifest: Manifest,
    session_cookie: FlaskSessionCookie,
    method: str,
    url: str,
    body: Any,
) -> None:
    legacy, ported = demo_apps(unreachable)
    async with clients_of(legacy, ported, manifest) as sides:
        answers = await on_both(sides, method, url, json=body, headers=login_cookie(session_cookie))
    await aiosqlite_threads_stopped()

    assert_unavailable(answers)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[DatabaseSettings]:
    """A seeded SQLite file that another process holds a write lock on past the busy timeout."""
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path}/shop.sqlite3", sqlite_busy_timeout=0.1)
    engine = create_engine(settings.sync_url)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        run_sync(session, seed())
    engine.dispose()
    holder = sqlite3.connect(tmp_path / "shop.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    yield settings
    holder.execute("ROLLBACK")
    holder.close()


async def test_a_sqlite_file_locked_past_the_busy_timeout_is_503_for_a_write(
    locked: DatabaseSettings, manifest: Manifest, session_cookie: FlaskSessionCookie
) -> None:
    order = {"items": [{"product_id": 1, "quantity": 1}]}
    legacy, ported = demo_apps(locked)
    async with clients_of(legacy, ported, manifest) as sides:
        answers = await on_both(
            sides, "POST", "/api/orders", json=order, headers=login_cookie(session_cookie)
        )

    assert_unavailable(answers)


def remember_backend_pid(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    record.info["pid"] = cursor.fetchone()[0]
    cursor.close()


def terminate_at(engine: Engine, statement_start: str) -> list[int]:
    """Terminate the session's backend when *engine* is about to run the statement.

    Returns the list of backends terminated, filled as it happens.
    """
    terminated: list[int] = []

    def before_execute(connection: Connection, *_args: Any) -> None:
        statement: str = _args[1]
        if statement.lstrip().upper().startswith(statement_start) and not terminated:
            terminated.append(connection.info["pid"])
            terminate_backend(TEST_DATABASE_URL, terminated[0])

    event.listen(engine, "connect", remember_backend_pid)
    event.listen(engine, "before_cursor_execute", before_execute)
    return terminated


@needs_postgres
@pytest.mark.parametrize(
    ("method", "url", "body", "statement"),
    [
        pytest.param("GET", "/api/products/1", None, "SELECT PRODUCTS.", id="read"),
        pytest.param(
            "POST",
            "/api/orders",
            {"items": [{"product_id": 1, "quantity": 1}]},
            "UPDATE PRODUCTS",
            id="write-mid-transaction",
        ),
    ],
)
async def test_a_backend_terminated_mid_request_is_503_and_writes_nothing(
    legacy_app: Flask,
    fastapi_app: FastAPI,
    manifest: Manifest,
    sync_engine: Engine,
    session_cookie: FlaskSessionCookie,
    method: str,
    url: str,
    body: Any,
    statement: str,
) -> None:
    with legacy_app.app_context():
        legacy_engine = db.engine
    ported_engine = fastapi_app.state.database.engine.sync_engine
    before = table_rows(sync_engine)
    answers = {}
    for side, engine, hybrid_manifest in [
        ("legacy", legacy_engine, all_legacy(manifest)),
        ("async", ported_engine, manifest),
    ]:
        terminated = terminate_at(engine, statement)
        hybrid = HybridApp(legacy_app, fastapi_app, hybrid_manifest)
        transport = httpx.ASGITransport(app=hybrid, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            answers[side] = await client.request(
                method, url, json=body, headers=login_cookie(session_cookie)
            )
        hybrid.legacy.shutdown()
        assert len(terminated) == 1, f"{side}: no backend was terminated"

    assert_unavailable(answers)
    assert table_rows(sync_engine) == before


# ---------------------------------------------------------------- malformed HTTP


@pytest.fixture
def live_hybrid(
    database_settings: DatabaseSettings, reset_database: Any, manifest: Manifest
) -> Iterator[HybridApp]:
    """The demo's hybrid with apps of its own: uvicorn runs their lifespan in its loop."""
    legacy, ported = demo_apps(database_settings)
    yield HybridApp(legacy, ported, manifest)
    with legacy.app_context():
        db.engine.dispose()


UVICORN_400 = b"Invalid HTTP request received."
LOGIN = b"POST /api/auth/login HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n"
JSON = b"Content-Type: application/json\r\n"


@dataclasses.dataclass(frozen=True)
class Malformed:
    """A malformed request and what uvicorn with each HTTP parser answers.

    ``None``: the server's own plain-text 400, connection closed. A number:
    the parser let the request through and the app answered it in the
    envelope. migration_guide/05-behaviour-differences.md has the table.
    """

    request: bytes
    httptools: int | None = None
    h11: int | None = None
    # h11 buffers at most 16 KiB of an unfinished request line: whether it
    # answers its own 400 or hands the URL to the app (whose answer is a 400
    # too) depends on how the bytes arrive. Either is a 400, never a 500.
    h11_may_refuse: bool = False


MALFORMED = {
    "content-length-not-a-number": Malformed(LOGIN + JSON + b"Content-Length: abc\r\n\r\n{}"),
    "content-length-negative": Malformed(LOGIN + JSON + b"Content-Length: -1\r\n\r\n{}"),
    "content-length-twice-differing": Malformed(
        LOGIN + JSON + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"
    ),
    "content-length-twice-same": Malformed(
        LOGIN + JSON + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", h11=400
    ),
    "content-length-and-chunked": Malformed(
        LOGIN
        + JSON
        + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        h11=400,
    ),
    "url-of-100-kb": Malformed(
        b"GET /api/products?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: shop\r\n"
        b"Connection: close\r\n\r\n",
        h11=400,
        h11_may_refuse=True,
    ),
    "path-not-utf-8": Malformed(
        b"GET /api/products/sku/\xff\xfe HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    ),
    "query-not-utf-8": Malformed(
        b"GET /api/products?q=\xff HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    ),
    "legacy-path-not-utf-8": Malformed(
        b"GET /api/health\xff HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    ),
    "unknown-method": Malformed(
        b"BREW /api/products HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n", h11=405
    ),
    "unknown-method-legacy": Malformed(
        b"BREW /api/health HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n", h11=405
    ),
}


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_malformed_http_gets_the_servers_400_or_the_apps_answer_never_a_500(
    live_hybrid: HybridApp, http: HTTPImplementation
) -> None:
    answers = {}
    with live_server(live_hybrid, http=http) as server:
        for name, case in MALFORMED.items():
            answers[name] = server.exchange(case.request)
        tracebacks = server.log.tracebacks()
        errors = [r.getMessage() for r in server.log.records if r.levelno >= logging.ERROR]

    assert (tracebacks, errors) == ([], [])
    for name, case in MALFORMED.items():
        answer, expected = answers[name], getattr(case, http)
        assert answer.closed, name
        refused = http == "h11" and case.h11_may_refuse and answer.body == UVICORN_400
        if expected is None or refused:
            assert (answer.status, answer.body) == (400, UVICORN_400), name
            assert answer.header("connection") == "close", name
        else:
            assert answer.status == expected, (name, answer.data[:300])
            assert json.loads(answer.body)["error"]["code"] == expected, name
