"""Every route answers the same through Flask and through the hybrid server, and
every request the hybrid sends to a port gets the same answer from the FastAPI
app alone: status, headers, body bytes and the rows left in the database."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from sqlalchemy import Engine

from bridge._porting.sessions import FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import RouteState

from .cases import CASES, Case
from .conftest import BASE_URL, Answer, answer, request_options

pytestmark = pytest.mark.anyio


def legacy_answer(app: Flask, case: Case, cookie: FlaskSessionCookie, engine: Engine) -> Answer:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL) as client:
        response = client.request(case.method, case.path, **request_options(case, cookie))
    return answer(response, engine)


async def asgi_answer(
    app: object, case: Case, cookie: FlaskSessionCookie, engine: Engine
) -> Answer:
    # A 500 is an answer to compare, not an error of the test.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        response = await client.request(case.method, case.path, **request_options(case, cookie))
    return answer(response, engine)


def reaches_async_side(hybrid: HybridApp, case: Case) -> bool:
    """Whether the hybrid sends this request to the FastAPI app."""
    path, _, query = case.path.partition("?")
    scope = {
        "type": "http",
        "method": case.method,
        "path": unquote(path),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")],
    }
    return hybrid.routes.side_for(scope) is RouteState.ASYNC


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_same_answer_on_every_side(
    case: Case,
    legacy_app: Flask,
    fastapi_app: FastAPI,
    hybrid: HybridApp,
    session_cookie: FlaskSessionCookie,
    sync_engine: Engine,
    reset_database: Callable[[], None],
) -> None:
    legacy = legacy_answer(legacy_app, case, session_cookie, sync_engine)
    reset_database()
    through_hybrid = await asgi_answer(hybrid, case, session_cookie, sync_engine)
    assert through_hybrid == legacy
    if reaches_async_side(hybrid, case):
        reset_database()
        ported = await asgi_answer(fastapi_app, case, session_cookie, sync_engine)
        assert ported == legacy
