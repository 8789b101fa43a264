"""The demo against what production sends: hostile clients and a failing database.

Every answer here is a 4xx or a 503 in the shop's envelope, never a 500, and
the legacy route and its port answer alike. Each request goes through the
hybrid twice where it matters: once with the route ported, once with it
legacy (the manifest flipped), as a rollout or a rollback would serve it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask

from bridge._porting.sessions import FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, RouteKey, RouteState
from shop.seed import DEMO_PASSWORD

from .conftest import BASE_URL

pytestmark = pytest.mark.anyio

ALICE = {"email": "alice@example.com", "password": DEMO_PASSWORD}
ALICE_ID = 2  # the seed's second user; the first is the admin


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
