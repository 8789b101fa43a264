""":func:`bridge.stream_rows` for FastAPI: a streamed response whose connection is
taken in the route, before the status goes out.

::

    @router.get("/api/products/export.csv")
    async def export_products(request: Request) -> Response:
        rows = scalars(select(Product).order_by(Product.name))
        return await stream_rows_response(request, rows, product_csv_lines, media_type="text/csv")

The route awaits the checkout, so a pool that stays exhausted raises
``sqlalchemy.exc.TimeoutError`` in the route, which the error envelope answers
with 503 and ``Retry-After``. The response gives the connection back when the
body is written, when writing it fails and when the client leaves.

The request's ``DbSession`` cannot carry the stream: it is committed and closed
when the route returns, before the body is written. The stream runs on a
connection of its own, so a route that holds the request's session holds two
connections until it returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

import anyio
import anyio.lowlevel
from fastapi import Request
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from bridge._exceptions import AsyncDatabaseError
from bridge._porting.asyncdb import AsyncDatabase
from bridge._porting.repository import Operation
from bridge._porting.streaming import YIELD_PER, Render, RowStream

R = TypeVar("R")


async def stream_rows_response(
    database: Request | AsyncDatabase | AsyncEngine,
    operation: Operation[R],
    render: Render[R],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str | None = None,
    yield_per: int = YIELD_PER,
) -> StreamingResponse:
    """A ``StreamingResponse`` of *render* applied to what *operation* returns.

    *database* is the route's ``Request`` (its app's installed
    :class:`~bridge.AsyncDatabase`), an ``AsyncDatabase`` or an ``AsyncEngine``.
    The connection is checked out, the transaction begun and the operation run
    before this returns; SELECT statements fetch ``yield_per`` rows at a time,
    with a server-side cursor where the driver has one. The transaction is
    rolled back at the end: a stream reads.
    """
    connection = await _engine(database).connect()
    try:
        rows = await connection.run_sync(_open, operation, render, yield_per)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await connection.close()
        raise
    return _RowStreamingResponse(connection, rows, status_code, headers, media_type)


def _engine(database: Request | AsyncDatabase | AsyncEngine) -> AsyncEngine:
    if isinstance(database, Request):
        installed = getattr(database.app.state, "database", None)
        if not isinstance(installed, AsyncDatabase):
            raise AsyncDatabaseError(
                "no AsyncDatabase on this app to stream from: call AsyncDatabase.install(app)"
            )
        database = installed
    return database.engine if isinstance(database, AsyncDatabase) else database


def _open(
    connection: Connection, operation: Operation[R], render: Render[R], yield_per: int
) -> RowStream:
    return RowStream(connection, operation, render, yield_per=yield_per)


class _RowStreamingResponse(StreamingResponse):
    """Streams a :class:`RowStream` and releases its connection whatever ends the response.

    Starlette does not close a body iterator it stops reading (the client left,
    or sending failed), so the release is here, around the whole response.
    """

    def __init__(
        self,
        connection: AsyncConnection,
        rows: RowStream,
        status_code: int,
        headers: Mapping[str, str] | None,
        media_type: str | None,
    ) -> None:
        self.connection = connection
        self.rows = rows
        super().__init__(self._chunks(), status_code, headers, media_type)

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            # A client that leaves cancels the response (Starlette listens for the
            # disconnect). The cancellation lands here, between fetches: a driver
            # cancelled in the middle of one leaves its connection unusable.
            await anyio.lowlevel.checkpoint()
            with anyio.CancelScope(shield=True):
                chunk = await self.connection.run_sync(_next_chunk, self.rows)
            if chunk is None:
                return
            yield chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.release()

    async def release(self) -> None:
        """Close the rows and give the connection back; safe to call twice."""
        try:
            await self.connection.run_sync(_close, self.rows)
        finally:
            await self.connection.close()


def _next_chunk(_connection: Connection, rows: RowStream) -> bytes | None:
    return next(rows, None)


def _close(_connection: Connection, rows: RowStream) -> None:
    rows.close()
