from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, text
from starlette.types import Message, Receive, Scope, Send
from werkzeug.exceptions import RequestEntityTooLarge

from bridge._exceptions import ManifestError
from bridge._porting.database import DatabaseSettings
from bridge._serving.hybrid import METRICS_TOKEN_ENV, HybridApp, metrics_for
from bridge._serving.manifest import parse_manifest
from tests.bridge.apps import SentMessages, http_scope, stop

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

    sent = SentMessages()
    with anyio.fail_after(5):
        await hybrid(scope, receive, sent)

    assert apps.views_run == 0, "the view ran on a truncated body"
    assert sent.messages == []  # nobody is left to answer


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
    pool = hybrid.legacy.executor
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
    with pytest.raises(RuntimeError):  # the legacy threads are stopped with the app
        pool.submit(int)
    assert hybrid.legacy._executor is None  # and start again if the app starts again


async def run_lifespan(app: HybridApp) -> list[str]:
    """Start *app* and shut it down as a server does; the message types it sent."""
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = SentMessages()

    async def receive() -> Message:
        return incoming.pop(0)

    with anyio.fail_after(5):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, sent)
    return [m["type"] for m in sent.messages]


def pooled(engine: Engine) -> int:
    """Connections open and idle in *engine*'s pool."""
    return int(engine.pool.checkedin())  # type: ignore[attr-defined]


async def test_shutdown_closes_every_flask_sqlalchemy_engine(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    flask_app = Flask(__name__)
    flask_app.config.update(database_settings.flask_config())
    flask_app.config["SQLALCHEMY_BINDS"] = {"reports": flask_app.config["SQLALCHEMY_DATABASE_URI"]}
    db = SQLAlchemy(flask_app)
    with flask_app.app_context():
        engines = list(db.engines.values())
        for engine in engines:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
    assert [pooled(engine) for engine in engines] == [1, 1]
    hybrid = HybridApp(flask_app, FastAPI(), parse_manifest(""))

    sent = await run_lifespan(hybrid)

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [pooled(engine) for engine in engines] == [0, 0]


async def test_close_disposes_the_flask_engines_and_stops_the_legacy_threads(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    flask_app = Flask(__name__)
    flask_app.config.update(database_settings.flask_config())
    db = SQLAlchemy(flask_app)
    with flask_app.app_context():
        db.session.execute(text("SELECT 1"))
        db.session.remove()
        engine = db.engine
    hybrid = HybridApp(flask_app, FastAPI(), parse_manifest(""))
    threads = hybrid.legacy.executor

    hybrid.close()

    assert pooled(engine) == 0
    with pytest.raises(RuntimeError):
        threads.submit(int)


async def test_wsgi_threads_option_sizes_the_legacy_pool() -> None:
    hybrid = hybrid_app(Apps(), "[bridge]\nwsgi_threads = 3\n")

    assert hybrid.legacy.executor._max_workers == 3
    hybrid.legacy.shutdown()


# The route decision binds the URL map as the Flask app does: each case below
# is answered by Flask exactly when Flask alone finds the rule.

SUBDOMAIN_RULE = '[routes]\n"GET /y" = "legacy"\n'
HOST_RULE = '[routes]\n"GET /x" = "legacy"\n'


def fastapi_serving(*paths: str) -> FastAPI:
    app = FastAPI()
    for path in paths:
        app.add_api_route(path, lambda: {"side": "async"})
    return app


def subdomain_app(server_name: str | None) -> Flask:
    app = Flask(__name__, static_folder=None, subdomain_matching=True)
    app.config["SERVER_NAME"] = server_name
    app.add_url_rule("/y", "y", lambda: {"side": "legacy"}, subdomain="api")
    return app


def host_app() -> Flask:
    app = Flask(__name__, static_folder=None, host_matching=True)
    app.add_url_rule("/x", "x", lambda: {"side": "legacy"}, host="example.com")
    return app


def flask_alone_status(app: Flask, path: str, host: str) -> int:
    return app.test_client().get(path, headers={"Host": host}).status_code


async def get_with_host(hybrid: HybridApp, path: str, host: str) -> httpx.Response:
    async with client(hybrid) as http:
        return await http.get(path, headers={"Host": host})


@pytest.mark.parametrize("host", ["api.example.com", "api.example.com:80", "API.example.com"])
async def test_legacy_rule_on_a_subdomain_of_server_name_is_answered_by_flask(host: str) -> None:
    flask_app = subdomain_app("example.com")
    hybrid = HybridApp(flask_app, fastapi_serving("/y"), parse_manifest(SUBDOMAIN_RULE))

    response = await get_with_host(hybrid, "/y", host)

    assert flask_alone_status(flask_app, "/y", host) == 200
    assert response.json() == {"side": "legacy"}
    assert response.headers["x-bridge-side"] == "legacy"


async def test_path_of_a_subdomain_rule_on_another_subdomain_goes_to_fastapi() -> None:
    flask_app = subdomain_app("example.com")
    hybrid = HybridApp(flask_app, fastapi_serving("/y"), parse_manifest(SUBDOMAIN_RULE))

    response = await get_with_host(hybrid, "/y", "example.com")

    assert flask_alone_status(flask_app, "/y", "example.com") == 404  # no rule for it
    assert response.json() == {"side": "async"}


@pytest.mark.parametrize("fastapi_paths", [("/y",), ()])
async def test_subdomain_rule_without_server_name_is_routed_as_flask_routes_it(
    fastapi_paths: tuple[str, ...],
) -> None:
    # Without SERVER_NAME, Flask cannot tell a subdomain and never reaches the
    # rule: the request matches no Flask rule, so FastAPI answers it if it can,
    # and Flask's 404 stands otherwise.
    flask_app = subdomain_app(None)
    hybrid = HybridApp(flask_app, fastapi_serving(*fastapi_paths), parse_manifest(SUBDOMAIN_RULE))

    response = await get_with_host(hybrid, "/y", "api.example.com")

    assert flask_alone_status(flask_app, "/y", "api.example.com") == 404
    if fastapi_paths:
        assert response.json() == {"side": "async"}
    else:
        assert response.status_code == 404
        assert response.headers["x-bridge-side"] == "legacy"


@pytest.mark.parametrize(
    ("host", "side"),
    [
        ("example.com", "legacy"),
        ("example.com:80", "legacy"),  # Werkzeug drops the default port
        ("example.com:8080", "async"),  # no Flask rule for this host
        ("other.example", "async"),
    ],
)
async def test_host_matching_rule_is_matched_with_and_without_a_port(host: str, side: str) -> None:
    flask_app = host_app()
    hybrid = HybridApp(flask_app, fastapi_serving("/x"), parse_manifest(HOST_RULE))

    response = await get_with_host(hybrid, "/x", host)

    assert flask_alone_status(flask_app, "/x", host) == (200 if side == "legacy" else 404)
    assert response.json() == {"side": side}
    assert response.headers["x-bridge-side"] == side


@pytest.mark.parametrize("path", ["/greeting", "/async-headers"])
async def test_host_flask_does_not_trust_gets_the_legacy_400(path: str) -> None:
    apps = Apps()
    apps.flask.config["TRUSTED_HOSTS"] = ["example.com"]
    hybrid = hybrid_app(apps)

    refused = await get_with_host(hybrid, path, "evil.example.org")
    trusted = await get_with_host(hybrid, path, "example.com")

    assert refused.status_code == 400
    assert refused.headers["x-bridge-side"] == "legacy"
    assert trusted.headers["x-bridge-side"] == "async"


@pytest.mark.parametrize("base_url", ["http://testserver", "http://localhost:8000"])
async def test_ordinary_rules_route_the_same_on_any_host(base_url: str) -> None:
    transport = httpx.ASGITransport(app=hybrid_app(Apps()))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        ported = await http.get("/greeting")
        legacy = await http.get("/headers")
        new = await http.get("/async-headers")
        rolled_back = await http.post("/greeting")

    assert ported.headers["x-bridge-side"] == "async"
    assert legacy.headers["x-bridge-side"] == "legacy"
    assert new.headers["x-bridge-side"] == "async"
    assert rolled_back.status_code == 405
    assert rolled_back.headers["x-bridge-side"] == "legacy"


async def test_one_hybrid_decides_a_subdomain_rule_per_host_request_after_request() -> None:
    flask_app = subdomain_app("example.com")
    hybrid = HybridApp(flask_app, fastapi_serving("/y"), parse_manifest(SUBDOMAIN_RULE))

    sides = []
    async with client(hybrid) as http:
        for host in ["api.example.com", "example.com", "api.example.com", "example.com"]:
            response = await http.get("/y", headers={"Host": host})
            sides.append(response.headers["x-bridge-side"])

    assert sides == ["legacy", "async", "legacy", "async"]
    hybrid.legacy.shutdown()


# Several processes: `serve --workers N`, and gunicorn with uvicorn workers
# importing the public factory. Both serve the demo from its own manifest.

ROOT = Path(__file__).resolve().parents[3]
DEMO_MANIFEST = ROOT / "migration.toml"


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The demo on a SQLite file of its own, created and seeded once, as a deploy
    step would, so that no two workers seed it at once."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/demo.sqlite3",
        "FLASK2FASTAPI_MANIFEST": str(DEMO_MANIFEST),
    }
    env.pop("DATABASE_ASYNC_DRIVER", None)
    listed = subprocess.run(
        [sys.executable, "-m", "bridge", "routes", "--json", "--manifest", str(DEMO_MANIFEST)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sides_served(command: list[str], port: int, env: dict[str, str], cwd: Path) -> list[str]:
    """Start the server, wait for it, and the side of each of a few demo requests."""
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/api/health", process)
        sides = []
        with httpx.Client(base_url=base, timeout=30) as http:
            for path in ["/api/products", "/api/health", "/api/products/export.csv"]:
                response = http.get(path)
                assert response.status_code == 200, (path, response.text)
                sides.append(response.headers["x-bridge-side"])
        return sides
    finally:
        stderr = stop(process)
        assert "Traceback" not in stderr, stderr


def wait_for(url: str, process: subprocess.Popen[str]) -> None:
    for _ in range(600):  # bounded: 60 s at most
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer {url} in time")


def test_serve_with_two_workers_serves_both_sides(tmp_path: Path, demo_env: dict[str, str]) -> None:
    port = free_port()
    command = [
        *(sys.executable, "-m", "bridge", "serve", "--workers", "2"),
        *("--manifest", str(DEMO_MANIFEST), "--log-level", "warning", "--port", str(port)),
    ]

    sides = sides_served(command, port, demo_env, tmp_path)

    assert sides == ["async", "legacy", "legacy"]


@pytest.mark.skipif(
    importlib.util.find_spec("gunicorn") is None
    or importlib.util.find_spec("uvicorn_worker") is None,
    reason="needs gunicorn and uvicorn-worker: pip install -e '.[test]'",
)
def test_gunicorn_with_uvicorn_workers_serves_the_demo_through_the_public_factory(
    tmp_path: Path, demo_env: dict[str, str]
) -> None:
    port = free_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "2"),
        *("-b", f"127.0.0.1:{port}", "--log-level", "warning", "bridge:hybrid_from_env()"),
    ]

    sides = sides_served(command, port, demo_env, tmp_path)

    assert sides == ["async", "legacy", "legacy"]


METRICS = """
[rollout]
metrics_path = "/_bridge/metrics"
metrics_token = "t0ken"

[routes]
"GET /greeting" = "async"
"""


async def test_the_metrics_path_is_answered_before_either_app_sees_it() -> None:
    apps = Apps()
    apps.flask.add_url_rule("/<path:anything>", "catch_all", lambda anything: "legacy")
    scraped: list[str] = []

    async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
        scraped.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"metrics"})

    hybrid = HybridApp(apps.flask, apps.fastapi, parse_manifest(METRICS), metrics_app=metrics_app)
    async with client(hybrid) as http:
        scrape = await http.get("/_bridge/metrics")
        other = await http.get("/_bridge/metrics/more")

    assert scrape.text == "metrics"
    assert "x-bridge-side" not in scrape.headers
    assert scraped == ["/_bridge/metrics"]
    assert other.text == "legacy"
    assert apps.views_run == 1


async def test_every_answer_is_told_to_the_metrics() -> None:
    apps = Apps()
    told: list[tuple[str, str, int]] = []

    class Told:
        def request(self, route: str, side: str, status: int, seconds: float) -> None:
            told.append((route, side, status))

        def shadow(self, route: str, outcome: str) -> None:
            raise AssertionError("no route is in shadow")

        def tick(self) -> None:
            pass

    hybrid = HybridApp(apps.flask, apps.fastapi, parse_manifest(PORTED), metrics=Told())
    async with client(hybrid) as http:
        await http.get("/greeting")
        upload = await http.post("/upload", content=b"x" * 65)  # over max_body_size
        await http.get("/nowhere")

    assert upload.status_code == 413
    assert told == [
        ("GET /greeting", "async", 200),
        ("POST /upload", "legacy", 413),  # answered for the legacy side, in its shape
        ("(unmatched)", "legacy", 404),
    ]


def test_a_metrics_path_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_TOKEN_ENV, raising=False)
    manifest = parse_manifest(METRICS.replace('metrics_token = "t0ken"', ""), path="m.toml")
    apps = Apps()

    with pytest.raises(ManifestError) as caught:
        metrics_for(manifest, apps.flask, apps.fastapi)

    assert str(caught.value).startswith("m.toml: [rollout] metrics_path is set but no token")
    assert METRICS_TOKEN_ENV in str(caught.value)
