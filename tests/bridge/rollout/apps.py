"""A Flask app and a port whose behaviour a test sets, run behind the hybrid with its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from flask import Flask, jsonify, session
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text
from starlette.types import Message

from bridge._porting.asyncdb import AsyncDatabase, DbConnection, DbSession
from bridge._porting.database import DatabaseSettings
from bridge._serving.hybrid import HybridApp
from tests.bridge.apps import TABLE_SUFFIX

NOTES = f"rollout_notes_{TABLE_SUFFIX}"
ITEMS = {"items": ["a", "b"]}


class Apps:
    """The legacy app and its port. ``mode`` sets what the port's ``GET /items`` does:
    ``same``, ``different``, ``raise``, ``hang``, ``garbage``, ``error`` (a 500) or
    ``block`` (wait for :attr:`release`, counting how many wait at once)."""

    def __init__(self, settings: DatabaseSettings | None = None) -> None:
        self.mode = "same"
        self.port_calls = 0
        self.waiting = 0
        self.most_waiting = 0
        self.release: anyio.Event | None = None
        self.settings = settings
        self.flask = self._flask()
        self.fastapi = self._fastapi()

    def _flask(self) -> Flask:
        app = Flask(__name__)
        app.secret_key = "a secret for the tests only, long enough"

        @app.get("/items")
        def items() -> Any:
            return jsonify(ITEMS), 200, {"x-total": "2"}

        @app.get("/login/<user>")
        def login(user: str) -> Any:
            session["user_id"] = user
            return jsonify({"user": user})

        @app.post("/notes")
        @app.post("/notes/committed")
        @app.post("/notes/core")
        def add_note() -> Any:
            db.session.execute(text(f"INSERT INTO {NOTES} (side) VALUES ('legacy')"))
            db.session.commit()
            return jsonify({"notes": _count(db)})

        if self.settings is None:
            return app
        app.config.update(self.settings.flask_config())
        db = SQLAlchemy(app)
        with app.app_context():
            db.session.execute(text(f"DROP TABLE IF EXISTS {NOTES}"))
            db.session.execute(text(f"CREATE TABLE {NOTES} (side VARCHAR(10))"))
            db.session.commit()
        self.db = db
        return app

    def notes(self) -> list[str]:
        """The sides that wrote a note, as committed."""
        with self.flask.app_context():
            rows = self.db.session.execute(text(f"SELECT side FROM {NOTES}")).scalars().all()
            self.db.session.rollback()
            return list(rows)

    def _fastapi(self) -> FastAPI:
        database = AsyncDatabase(self.settings)
        app = FastAPI(lifespan=database.lifespan if self.settings else None)
        database.install(app)

        @app.get("/items")
        async def items() -> Response:
            self.port_calls += 1
            return await self._items()

        @app.get("/login/{user}")
        async def login(user: str) -> dict[str, str]:
            return {"user": user}

        @app.post("/notes")
        async def add_note(db: DbSession) -> dict[str, int]:
            self.port_calls += 1
            await db.execute(text(f"INSERT INTO {NOTES} (side) VALUES ('port')"))
            count = (await db.execute(text(f"SELECT COUNT(*) FROM {NOTES}"))).scalar_one()
            return {"notes": count}

        @app.post("/notes/committed")
        async def add_note_and_commit(db: DbSession) -> dict[str, int]:
            self.port_calls += 1
            await db.execute(text(f"INSERT INTO {NOTES} (side) VALUES ('port')"))
            await db.commit()  # a port that commits by itself
            count = (await db.execute(text(f"SELECT COUNT(*) FROM {NOTES}"))).scalar_one()
            return {"notes": count}

        @app.post("/notes/core")
        async def add_note_core(connection: DbConnection) -> dict[str, int]:
            self.port_calls += 1
            await connection.execute(text(f"INSERT INTO {NOTES} (side) VALUES ('port')"))
            count = await connection.scalar(text(f"SELECT COUNT(*) FROM {NOTES}"))
            return {"notes": int(count or 0)}

        return app

    async def _items(self) -> Response:
        if self.mode == "raise":
            raise RuntimeError("the port exploded")
        if self.mode == "hang":
            await anyio.sleep(60)
        if self.mode == "garbage":
            return Response(b"\xff\x00{not json", media_type="application/json")
        if self.mode == "error":
            return JSONResponse({"detail": "boom"}, status_code=500)
        if self.mode == "block":
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            assert self.release is not None
            await self.release.wait()
            self.waiting -= 1
        body = {"items": ["a"]} if self.mode == "different" else ITEMS
        return JSONResponse(body, headers={"x-total": "2"})


def _count(db: SQLAlchemy) -> int:
    return int(db.session.execute(text(f"SELECT COUNT(*) FROM {NOTES}")).scalar_one())


@dataclass
class RecordedMetrics:
    """The server's metrics calls, in order."""

    requests: list[tuple[str, str, int]] = field(default_factory=list)
    shadows: list[tuple[str, str]] = field(default_factory=list)
    ticks: int = 0

    def request(self, route: str, side: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.requests.append((route, side, status))

    def shadow(self, route: str, outcome: str) -> None:
        self.shadows.append((route, outcome))

    def tick(self) -> None:
        self.ticks += 1

    async def outcomes(self, count: int) -> list[str]:
        """The first *count* shadow outcomes, once there are that many."""
        with anyio.fail_after(10):
            while len(self.shadows) < count:
                await anyio.sleep(0.01)
        return [outcome for _route, outcome in self.shadows]


@asynccontextmanager
async def serving(app: HybridApp) -> AsyncIterator[httpx.AsyncClient]:
    """*app* started as a server starts it (lifespan included), and a client for it."""
    to_app, app_inbox = anyio.create_memory_object_stream[Message](4)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    with to_app, app_inbox, app_outbox, from_app:
        async with anyio.create_task_group() as group:
            group.start_soon(app, scope, app_inbox.receive, app_outbox.send)
            await to_app.send({"type": "lifespan.startup"})
            assert (await from_app.receive())["type"] == "lifespan.startup.complete"
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                yield client
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
