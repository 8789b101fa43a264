"""What the hybrid server tells its metrics about each request and each shadow.

The server calls a :class:`Metrics` for every request it serves and every
shadow it runs or skips, and :meth:`Metrics.tick` once per poll interval. With
``[rollout] metrics_path`` unset it calls :data:`NULL_METRICS`, which keeps
nothing; :class:`PrometheusMetrics` keeps Prometheus metrics that
:func:`metrics_app` serves at ``[rollout] metrics_path``.
"""

from __future__ import annotations

import atexit
import hmac
import os
from typing import TYPE_CHECKING, Protocol

import anyio.to_thread

if TYPE_CHECKING:
    from fastapi import FastAPI
    from flask import Flask
    from sqlalchemy.pool import Pool
    from starlette.types import ASGIApp, Receive, Scope, Send

#: Outcomes of a shadow: what :meth:`Metrics.shadow` is told.
SHADOW_OUTCOMES = ("same", "different", "skipped", "timed_out", "error")


class Metrics(Protocol):
    def request(self, route: str, side: str, status: int, seconds: float) -> None:
        """A request answered: its route (``"GET /rule"``, or ``"(unmatched)"``), the side
        that answered, the status and the time to the end of the response."""

    def shadow(self, route: str, outcome: str) -> None:
        """A shadow's outcome, one of :data:`SHADOW_OUTCOMES`."""

    def tick(self) -> None:
        """Called every poll interval: sample what is read rather than counted (pools)."""


class _NullMetrics:
    def request(self, route: str, side: str, status: int, seconds: float) -> None:
        pass

    def shadow(self, route: str, outcome: str) -> None:
        pass

    def tick(self) -> None:
        pass


NULL_METRICS: Metrics = _NullMetrics()


# Prometheus metrics: PrometheusMetrics and metrics_app.

METRICS_PREFIX = "flask2fastapi"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# From 0.5 ms, the cost of a small legacy route behind the hybrid, to 30 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class PrometheusMetrics:
    """Prometheus metrics of the hybrid server, in one process or over several workers.

    Requests by route, side and status; latency histograms by route and side;
    shadow outcomes by route; and, sampled at each :meth:`tick`, the size,
    checked-out connections and overflow of every pool of *flask_app*'s
    Flask-SQLAlchemy engines (``legacy``, ``legacy:BIND``) and of *fastapi_app*'s
    async engine (``async``).

    With several worker processes, prometheus-client's multiprocess mode adds
    them up: ``PROMETHEUS_MULTIPROC_DIR`` must name an empty folder before any
    worker starts (``flask2fastapi serve --workers N`` makes one), and every
    scrape reads the files all workers write there. Pool gauges count live
    workers only: a worker that exits drops its own (see the guide for
    gunicorn's ``child_exit`` hook, which covers a worker that is killed).
    """

    def __init__(self, flask_app: Flask | None = None, fastapi_app: FastAPI | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.flask_app = flask_app
        self.fastapi_app = fastapi_app
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # A registry of its own: two servers in one process (tests) keep apart.
        self.registry = CollectorRegistry()
        name = METRICS_PREFIX
        self.requests = Counter(
            f"{name}_requests",
            "Requests answered, by route, side and status.",
            ["route", "side", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{name}_request_duration_seconds",
            "Seconds from the request to the end of the answer, by route and side.",
            ["route", "side"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shadows = Counter(
            f"{name}_shadow",
            "Shadow runs of the port beside legacy, by route and outcome "
            "(same, different, skipped, timed_out, error).",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.pool = {
            field: Gauge(
                f"{name}_pool_{field}",
                help_text,
                ["engine"],
                multiprocess_mode="livesum",
                registry=self.registry,
            )
            for field, help_text in _POOL_GAUGES.items()
        }
        if self.multiprocess:
            atexit.register(_mark_dead, os.getpid())

    def request(self, route: str, side: str, status: int, seconds: float) -> None:
        self.requests.labels(route, side, str(status)).inc()
        self.latency.labels(route, side).observe(seconds)

    def shadow(self, route: str, outcome: str) -> None:
        self.shadows.labels(route, outcome).inc()

    def tick(self) -> None:
        """Sample the pools of both sides' engines (no I/O: the pools count in memory)."""
        for engine, pool in self.pools():
            gauges = _pool_sample(pool)
            for field, value in gauges.items():
                self.pool[field].labels(engine).set(value)

    def pools(self) -> list[tuple[str, Pool]]:
        """The label and pool of every engine of both apps that is open now."""
        found: list[tuple[str, Pool]] = []
        if self.flask_app is not None:
            found += _flask_pools(self.flask_app)
        if self.fastapi_app is not None:
            database = getattr(self.fastapi_app.state, "database", None)
            engine = getattr(database, "_engine", None)  # None until the app starts
            if engine is not None:
                found.append(("async", engine.pool))
        return found

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets and its content type: every worker's in multiprocess mode."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


_POOL_GAUGES = {
    "size": "Connections the engine's pool keeps open, by engine.",
    "checked_out": "Connections in use by a request, by engine.",
    "overflow": "Connections open beyond the pool's size, by engine.",
}


def _pool_sample(pool: Pool) -> dict[str, int]:
    """What a pool holds; pools other than queue pools (SQLite's) report what they can."""
    from sqlalchemy.pool import QueuePool

    if isinstance(pool, QueuePool):
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            # Negative while fewer than `size` connections have been opened.
            "overflow": max(pool.overflow(), 0),
        }
    checked_out = getattr(pool, "checkedout", None)
    return {"checked_out": checked_out()} if callable(checked_out) else {}


def _flask_pools(flask_app: Flask) -> list[tuple[str, Pool]]:
    extension = flask_app.extensions.get("sqlalchemy")
    if extension is None:
        return []
    with flask_app.app_context():
        engines = dict(extension.engines)
    return [
        ("legacy" if key is None else f"legacy:{key}", engine.pool)
        for key, engine in engines.items()
    ]


def _mark_dead(pid: int) -> None:
    """Drop this worker's pool gauges from the multiprocess folder as it exits."""
    from prometheus_client import multiprocess

    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def metrics_app(metrics: PrometheusMetrics, token: str) -> ASGIApp:
    """An ASGI app answering every request with the exposition of *metrics*, to a
    client that sends ``Authorization: Bearer TOKEN``; 401 to any other.

    The token is compared in constant time. A scrape reads files in
    multiprocess mode, so it runs off the event loop.
    """
    expected = f"Bearer {token}".encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        if not hmac.compare_digest(given, expected):
            await _answer(
                send,
                401,
                b"a bearer token is required\n",
                b"text/plain; charset=utf-8",
                [(b"www-authenticate", b'Bearer realm="metrics"')],
            )
            return
        body, content_type = await anyio.to_thread.run_sync(metrics.exposition)
        await _answer(send, 200, body, content_type.encode())

    return app


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
