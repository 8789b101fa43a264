"""Streamed responses that take their database connection before the status goes out.

A view that streams rows usually opens its query inside the generator, which
runs after the view has returned and the status line has been sent. When the
pool is exhausted the checkout then times out mid-body: the client gets a 200
cut short instead of the 503 the app's error handler would have given.
:func:`stream_rows` does the checkout, begins the transaction and runs the
query in the view, so every failure up to the first row is an error response::

    @bp.get("/products/export.csv")
    def export_products() -> Response:
        rows = scalars(select(Product).order_by(Product.name))
        return Response(stream_rows(db.engine, rows, product_csv_lines), mimetype="text/csv")

The stream runs on a connection of its own, not on the request's session:
Flask-SQLAlchemy closes that session when the view returns, before the body is
written. The connection goes back to the pool when the rows run out, and when
the server closes the response (the client left, or the body failed). Its
transaction is rolled back: a stream reads.

:func:`bridge.stream_rows_response` is the same for a FastAPI route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Result, event
from sqlalchemy.orm import ORMExecuteState, Session

from bridge._porting.repository import Operation, run_sync

R = TypeVar("R")

Render = Callable[[R], Iterable[str | bytes]]
"""Turns what the operation returns (a ``ScalarResult``, a ``Result``) into the body's
pieces; text is encoded as UTF-8, as Flask and Starlette encode it."""

YIELD_PER = 1000
"""Rows fetched at a time by a SELECT that does not set ``yield_per`` itself."""

CHUNK_SIZE = 16 * 1024
"""Bytes gathered before a chunk is written: one write per CSV line costs more than the line."""


class RowStream(Iterator[bytes]):
    """The body of a streamed response: *render* applied to what *operation* returns,
    read through *connection*, which the stream owns from now on.

    The transaction begins and the operation runs here, when the stream is
    made; iterating gives the rendered body in chunks of about
    :data:`CHUNK_SIZE` bytes. SELECT statements fetch ``yield_per`` rows at a
    time, with a server-side cursor where the driver has them, so the rows do
    not sit in memory all at once. The connection is closed, rolling the
    transaction back, when the rows run out or :meth:`close` is called; if
    making the stream fails, it is closed before the error propagates.
    """

    def __init__(
        self,
        connection: Connection,
        operation: Operation[R],
        render: Render[R],
        *,
        yield_per: int = YIELD_PER,
    ) -> None:
        self._connection = connection
        self._results: list[Result[Any]] = []
        self._session: Session | None = None
        self._pieces: Iterator[str | bytes] | None = None
        try:
            connection.begin()
            self._session = Session(bind=connection)
            event.listen(self._session, "do_orm_execute", self._fetch_in_batches(yield_per))
            self._pieces = iter(render(run_sync(self._session, operation)))
        except BaseException:
            self.close()
            raise

    def _fetch_in_batches(self, yield_per: int) -> Callable[[ORMExecuteState], Result[Any] | None]:
        def fetch(state: ORMExecuteState) -> Result[Any] | None:
            if not state.is_select:
                return None
            options = {} if "yield_per" in state.execution_options else {"yield_per": yield_per}
            result = state.invoke_statement(execution_options=options)
            # Kept to close: a server-side cursor left open warns when collected.
            self._results.append(result)
            return result

        return fetch

    def __next__(self) -> bytes:
        if self._pieces is None:
            raise StopIteration
        chunk = self._read_chunk(self._pieces)
        if not chunk:
            self.close()  # the rows ran out: the connection need not wait for the server
            raise StopIteration
        return chunk

    @staticmethod
    def _read_chunk(pieces: Iterator[str | bytes]) -> bytes:
        parts: list[bytes] = []
        size = 0
        for piece in pieces:
            data = piece.encode() if isinstance(piece, str) else piece
            parts.append(data)
            size += len(data)
            if size >= CHUNK_SIZE:
                break
        return b"".join(parts)

    @property
    def closed(self) -> bool:
        """Whether the connection has gone back to the pool."""
        return self._connection.closed

    def close(self) -> None:
        """Give the connection back, rolling the transaction back; safe to call twice.

        If the cursors cannot be closed, the connection is invalidated, not pooled:
        its state is unknown.
        """
        self._pieces = None
        try:
            for result in self._results:
                result.close()
            if self._session is not None:
                self._session.close()
        except BaseException:
            self._connection.invalidate()
            raise
        finally:
            self._results.clear()
            self._connection.close()


def stream_rows(
    engine: Engine,
    operation: Operation[R],
    render: Render[R],
    *,
    yield_per: int = YIELD_PER,
) -> RowStream:
    """A streamed body for a Flask view, on a connection checked out now.

    Pass it to ``flask.Response``. A pool that stays exhausted raises
    ``sqlalchemy.exc.TimeoutError`` here, in the view, where the app's error
    handler answers it (503, say) before any status has gone out; so does any
    error of the operation. *render* runs while the body is written, outside
    the request context: wrap the stream in ``flask.stream_with_context`` if
    it needs ``request`` or ``url_for``. Make the stream in the ``return``
    statement: until the server has the response, nothing closes it.
    """
    return RowStream(engine.connect(), operation, render, yield_per=yield_per)
