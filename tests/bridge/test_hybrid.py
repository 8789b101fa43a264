from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, jsonify, request
from starlette.types import Message
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.hybrid import HybridApp
from bridge.manifest import parse_manifest
from tests.bridge.apps import SentMessages, http_scope

pytestmark = pytest.mark.anyio

PORTED = """
[bridge]
max_body_size = 64

[routes]
"GET /greeting" = "async"
"POST /upload" = "async"
"""


class Apps:
    """A Flask app and its FastAPI port, counting the legacy views that ran."""

    def __init__(self) -> None:
        self.views_run = 0
        self.flask = self._flask()
        self.fastapi = self._fastapi()

    def _flask(self) -> Flask:
        app = Flask(__name__)

        @app.before_request
        def count() -> None:
            self.views_run += 1

        @app.get("/greeting")
        def greeting() -> dict[str, Any]:
            return {"side": "legacy"}

        @app.post("/upload")
        def upload() -> dict[str, Any]:
            return {"side": "legacy", "size": len(request.get_data())}

        @app.post("/legacy-upload")
        def legacy_upload() -> dict[str, Any]:
            body = request.get_data()
            return {"side": "legacy", "size": len(body), "tail": body[-5:].decode()}

        @app.get("/headers")
        def headers() -> dict[str, Any]:
            return {"side": "legacy", "user": request.headers.get("X-Auth-User")}

        @app.errorhandler(RequestEntityTooLarge)
        def too_large(error: RequestEntityTooLarge) -> Any:
            return jsonify(error="too large", description=error.description), 413

        return app

    def _fastapi(self) -> FastAPI:
        app = FastAPI()

        @app.get("/greeting")
        def greeting() -> dict[str, Any]:
            return {"side": "async"}

        @app.post("/upload")
        async def upload(request: Request) -> dict[str, Any]:
            body = await request.body()
            return {"side": "async", "size": len(body), "tail": body[-5:].decode()}

        @app.get("/async-headers")
        def headers(request: Request) -> dict[str, Any]:
            return {"side": "async", "user": request.headers.get("x-auth-user")}

        return app


def client(hybrid: HybridApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hybrid), base_url="http://testserver"
    )


def hybrid_app(apps: Apps, manifest: str = PORTED) -> HybridApp:
    return HybridApp(apps.flask, apps.fastapi, parse_manifest(manifest))


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_each_request_goes_to_the_side_the_manifest_names() -> None:
    apps = Apps()
    async with client(hybrid_app(apps)) as http:
        ported = await http.get("/greeting")
        legacy = await http.post("/legacy-upload", content=b"x")

    assert ported.json() == {"side": "async"}
    assert ported.headers["x-bridge-side"] == "async"
    assert legacy.json()["side"] == "legacy"
    assert legacy.headers["x-bridge-side"] == "legacy"


async def test_changing_the_manifest_flips_the_answering_side() -> None:
    apps = Apps()
    rolled_back = '[routes]\n"GET /greeting" = "legacy"\n'

    async with client(hybrid_app(apps)) as http:
        before = await http.get("/greeting")
    async with client(hybrid_app(apps, rolled_back)) as http:
        after = await http.get("/greeting")

    assert before.json() == {"side": "async"}
    assert after.json() == {"side": "legacy"}
    assert after.headers["x-bridge-side"] == "legacy"


async def test_unknown_urls_get_the_legacy_404() -> None:
    async with client(hybrid_app(Apps())) as http:
        response = await http.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["x-bridge-side"] == "legacy"
    assert response.headers["content-type"].startswith("text/html")  # Flask's, not FastAPI's


async def test_side_header_can_be_turned_off() -> None:
    manifest = '[bridge]\nside_header = false\n[routes]\n"GET /greeting" = "async"\n'
    async with client(hybrid_app(Apps(), manifest)) as http:
        ported = await http.get("/greeting")
        legacy = await http.get("/headers")

    assert ported.json() == {"side": "async"}
    assert "x-bridge-side" not in ported.headers
    assert "x-bridge-side" not in legacy.headers


@pytest.mark.parametrize(("path", "side"), [("/headers", "legacy"), ("/async-headers", "async")])
async def test_underscore_headers_are_dropped_and_dashed_ones_pass(path: str, side: str) -> None:
    async with client(hybrid_app(Apps())) as http:
        spoofed = await http.get(path, headers={"X-Auth_User": "mallory"})
        both = await http.get(path, headers=[("X-Auth_User", "mallory"), ("X-Auth-User", "alice")])
        dashed = await http.get(path, headers={"X-Auth-User": "alice"})

    assert spoofed.json() == {"side": side, "user": None}
    assert both.json() == {"side": side, "user": "alice"}
    assert dashed.json() == {"side": side, "user": "alice"}


async def test_chunked_body_reaches_flask_intact() -> None:
    parts = (b"a" * 20, b"b" * 20, b"tail!")
    async with client(hybrid_app(Apps())) as http:
        response = await http.post("/legacy-upload", content=chunks(*parts))

    assert response.json() == {"side": "legacy", "size": 45, "tail": "tail!"}


async def test_chunked_body_reaches_fastapi_intact() -> None:
    parts = (b"a" * 20, b"b" * 20, b"tail!")
    async with client(hybrid_app(Apps())) as http:
        response = await http.post("/upload", content=chunks(*parts))

    assert response.json() == {"side": "async", "size": 45, "tail": "tail!"}


async def test_body_of_exactly_the_limit_is_accepted() -> None:
    async with client(hybrid_app(Apps())) as http:
        declared = await http.post("/legacy-upload", content=b"x" * 64)
        chunked = await http.post("/legacy-upload", content=chunks(b"x" * 32, b"x" * 32))

    assert declared.json()["size"] == chunked.json()["size"] == 64


@pytest.mark.parametrize("path", ["/legacy-upload", "/upload"])
@pytest.mark.parametrize("how", ["content-length", "chunked"])
async def test_body_over_the_limit_is_413_from_the_flask_error_handler(path: str, how: str) -> None:
    apps = Apps()
    body = b"x" * 65
    content: Any = body if how == "content-length" else chunks(body[:40], body[40:])
    async with client(hybrid_app(apps)) as http:
        response = await http.post(path, content=content)

    assert response.status_code == 413
    assert response.json() == {
        "error": "too large",
        "description": "The request body is larger than the limit of 64 bytes.",
    }
    assert response.headers["x-bridge-side"] == "legacy"
    assert response.headers["connection"] == "close"
    assert int(response.headers["content-length"]) == len(response.content)
    assert apps.views_run == 0


async def test_declared_length_over_the_limit_is_refused_before_reading_the_body() -> None:
    apps = Apps()
    hybrid = hybrid_app(apps)
    scope = http_scope("POST", "/legacy-upload", headers=[(b"content-length", b"1000000")])
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    sent = SentMessages()
    with anyio.fail_after(5):
        await hybrid(scope, receive, sent)

    assert sent.status == 413
    assert reads == 0
    assert apps.views_run == 0


async def test_client_gone_mid_body_never_reaches_the_view() -> None:
    apps = Apps()
    hybrid = hybrid_app(apps)
    scope = http_scope("POST", "/legacy-upload", headers=[(b"transfer-encoding", b"chunked")])
    messages: list[Message] = [
        {"type": "http.request", "body": b"half of an ord", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    with anyio.fail_after(5):
        await hybrid(scope, receive, SentMessages())

    assert apps.views_run == 0, "the view ran on a truncated body"


async def test_lifespan_is_forwarded_to_the_fastapi_app() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    apps = Apps()
    apps.fastapi.router.lifespan_context = lifespan
    hybrid = hybrid_app(apps)
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = SentMessages()

    async def receive() -> Message:
        return incoming.pop(0)

    with anyio.fail_after(5):
        await hybrid({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, sent)

    assert events == ["startup", "shutdown"]
    assert [m["type"] for m in sent.messages] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    with pytest.raises(RuntimeError):  # the legacy thread pool is shut down with the app
        hybrid.legacy.executor.submit(int)


async def test_wsgi_threads_option_sizes_the_legacy_pool() -> None:
    hybrid = hybrid_app(Apps(), "[bridge]\nwsgi_threads = 3\n")

    assert hybrid.legacy.executor._max_workers == 3
    hybrid.legacy.shutdown()
