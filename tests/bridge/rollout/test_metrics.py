from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import AsyncDatabase, DatabaseSettings
from bridge._rollout.metrics import MULTIPROC_ENV, PrometheusMetrics, metrics_app

TOKEN = "s3cret-scrape-token"
ROOT = Path(__file__).resolve().parents[3]


def samples(text_: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text_)
        for sample in family.samples
    }


def value(text_: str, name: str, **labels: str) -> float | None:
    return samples(text_).get((name, frozenset(labels.items())))


async def scrape(app: ASGIApp, token: str | None = TOKEN) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/metrics", headers=headers)


@pytest.mark.anyio
async def test_requests_latency_and_shadows_are_counted_by_route_side_and_status() -> None:
    metrics = PrometheusMetrics()
    route = "GET /api/items/<int:item_id>"
    metrics.request(route, "legacy", 200, 0.002)
    metrics.request(route, "legacy", 200, 0.004)
    metrics.request(route, "async", 503, 0.3)
    metrics.shadow(route, "same")
    metrics.shadow(route, "different")
    metrics.shadow(route, "timed_out")
    metrics.shadow(route, "timed_out")

    response = await scrape(metrics_app(metrics, TOKEN))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    requests = "flask2fastapi_requests_total"
    assert value(body, requests, route=route, side="legacy", status="200") == 2
    assert value(body, requests, route=route, side="async", status="503") == 1
    assert value(body, requests, route=route, side="async", status="200") is None
    latency = "flask2fastapi_request_duration_seconds"
    assert value(body, f"{latency}_count", route=route, side="legacy") == 2
    assert value(body, f"{latency}_sum", route=route, side="legacy") == pytest.approx(0.006)
    assert value(body, f"{latency}_bucket", route=route, side="legacy", le="0.0025") == 1
    assert value(body, f"{latency}_bucket", route=route, side="async", le="0.25") == 0
    assert value(body, f"{latency}_bucket", route=route, side="async", le="0.5") == 1
    shadow = "flask2fastapi_shadow_total"
    assert value(body, shadow, route=route, outcome="same") == 1
    assert value(body, shadow, route=route, outcome="different") == 1
    assert value(body, shadow, route=route, outcome="timed_out") == 2


@pytest.mark.anyio
async def test_two_instances_in_one_process_keep_their_counts_apart() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.request("GET /a", "legacy", 200, 0.001)

    body = (await scrape(metrics_app(second, TOKEN))).text

    assert (
        value(body, "flask2fastapi_requests_total", route="GET /a", side="legacy", status="200")
        is None
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"bearer {TOKEN}", TOKEN, f"Bearer {TOKEN}x", f"Basic {TOKEN}"],
)
async def test_a_scrape_without_the_bearer_token_is_refused(authorization: str | None) -> None:
    metrics = PrometheusMetrics()
    metrics.request("GET /a", "legacy", 200, 0.001)
    app = metrics_app(metrics, TOKEN)
    headers = {} if authorization is None else {"authorization": authorization}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "flask2fastapi" not in response.text


def flask_with_database(url: str) -> tuple[Flask, SQLAlchemy]:
    app = Flask(__name__)
    settings = DatabaseSettings(url=url)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.sync_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 3, "max_overflow": 2}
    db = SQLAlchemy(app)
    return app, db


def pool_values(metrics: PrometheusMetrics, engine: str) -> dict[str, float | None]:
    body = metrics.exposition()[0].decode()
    return {
        field: value(body, f"flask2fastapi_pool_{field}", engine=engine)
        for field in ("size", "checked_out", "overflow")
    }


def test_tick_samples_the_flask_apps_pool(database_url: str) -> None:
    app, db = flask_with_database(database_url)
    metrics = PrometheusMetrics(flask_app=app)
    with app.app_context():
        engine = db.engine
        held = [engine.connect() for _ in range(4)]  # one beyond pool_size
        for connection in held:
            connection.execute(text("SELECT 1"))
        try:
            metrics.tick()
            assert pool_values(metrics, "legacy") == {"size": 3, "checked_out": 4, "overflow": 1}
        finally:
            for connection in held:
                connection.close()
        metrics.tick()  # the connection beyond the pool's size is closed when returned
        assert pool_values(metrics, "legacy") == {"size": 3, "checked_out": 0, "overflow": 0}
        engine.dispose()


def test_an_app_without_flask_sqlalchemy_has_no_pool_gauges() -> None:
    metrics = PrometheusMetrics(flask_app=Flask(__name__))
    metrics.tick()
    assert pool_values(metrics, "legacy") == {"size": None, "checked_out": None, "overflow": None}


@pytest.mark.anyio
async def test_tick_samples_the_async_engines_pool(database_settings: DatabaseSettings) -> None:
    fastapi_app = FastAPI()
    database = AsyncDatabase(database_settings, pool_size=2, max_overflow=1)
    database.install(fastapi_app)
    metrics = PrometheusMetrics(fastapi_app=fastapi_app)
    metrics.tick()  # not started: nothing to sample, and no error
    assert pool_values(metrics, "async")["checked_out"] is None
    await database.start()
    try:
        async with database.connection() as connection:
            await connection.execute(text("SELECT 1"))
            metrics.tick()
            assert pool_values(metrics, "async") == {"size": 2, "checked_out": 1, "overflow": 0}
        metrics.tick()
        assert pool_values(metrics, "async")["checked_out"] == 0
    finally:
        await database.stop()


# Several workers: a real uvicorn with two processes, each counting its own
# requests into the shared folder; every scrape must add up all of them.


def create_app() -> ASGIApp:
    """The app each worker serves: /hit counts a request, /metrics scrapes."""
    metrics = PrometheusMetrics()
    scrape_app = metrics_app(metrics, TOKEN)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics":
            await scrape_app(scope, receive, send)
            return
        metrics.request("GET /hit", "legacy", 200, 0.001)
        metrics.shadow("GET /hit", "same")
        metrics.pool["size"].labels("legacy").set(5)
        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "metrics"
    folder.mkdir()
    port = free_port()
    env = {**os.environ, MULTIPROC_ENV: str(folder), "PYTHONPATH": str(ROOT)}
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", f"{__name__}:create_app"),
        *("--port", str(port), "--workers", "2", "--log-level", "warning"),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/metrics", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_with_two_workers_every_scrape_adds_up_both(two_workers: str) -> None:
    pids: set[str] = set()
    hits = 0
    auth = {"authorization": f"Bearer {TOKEN}"}
    totals = []
    while len(pids) < 2 or hits < 20:
        assert hits < 2000, "one worker answered every request"
        # A new connection each time, so that both workers accept some.
        pids.add(httpx.get(two_workers + "/hit", headers={"connection": "close"}).text)
        hits += 1
        if hits % 10 == 0:
            scraped = httpx.get(two_workers + "/metrics", headers=auth).text
            totals.append(
                value(
                    scraped,
                    "flask2fastapi_requests_total",
                    route="GET /hit",
                    side="legacy",
                    status="200",
                )
            )
            assert totals[-1] == hits
    body = httpx.get(two_workers + "/metrics", headers=auth).text
    assert value(body, "flask2fastapi_shadow_total", route="GET /hit", outcome="same") == hits
    assert (
        value(body, "flask2fastapi_request_duration_seconds_count", route="GET /hit", side="legacy")
        == hits
    )
    # A gauge each worker sets to 5 is summed over the live workers.
    assert value(body, "flask2fastapi_pool_size", engine="legacy") == 10
    assert httpx.get(two_workers + "/metrics").status_code == 401
