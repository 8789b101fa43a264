"""The benchmark's port: :mod:`benchmarks.flask_app`'s routes on FastAPI, written
with the toolkit's :class:`~bridge.AsyncDatabase`, :data:`~bridge.DbSession` and
:class:`~bridge.FlaskJSONResponse`, as the guide writes a port; ``/io-core`` is
``/io`` on :data:`~bridge.DbConnection`, for routes that need no ORM; ``/io-engine``
is ``/io`` on SQLAlchemy Core alone (``engine.begin()`` in the route, a plain
response), what the toolkit's per-request cost is measured against."""

from __future__ import annotations

from fastapi import FastAPI, Request
from sqlalchemy import text
from starlette.responses import Response

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

    @app.get("/io-engine")
    async def io_engine(request: Request) -> Response:
        async with request.app.state.database.engine.begin() as connection:
            await connection.execute(text(IO_QUERY))
        return Response(b'{"ok":true}\n', media_type="application/json")

    return app
