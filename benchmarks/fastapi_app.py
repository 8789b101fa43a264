"""The benchmark's port: :mod:`benchmarks.flask_app`'s routes on FastAPI, written
with the toolkit's :class:`~bridge.AsyncDatabase`, :data:`~bridge.DbSession` and
:class:`~bridge.FlaskJSONResponse`, as the guide writes a port; ``/io-core`` is
``/io`` on :data:`~bridge.DbConnection`, for routes that need no ORM."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text

from benchmarks.flask_app import IO_QUERY
from bridge import AsyncDatabase, DbConnection, DbSession, FlaskJSONResponse


def create_app() -> FastAPI:
    database = AsyncDatabase()
    app = FastAPI(lifespan=database.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    database.install(app)

    @app.get("/hello")
    async def hello() -> FlaskJSONResponse:
        return FlaskJSONResponse({"message": "hello"})

    @app.get("/io")
    async def io(session: DbSession) -> FlaskJSONResponse:
        await session.execute(text(IO_QUERY))
        return FlaskJSONResponse({"ok": True})

    @app.get("/io-core")
    async def io_core(connection: DbConnection) -> FlaskJSONResponse:
        await connection.execute(text(IO_QUERY))
        return FlaskJSONResponse({"ok": True})

    return app
