"""A shadow session sets up what a runner needs and tears it all down, even on error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from flask import Flask, Response

from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest
from bridge._shadow import session as session_module
from bridge._shadow.cases import Case
from bridge._shadow.runner import Outcome, ported_side
from bridge._shadow.session import shadow_session

pytestmark = pytest.mark.anyio


def hello_apps(events: list[str]) -> tuple[Flask, FastAPI]:
    flask_app = Flask(__name__)
    flask_app.config["SECRET_KEY"] = "session-test"
    flask_app.add_url_rule("/hello", "hello", lambda: Response("hello", mimetype="text/plain"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        try:
            yield
        finally:
            events.append("shutdown")

    fastapi_app = FastAPI(lifespan=lifespan)
    fastapi_app.add_api_route("/hello", lambda: PlainTextResponse("hello"))
    return flask_app, fastapi_app


@pytest.fixture
def port_pools(monkeypatch: pytest.MonkeyPatch) -> list[ThreadPoolExecutor]:
    """The worker pool of each port side the session builds, started at once."""
    pools: list[ThreadPoolExecutor] = []

    def recording(*args: Any) -> HybridApp:
        side = ported_side(*args)
        pools.append(side.legacy.executor)
        return side

    monkeypatch.setattr(session_module, "ported_side", recording)
    return pools


async def test_in_process_the_lifespan_spans_the_session(
    port_pools: list[ThreadPoolExecutor],
) -> None:
    events: list[str] = []
    flask_app, fastapi_app = hello_apps(events)

    async with shadow_session(flask_app, fastapi_app, Manifest()) as runner:
        assert events == ["startup"]
        result = await runner.run(Case(method="GET", path="/hello"))

    assert result.outcome is Outcome.SAME
    assert result.ported  # the port side sent it to FastAPI
    assert events == ["startup", "shutdown"]
    assert runner.port.client.is_closed
    [pool] = port_pools
    with pytest.raises(RuntimeError):
        pool.submit(int)  # the port side's threads are stopped


async def test_everything_is_torn_down_when_the_session_fails(
    port_pools: list[ThreadPoolExecutor],
) -> None:
    events: list[str] = []
    flask_app, fastapi_app = hello_apps(events)

    with pytest.raises(LookupError):
        async with shadow_session(flask_app, fastapi_app, Manifest()) as runner:
            raise LookupError

    assert events == ["startup", "shutdown"]
    assert runner.port.client.is_closed
    with pytest.raises(RuntimeError):
        port_pools[0].submit(int)


async def test_with_urls_requests_go_to_the_servers_and_no_lifespan_runs() -> None:
    events: list[str] = []
    flask_app, fastapi_app = hello_apps(events)
    urls = ("http://legacy.test:8001", "http://port.test:8002")

    async with shadow_session(flask_app, fastapi_app, Manifest(), urls=urls) as runner:
        assert str(runner.legacy.client.base_url) == "http://legacy.test:8001"
        assert str(runner.port.client.base_url) == "http://port.test:8002"
        assert runner.port_routes is not None  # still tells which cases reach the port

    assert events == []
    assert runner.legacy.client.is_closed
