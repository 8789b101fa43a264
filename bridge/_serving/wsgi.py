"""The legacy Flask app as an ASGI app: a WSGI server inside the event loop.

The WSGI app runs in a pool of worker threads. For each request:

* **the body is read in full first**, before a thread is taken
  (:func:`read_body`), and handed to the app with its Content-Length and
  ``wsgi.input_terminated`` set: Werkzeug reads a chunked body as empty
  otherwise, and a client that sends its body slowly holds no thread.
* **the thread runs the app and hands its response over in batches**: it puts
  the status, headers and body chunks into a :class:`_Handoff`, and the event
  loop takes whatever has piled up in one go and sends it. A response produced
  at once, the common case, crosses from the thread to the loop once. A
  streamed response still streams: the first chunk that finds the loop idle
  wakes it, and the chunks that come meanwhile leave together as one message.
* **backpressure**: at most ``buffer_size`` bytes wait in the handoff; past
  that the thread waits for the loop to send them, so a client that reads
  slowly holds the producer back instead of filling memory.
* **a client gone mid-response**: uvicorn's ``send`` returns quietly after a
  disconnect, so once a response is streaming a watcher waits for
  ``http.disconnect``. That, or a failing ``send``, makes the thread's next
  write raise :class:`ClientDisconnected`: the response iterable is closed (so
  Flask's teardown runs) and the thread is free again.
* **the pool after shutdown**: threads are started again for an app whose
  lifespan starts again (a test client opened twice).

a2wsgi builds the environ. Its responder crossed to the loop with a blocking
call per message and per chunk, which halved the rate of small responses and
made a 30,000-line CSV export take ten times as long as under gunicorn.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from a2wsgi.wsgi import build_environ
from starlette.types import Message, Receive, Scope, Send

WSGIApp = Any  # a2wsgi's own WSGI typing is stricter than Flask's signature

#: Response bytes that may wait for the event loop before the app's thread
#: waits too: asyncio's own write buffer limit, so that memory per slow client
#: stays in the tens of kilobytes whatever the app streams.
BUFFER_SIZE = 64 * 1024


class ClientDisconnected(OSError):
    """The client went away while the legacy app was still writing its response."""


class LegacyWSGI:
    """An ASGI app that runs a WSGI app in a pool of ``threads`` worker threads."""

    def __init__(self, app: WSGIApp, *, threads: int = 8, buffer_size: int = BUFFER_SIZE) -> None:
        self.app = app
        self.threads = threads
        self.buffer_size = buffer_size
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The worker threads; started on first use, and again after :meth:`shutdown`."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                thread_name_prefix="legacy-wsgi", max_workers=self.threads
            )
        return self._executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", "the legacy side only serves HTTP"
        body = await read_body(receive)
        if body is None:
            return  # the client left before its request was complete
        await self.respond(scope, body, receive, send)

    async def respond(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Serve a request whose *body* has been read already; *receive* tells of a
        disconnect. Raises what the app raised, or what ``send`` raised."""
        environ = cast("dict[str, Any]", build_environ(scope, io.BytesIO(body)))  # type: ignore[arg-type]
        environ["wsgi.input_terminated"] = True
        if body and not environ.get("CONTENT_LENGTH"):
            environ["CONTENT_LENGTH"] = str(len(body))
        handoff = _Handoff(asyncio.get_running_loop(), self.buffer_size)
        app = functools.partial(_run_app, self.app, environ, handoff)
        self.executor.submit(contextvars.copy_context().run, app)
        await _deliver(handoff, receive, send)

    def shutdown(self) -> None:
        """Stop accepting work; threads finish the requests they have."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class BodyTooLarge(Exception):
    """The request body is larger than the limit given to :func:`read_body`."""


async def read_body(receive: Receive, *, limit: int | None = None) -> bytes | None:
    """The whole request body, read before a worker thread is taken.

    ``None`` when the client disconnected before the body was complete: no app
    should see half a body. Raises :class:`BodyTooLarge` as soon as more than
    *limit* bytes have arrived, so an oversized body is never held in full.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives *body*, read already, as one message, then hands
    over to *receive* (which tells of the disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


@dataclass
class _Batch:
    """What the loop takes from the handoff in one go."""

    start: Message | None = None  # the status and headers, the first time only
    body: list[bytes] = field(default_factory=list)
    finished: bool = False  # the app is done: the body is complete
    error: BaseException | None = None  # what the app raised


class _Handoff:
    """The response, passed from the app's thread to the event loop in batches.

    The thread calls :meth:`start_response`, :meth:`write` and :meth:`finish`;
    the loop calls :meth:`take` and :meth:`close`. The thread wakes the loop
    only when the loop waits and nothing has woken it yet, so all the thread
    produces before the loop runs again is one wake-up and one batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # the thread waits here when full
        self._pending = _Batch()
        self._size = 0
        self.headers_sent = False
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False  # the loop sends no more: the client left, or send failed
        self.send_error: BaseException | None = None

    # The app's thread.

    def start_response(
        self, status: str, headers: Iterable[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        """WSGI's ``start_response``; the headers leave with the first body chunk."""
        message = {
            "type": "http.response.start",
            "status": int(status.split(" ", 1)[0]),
            "headers": [
                (name.strip().encode("latin-1").lower(), value.strip().encode("latin-1"))
                for name, value in headers
            ],
        }
        with self._lock:
            if self.headers_sent:
                if exc_info is not None:  # too late to send the error's own headers
                    raise exc_info[1].with_traceback(exc_info[2])
            else:
                self._pending.start = message
        return self.write

    def write(self, chunk: bytes) -> None:
        """Add a body chunk, waiting while the loop has ``limit`` bytes still to send."""
        if not chunk:
            return  # an empty chunk must not send the headers (PEP 3333)
        with self._lock:
            while self._size >= self._limit and not self.closed:
                self._room.wait()
            if self.closed:
                raise ClientDisconnected("the client disconnected") from self.send_error
            self._pending.body.append(chunk)
            self._size += len(chunk)
            self._wake()

    def finish(self, error: BaseException | None) -> None:
        with self._lock:
            self._pending.finished = True
            self._pending.error = error
            self._wake()

    def _wake(self) -> None:
        # Holding the lock. One wake-up per wait of the loop.
        if self._waiter is not None:
            self._loop.call_soon_threadsafe(_set_result, self._waiter)
            self._waiter = None

    # The event loop.

    async def take(self) -> _Batch:
        """Wait for the thread to produce something, and take all it produced."""
        with self._lock:
            if not (self._pending.body or self._pending.finished):
                self._waiter = waiter = self._loop.create_future()
            else:
                return self._take()
        try:
            await waiter
        finally:
            with self._lock:
                self._waiter = None
        with self._lock:
            return self._take()

    def _take(self) -> _Batch:
        batch, self._pending, self._size = self._pending, _Batch(), 0
        if batch.start is not None:
            self.headers_sent = True
        self._room.notify()
        return batch

    def close(self, send_error: BaseException | None = None) -> None:
        """Send no more: the thread's next write raises :class:`ClientDisconnected`."""
        with self._lock:
            self.closed = True
            self.send_error = self.send_error or send_error
            self._room.notify()


def _set_result(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _run_app(app: WSGIApp, environ: dict[str, Any], handoff: _Handoff) -> None:
    """Run the WSGI app and iterate its response, in a worker thread."""
    error: BaseException | None = None
    try:
        iterable = app(environ, handoff.start_response)
        try:
            for chunk in iterable:
                handoff.write(chunk)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
    except ClientDisconnected:
        pass  # the cause is the handoff's: the loop knows it
    except BaseException as exc:  # raised on the loop, as the server expects
        error = exc
    handoff.finish(error)


async def _deliver(handoff: _Handoff, receive: Receive, send: Send) -> None:
    """Send the batches the app's thread hands over, until the app is done."""
    watcher: asyncio.Task[None] | None = None
    try:
        while True:
            batch = await handoff.take()
            if not handoff.closed:
                await _send_batch(batch, handoff, send)
            if batch.finished:
                break
            if watcher is None:  # streaming: mind the client from now on
                watcher = asyncio.ensure_future(_watch(receive, handoff))
    finally:
        if watcher is not None:
            watcher.cancel()
        handoff.close()  # if the loop was cancelled, the thread stops writing
    if handoff.send_error is not None:
        raise handoff.send_error
    if batch.error is not None:
        raise batch.error


async def _send_batch(batch: _Batch, handoff: _Handoff, send: Send) -> None:
    complete = batch.finished and batch.error is None
    if batch.start is None and complete and not handoff.headers_sent:
        batch.error = RuntimeError("the WSGI app returned without calling start_response")
        return
    try:
        if batch.start is not None and (batch.body or complete):
            await send(batch.start)
        if batch.body or complete:
            body = batch.body[0] if len(batch.body) == 1 else b"".join(batch.body)
            await send({"type": "http.response.body", "body": body, "more_body": not complete})
    except Exception as exc:  # keep taking batches, so the thread is never stuck
        handoff.close(exc)


async def _watch(receive: Receive, handoff: _Handoff) -> None:
    """Wait for the client to go away; the body has been read already."""
    while (await receive())["type"] != "http.disconnect":
        pass
    handoff.close()
