"""The demo through the hybrid server: sessions shared by both sides, the
manifest deciding the side, and the database rules of the async side."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from sqlalchemy import Engine, event, text

import async_app
import legacy_flask_app
from bridge._porting.database import DatabaseSettings
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, RouteKey, RouteState
from legacy_flask_app.extensions import db
from shop.seed import DEMO_PASSWORD

from .conftest import BASE_URL, SECRET_KEY

pytestmark = pytest.mark.anyio

ALICE = {"email": "alice@example.com", "password": DEMO_PASSWORD}


def with_states(manifest: Manifest, **states: str) -> Manifest:
    """The manifest with some routes set to other states, keyed as "METHOD /rule"."""
    routes = dict(manifest.routes)
    for key, state in states.items():
        method, rule = key.split(" ", 1)
        routes[RouteKey(method, rule)] = RouteState(state)
    return dataclasses.replace(manifest, routes=routes)


@pytest.fixture
async def client(hybrid: HybridApp) -> AsyncIterator[httpx.AsyncClient]:
    # A 500 is an answer to check, not an error of the test.
    transport = httpx.ASGITransport(app=hybrid, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def test_login_on_the_async_side_is_seen_by_legacy_routes(client: httpx.AsyncClient) -> None:
    login = await client.post("/api/auth/login", json=ALICE)
    assert login.headers["x-bridge-side"] == "async"
    cancel = await client.post("/api/orders/2/cancel")
    assert cancel.headers["x-bridge-side"] == "legacy"
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"


async def test_logout_on_the_async_side_logs_out_of_legacy_routes(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/auth/login", json=ALICE)
    logout = await client.post("/api/auth/logout")
    assert logout.headers["x-bridge-side"] == "async"
    cancel = await client.post("/api/orders/2/cancel")
    assert cancel.status_code == 401


async def test_login_and_logout_on_the_legacy_side_are_seen_by_ports(
    legacy_app: Flask, fastapi_app: FastAPI, manifest: Manifest
) -> None:
    legacy_login = with_states(
        manifest, **{"POST /api/auth/login": "legacy", "POST /api/auth/logout": "legacy"}
    )
    hybrid = HybridApp(legacy_app, fastapi_app, legacy_login)
    transport = httpx.ASGITransport(app=hybrid)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        login = await client.post("/api/auth/login", json=ALICE)
        assert login.headers["x-bridge-side"] == "legacy"
        me = await client.get("/api/auth/me")
        assert (me.headers["x-bridge-side"], me.status_code) == ("async", 200)
        assert me.json()["email"] == "alice@example.com"
        await client.post("/api/auth/logout")
        me = await client.get("/api/auth/me")
        assert (me.headers["x-bridge-side"], me.status_code) == ("async", 401)
    hybrid.legacy.shutdown()


async def test_flipping_a_route_in_the_manifest_changes_the_side_not_the_answer(
    legacy_app: Flask, fastapi_app: FastAPI, manifest: Manifest
) -> None:
    answers = {}
    for state in ("async", "legacy"):
        flipped = with_states(manifest, **{"GET /api/products": state})
        hybrid = HybridApp(legacy_app, fastapi_app, flipped)
        transport = httpx.ASGITransport(app=hybrid)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            response = await client.get("/api/products?category=garden&sort=-price")
        hybrid.legacy.shutdown()
        assert response.headers["x-bridge-side"] == state
        answers[state] = (response.status_code, response.content)
    assert answers["async"] == answers["legacy"]


async def test_a_failing_commit_never_answers_2xx_and_writes_nothing(
    client: httpx.AsyncClient, fastapi_app: FastAPI, sync_engine: Engine
) -> None:
    engine = fastapi_app.state.database.engine.sync_engine

    def refuse(_connection: Any) -> None:
        raise RuntimeError("the database refused the commit")

    await client.post("/api/auth/login", json=ALICE)
    event.listen(engine, "commit", refuse)
    try:
        order = await client.post("/api/orders", json={"items": [{"product_id": 1, "quantity": 2}]})
    finally:
        event.remove(engine, "commit", refuse)
    assert order.headers["x-bridge-side"] == "async"
    assert order.status_code == 500
    assert order.json() == {
        "error": {
            "code": 500,
            "name": "Internal Server Error",
            "message": "The server encountered an internal error and was unable to complete "
            "your request. Either the server is overloaded or there is an error in the "
            "application.",
        }
    }
    with sync_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM orders")) == 3
        assert connection.scalar(text("SELECT stock FROM products WHERE id = 1")) == 12


async def test_an_exhausted_pool_answers_503_with_retry_after_on_both_sides(
    database_settings: DatabaseSettings, reset_database: None
) -> None:
    tight = dataclasses.replace(database_settings, pool_size=1, max_overflow=0, pool_timeout=0.2)
    flask_app = legacy_flask_app.create_app(
        {**tight.flask_config(), "SECRET_KEY": SECRET_KEY, "SEED_DEMO_DATA": False}
    )
    port = async_app.create_app(tight, secret_key=SECRET_KEY)
    async with port.router.lifespan_context(port):
        hybrid = HybridApp(
            flask_app,
            port,
            Manifest(
                routes={
                    RouteKey("GET", "/api/products/<int:product_id>"): RouteState.ASYNC,
                }
            ),
        )
        transport = httpx.ASGITransport(app=hybrid)
        with flask_app.app_context():
            held_sync = db.engine.connect()
        held_async = await port.state.database.engine.connect()
        try:
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                ported = await client.get("/api/products/1")
                legacy = await client.get("/api/categories")
        finally:
            held_sync.close()
            await held_async.close()
            hybrid.legacy.shutdown()
            with flask_app.app_context():
                db.engine.dispose()
    for response, side in ((ported, "async"), (legacy, "legacy")):
        assert response.headers["x-bridge-side"] == side
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json() == {
            "error": {
                "code": 503,
                "name": "Service Unavailable",
                "message": "the database is busy; try again in a moment",
            }
        }
