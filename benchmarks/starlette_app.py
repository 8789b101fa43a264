"""The references: the same two routes by hand on a raw asyncpg pool.

:func:`create_app` is Starlette alone: what a port could reach with nothing
between the route and the driver (no ORM session, no transaction, no
pre-ping). :func:`create_fastapi_app` is the same routes on FastAPI: the
ceiling of any port, since a port is a FastAPI route; what the toolkit's
routes lose against it is the toolkit's and SQLAlchemy's share, what it loses
against Starlette is FastAPI's. The pool has ``DATABASE_POOL_SIZE``
connections, as the port's.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.flask_app import IO_QUERY

HELLO = b'{"message":"hello"}\n'
OK = b'{"ok":true}\n'


@asynccontextmanager
async def _pool(app: Starlette) -> AsyncIterator[None]:
    size = int(os.environ.get("DATABASE_POOL_SIZE", "32"))
    dsn = os.environ["DATABASE_URL"]
    async with asyncpg.create_pool(dsn, min_size=size, max_size=size) as pool:
        app.state.pool = pool
        yield


async def hello(_request: Request) -> Response:
    return Response(HELLO, media_type="application/json")


async def io(request: Request) -> Response:
    async with request.app.state.pool.acquire() as connection:
        await connection.execute(IO_QUERY)
    return Response(OK, media_type="application/json")


def create_app() -> Starlette:
    return Starlette(routes=[Route("/hello", hello), Route("/io", io)], lifespan=_pool)


def create_fastapi_app() -> FastAPI:
    app = FastAPI(lifespan=_pool, docs_url=None, redoc_url=None, openapi_url=None)
    app.get("/hello")(hello)
    app.get("/io")(io)
    return app
