"""The legacy Flask app as an ASGI app, through a2wsgi, with a2wsgi's gaps closed.

a2wsgi runs the WSGI app in a thread pool and hands its response back to the
event loop through a bounded queue. :class:`LegacyWSGI` keeps that, and fixes:

* **request bodies without Content-Length** (chunked): a2wsgi does not set
  ``wsgi.input_terminated``, so Werkzeug reads them as empty. Here the body is
  read in full before a worker thread is taken, and handed to the app with its
  Content-Length.
* **a client gone mid-response**: a2wsgi only notices when ``send`` fails, but
  uvicorn's ``send`` does not fail after a disconnect, it returns; and when it
  does fail, a2wsgi stops draining its queue so the worker blocks forever on a
  full queue. Here a watcher waits for ``http.disconnect`` while the response
  is written, the queue keeps draining, and the worker's next write raises
  :class:`ClientDisconnected`: the response iterable is closed (so Flask's
  teardown runs) and the thread is free again.
* **the pool after shutdown**: threads are started again for an app whose
  lifespan starts again (a test client opened twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import WSGIResponder, build_environ
from starlette.types import Message, Receive, Scope, Send

WSGIApp = Any  # a2wsgi's own WSGI typing is stricter than Flask's signature


class ClientDisconnected(OSError):
    """The client went away while the legacy app was still writing its response."""


class LegacyWSGI:
    """An ASGI app that runs a WSGI app in a pool of ``threads`` worker threads."""

    def __init__(self, app: WSGIApp, *, threads: int = 40, send_queue_size: int = 10) -> None:
        self.app = _TerminatedInput(app)
        self.threads = threads
        self.send_queue_size = send_queue_size
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
        responder = _Responder(self.app, self.executor, self.send_queue_size)
        await responder(scope, body, receive, send)

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
            return b"".join(chunks)


class _TerminatedInput:
    # Needed beside the Content-Length set below: Werkzeug ignores Content-Length
    # when Transfer-Encoding: chunked is present, and then reads no body at all
    # unless the input is marked as terminated.
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)


class _Responder(WSGIResponder):
    def __init__(self, app: WSGIApp, executor: ThreadPoolExecutor, send_queue_size: int) -> None:
        super().__init__(app, executor, send_queue_size)
        self.send_error: BaseException | None = None  # send() failed: raised to the server
        self.disconnected = False  # the client said goodbye: stop quietly

    async def __call__(  # type: ignore[override]
        self, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> None:
        environ = build_environ(scope, io.BytesIO(body))  # type: ignore[arg-type]
        if body and not environ.get("CONTENT_LENGTH"):
            environ["CONTENT_LENGTH"] = str(len(body))
        sender = self.loop.create_task(self.sender(send))
        watcher = self.loop.create_task(self.watch(receive))
        try:
            run = functools.partial(contextvars.copy_context().run, self.wsgi)  # type: ignore[call-arg]
            # On ClientDisconnected the cause is in send_error or disconnected.
            with contextlib.suppress(ClientDisconnected):
                await self.loop.run_in_executor(self.executor, run, environ, self.start_response)
            await self.send_queue.put(None)
            await sender
        finally:
            watcher.cancel()
            if not sender.done():
                sender.cancel()
        if self.send_error is not None:
            raise self.send_error
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])

    async def watch(self, receive: Receive) -> None:
        """Wait for the client to go away; the body has been read already."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True

    def send(self, message: Any) -> None:
        # Runs in the worker thread.
        if self.send_error is not None or self.disconnected:
            if message["type"] == "http.response.start":
                # Raised from start_response, the app could not return its body
                # and nothing would close it (a streamed body holds a connection).
                return
            raise ClientDisconnected("the client disconnected") from self.send_error
        asyncio.run_coroutine_threadsafe(self.send_queue.put(message), loop=self.loop).result()

    async def sender(self, send: Send) -> None:  # type: ignore[override]
        while True:
            message: Message | None = await self.send_queue.get()
            if message is None:
                return
            if self.send_error is None and not self.disconnected:
                try:
                    await send(message)
                except Exception as exc:  # keep draining so the worker never blocks
                    self.send_error = exc
