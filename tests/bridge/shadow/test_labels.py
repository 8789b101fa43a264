"""Cases are filed under the route that answers them, on either side."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from flask import Flask

from bridge._serving.manifest import Manifest
from bridge._shadow.cases import Case
from bridge._shadow.runner import UNMATCHED, route_of, url_sender
from bridge._shadow.session import shadow_session

pytestmark = pytest.mark.anyio


def apps() -> tuple[Flask, FastAPI]:
    flask_app = Flask(__name__)
    flask_app.config["SECRET_KEY"] = "labels"
    flask_app.add_url_rule("/items/", "items", lambda: "items")
    fastapi_app = FastAPI()
    fastapi_app.add_api_route("/items/", lambda: PlainTextResponse("items"))
    fastapi_app.add_api_route("/health/{part}", lambda part: PlainTextResponse("ok"))
    return flask_app, fastapi_app


def test_a_slash_redirect_is_filed_under_the_rule_it_redirects_to() -> None:
    flask_app, _ = apps()
    assert route_of(flask_app.url_map, Case(method="GET", path="/items")) == "GET /items/"
    assert route_of(flask_app.url_map, Case(method="GET", path="/nowhere")) == UNMATCHED


async def test_a_case_only_a_port_route_takes_names_that_route() -> None:
    flask_app, fastapi_app = apps()
    async with shadow_session(flask_app, fastapi_app, Manifest()) as runner:
        assert (
            runner.route_of(Case(method="GET", path="/health/db"))
            == "(no Flask rule matches; port route GET /health/{part})"
        )
        assert runner.route_of(Case(method="GET", path="/nowhere")) == UNMATCHED


async def test_a_remote_run_keeps_the_case_host() -> None:
    hosts: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        hosts.append(request.headers["host"])
        return httpx.Response(200, text=str(request.url))

    sender = url_sender("http://127.0.0.1:8071")
    await sender.client.aclose()
    sender.client = httpx.AsyncClient(
        base_url="http://127.0.0.1:8071", transport=httpx.MockTransport(answer)
    )
    request = httpx.Request("GET", "http://localhost/items", headers={"Host": "shop.example"})
    snapshot = await sender(request)
    await sender.aclose()
    assert hosts == ["shop.example"]
    assert snapshot.body == b"http://127.0.0.1:8071/items"


async def test_a_legacy_exception_is_shown_with_its_case() -> None:
    flask_app, fastapi_app = apps()

    def broken() -> str:
        raise ZeroDivisionError("legacy divided by zero")

    flask_app.add_url_rule("/broken", "broken", broken)
    flask_app.logger.disabled = True  # the run shows it; pytest need not print it too
    async with shadow_session(flask_app, fastapi_app, Manifest()) as runner:
        result = await runner.run(Case(method="GET", path="/broken"))
    assert result.route == "GET /broken"
    assert [side for side, _ in result.errors] == ["legacy", "async"]  # unported: Flask on both
    assert all("ZeroDivisionError: legacy divided by zero" in trace for _, trace in result.errors)
