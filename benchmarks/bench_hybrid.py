"""In-process micro-benchmarks of the hybrid's own overhead, each a ratio to a
baseline measured in turn with it.

1. Legacy route: a trivial Flask route, one request at a time, through a2wsgi's
   ``WSGIMiddleware`` alone (the baseline) and through the hybrid (routing,
   header filtering, body buffering, the handoff from the worker thread, the
   side header).
2. Ported route: a trivial FastAPI route alone (the baseline) and through the
   hybrid.

Requests are sent in-process over ASGI, so the numbers are the bridge's, not a
network's or a server's; ``benchmarks/run.py`` measures real servers. CPU time
is printed beside wall time: on a shared machine it is the steadier of the two.
Run: python benchmarks/bench_hybrid.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from flask import Flask

from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import BridgeOptions, Manifest, RouteKey, RouteState

SEQUENTIAL = 2000
ROUNDS = 3


def make_apps() -> tuple[Flask, FastAPI]:
    flask_app = Flask(__name__)

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


Timing = tuple[float, float]  # wall and CPU seconds per request


async def sequential_pair(baseline: Any, bridge: Any, path: str) -> tuple[Timing, Timing]:
    """Per-request times of both, best of ROUNDS, measured in turn so drift hits both."""

    async def timed(app: Any) -> Timing:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(SEQUENTIAL):
            await call(app, path)
        return (time.perf_counter() - wall) / SEQUENTIAL, (time.process_time() - cpu) / SEQUENTIAL

    pairs = [(await timed(baseline), await timed(bridge)) for _ in range(ROUNDS)]
    return best([p[0] for p in pairs]), best([p[1] for p in pairs])


def best(timings: list[Timing]) -> Timing:
    return min(t[0] for t in timings), min(t[1] for t in timings)


def report(label: str, baseline: str, times: tuple[Timing, Timing]) -> None:
    (base_wall, base_cpu), (wall, cpu) = times
    print(
        f"  {label}: {baseline} {base_wall * 1e6:6.1f} us ({base_cpu * 1e6:5.1f} CPU), "
        f"through the hybrid {wall * 1e6:6.1f} us ({cpu * 1e6:5.1f} CPU): "
        f"{wall / base_wall:4.2f}x the time, {cpu / base_cpu:4.2f}x the CPU"
    )


def hybrid(flask_app: Flask, fastapi_app: FastAPI, threads: int) -> HybridApp:
    manifest = Manifest(
        routes={RouteKey("GET", "/port"): RouteState.ASYNC},
        options=BridgeOptions(wsgi_threads=threads),
    )
    return HybridApp(flask_app, fastapi_app, manifest)


async def main() -> None:
    flask_app, fastapi_app = make_apps()
    bridge = hybrid(flask_app, fastapi_app, BridgeOptions.wsgi_threads)
    a2wsgi_alone = WSGIMiddleware(flask_app)  # type: ignore[arg-type]

    print(f"One request at a time, per request (best of {ROUNDS} x {SEQUENTIAL}):")
    report("legacy route", "a2wsgi alone", await sequential_pair(a2wsgi_alone, bridge, "/ping"))
    report("ported route", "FastAPI alone", await sequential_pair(fastapi_app, bridge, "/port"))
    bridge.legacy.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
