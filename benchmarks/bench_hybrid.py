"""Benchmarks of the hybrid server, each printed as a ratio to a baseline run in the same go.

1. Legacy threads: an I/O-bound Flask route (50 ms of waiting) under 80
   concurrent requests, through a2wsgi with its default 10 threads (the
   baseline) and through the bridge with its default of 40.
2. Bridge overhead: a trivial Flask route, one request at a time, straight
   through a2wsgi (the baseline) and through the hybrid (route matching,
   header filtering, body buffering, the side header).
3. Port overhead: a trivial FastAPI route alone (the baseline) and through
   the hybrid.

Requests are sent in-process over ASGI, so the numbers are the bridge's, not
a network's. Run: python benchmarks/bench_hybrid.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from flask import Flask

from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import BridgeOptions, Manifest, RouteKey, RouteState

IO_WAIT = 0.05
CONCURRENT = 80
SEQUENTIAL = 2000
ROUNDS = 3


def make_apps() -> tuple[Flask, FastAPI]:
    flask_app = Flask(__name__)

    @flask_app.get("/io")
    def io() -> dict[str, bool]:
        time.sleep(IO_WAIT)  # a database or HTTP call, as far as threads are concerned
        return {"ok": True}

    @flask_app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    @flask_app.get("/port")
    def legacy_port() -> dict[str, bool]:
        return {"ok": True}

    fastapi_app = FastAPI()

    @fastapi_app.get("/port")
    async def port() -> dict[str, bool]:
        return {"ok": True}

    return flask_app, fastapi_app


async def call(app: Any, path: str) -> int:
    """One GET through an ASGI app; returns the status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 1),
        "server": ("localhost", 80),
    }
    await app(scope, receive, send)
    assert status == 200, status
    return status


async def best_of(rounds: int, run: Callable[[], Awaitable[None]]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await run()
        times.append(time.perf_counter() - start)
    return min(times)


async def concurrent(app: Any) -> float:
    return await best_of(ROUNDS, lambda: _gather(app))


async def _gather(app: Any) -> None:
    await asyncio.gather(*(call(app, "/io") for _ in range(CONCURRENT)))


async def sequential_pair(baseline: Any, bridge: Any, path: str) -> tuple[float, float]:
    """Per-request time of both, best of ROUNDS, the two measured in turn so drift hits both."""

    async def timed(app: Any) -> float:
        start = time.perf_counter()
        for _ in range(SEQUENTIAL):
            await call(app, path)
        return (time.perf_counter() - start) / SEQUENTIAL

    pairs = [(await timed(baseline), await timed(bridge)) for _ in range(ROUNDS)]
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def hybrid(flask_app: Flask, fastapi_app: FastAPI, threads: int) -> HybridApp:
    manifest = Manifest(
        routes={RouteKey("GET", "/port"): RouteState.ASYNC},
        options=BridgeOptions(wsgi_threads=threads),
    )
    return HybridApp(flask_app, fastapi_app, manifest)


async def main() -> None:
    flask_app, fastapi_app = make_apps()
    defaults = hybrid(flask_app, fastapi_app, BridgeOptions.wsgi_threads)
    a2wsgi_default = WSGIMiddleware(flask_app)  # type: ignore[arg-type]

    wait_ms = IO_WAIT * 1e3
    print(f"{CONCURRENT} concurrent requests to a route that waits {wait_ms:.0f} ms (wall time):")
    base = await concurrent(a2wsgi_default)
    ours = await concurrent(defaults)
    print(f"  a2wsgi, 10 threads (baseline) {base * 1e3:8.1f} ms")
    print(
        f"  bridge, {BridgeOptions.wsgi_threads} threads          {ours * 1e3:8.1f} ms"
        f"   {base / ours:4.2f}x the baseline's throughput"
    )

    print(f"\nOne request at a time, per request (best of {ROUNDS} x {SEQUENTIAL}):")
    base, ours = await sequential_pair(a2wsgi_default, defaults, "/ping")
    print(
        f"  legacy route: a2wsgi alone (baseline) {base * 1e6:7.1f} us"
        f"   through the hybrid {ours * 1e6:7.1f} us   {ours / base:4.2f}x the baseline's time"
    )
    base, ours = await sequential_pair(fastapi_app, defaults, "/port")
    print(
        f"  ported route: FastAPI alone (baseline) {base * 1e6:6.1f} us"
        f"   through the hybrid {ours * 1e6:7.1f} us   {ours / base:4.2f}x the baseline's time"
    )
    defaults.legacy.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
