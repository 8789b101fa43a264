"""The demo apps with a few routes that only the reliability suite calls.

The suite's server imports these (its manifest names them), so they see what
a client cannot: they hold the pool's connections until told to let go, meet
at a barrier that needs every legacy thread, raise on purpose, and serve the
demo's own views at paths of the other side. Nothing else is changed: every
demo route answers as in production.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn

import anyio
from fastapi import APIRouter, FastAPI, Request
from flask import Blueprint, Flask, Response, request
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse

import async_app
import async_app.catalog
import legacy_flask_app
from legacy_flask_app.extensions import db

HOLD_SECONDS = 30  # a hold nobody releases ends by itself
BARRIER_SECONDS = 10

_legacy_release = threading.Event()
_barriers: dict[int, threading.Barrier] = {}
_barriers_lock = threading.Lock()


def create_legacy_app() -> Flask:
    """The demo's Flask app, plus ``/test/legacy/...``."""
    app = legacy_flask_app.create_app()
    bp = Blueprint("reliability", __name__, url_prefix="/test/legacy")
    bp.add_url_rule("/hold", view_func=legacy_hold)
    bp.add_url_rule("/release", view_func=legacy_release, methods=["POST"])
    bp.add_url_rule("/barrier", view_func=legacy_barrier)
    bp.add_url_rule("/raise", view_func=legacy_raise)
    # The demo's order view, which the manifest sends to the port at /api/orders.
    bp.add_url_rule("/orders", view_func=app.view_functions["orders.place_order"], methods=["POST"])
    app.register_blueprint(bp)
    return app


def legacy_hold() -> Response:
    """Take ``connections`` connections of the legacy pool and keep them until released.

    The first line of the body says they are held; a busy pool is the app's 503.
    """
    count = request.args.get("connections", 1, type=int)
    _legacy_release.clear()
    held = []
    try:
        for _ in range(count):
            held.append(db.engine.connect())
    except BaseException:
        for connection in held:
            connection.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            yield b"held\n"
            _legacy_release.wait(HOLD_SECONDS)
            yield b"released\n"
        finally:
            for connection in held:
                connection.close()

    return Response(body(), mimetype="text/plain")


def legacy_release() -> tuple[str, int]:
    _legacy_release.set()
    return "", 204


def legacy_barrier() -> dict[str, int]:
    """Wait until ``parties`` requests are here at once: each holds a legacy thread."""
    parties = request.args.get("parties", 2, type=int)
    with _barriers_lock:
        barrier = _barriers.setdefault(parties, threading.Barrier(parties))
        if barrier.broken:  # by an earlier wait that timed out
            barrier.reset()
    barrier.wait(BARRIER_SECONDS)  # BrokenBarrierError: a 500, some thread never came
    return {"parties": parties}


def legacy_raise() -> NoReturn:
    raise RuntimeError("raised on purpose by the reliability suite")


_async_release: asyncio.Event | None = None


def create_async_app() -> FastAPI:
    """The demo's FastAPI app, plus ``/test/async/...``."""
    app = async_app.create_app()
    router = APIRouter(prefix="/test/async")
    router.add_api_route("/hold", async_hold, methods=["GET"])
    router.add_api_route("/release", async_release, methods=["POST"], status_code=204)
    router.add_api_route("/raise", async_raise, methods=["GET"])
    # The export's port, which the manifest leaves legacy at /api/products/export.csv.
    router.add_api_route("/products/export.csv", async_app.catalog.export_products, methods=["GET"])
    app.include_router(router)
    return app


def _release_event() -> asyncio.Event:
    global _async_release
    if _async_release is None:
        _async_release = asyncio.Event()
    return _async_release


async def async_hold(request: Request, connections: int = 1) -> StarletteResponse:
    """The async side's :func:`legacy_hold`."""
    engine = request.app.state.database.engine
    release = _release_event()
    release.clear()
    held = []
    try:
        for _ in range(connections):
            held.append(await engine.connect())
    except BaseException:
        with anyio.CancelScope(shield=True):
            for connection in held:
                await connection.close()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"held\n"
            with anyio.move_on_after(HOLD_SECONDS):
                await release.wait()
            yield b"released\n"
        finally:
            with anyio.CancelScope(shield=True):
                for connection in held:
                    await connection.close()

    return StreamingResponse(body(), media_type="text/plain")


async def async_release() -> None:
    _release_event().set()


async def async_raise() -> None:
    raise RuntimeError("raised on purpose by the reliability suite")
