"""The reference: the same two routes by hand, Starlette on a raw asyncpg pool.

What a port could reach with nothing between the route and the driver: no ORM
session, no transaction, no pre-ping. The pool has ``DATABASE_POOL_SIZE``
connections, as the port's.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.flask_app import IO_QUERY

HELLO = b'{"message":"hello"}\n'
OK = b'{"ok":true}\n'


def create_app() -> Starlette:
    size = int(os.environ.get("DATABASE_POOL_SIZE", "32"))
    dsn = os.environ["DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with asyncpg.create_pool(dsn, min_size=size, max_size=size) as pool:
            app.state.pool = pool
            yield

    async def hello(_request: Request) -> Response:
        return Response(HELLO, media_type="application/json")

    async def io(request: Request) -> Response:
        async with request.app.state.pool.acquire() as connection:
            await connection.execute(IO_QUERY)
        return Response(OK, media_type="application/json")

    return Starlette(routes=[Route("/hello", hello), Route("/io", io)], lifespan=lifespan)
