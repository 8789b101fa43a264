"""The legacy Flask app as an ASGI app, through a2wsgi, with a2wsgi's gaps closed.

a2wsgi runs the WSGI app in a thread pool and hands its response back to the
event loop through a bounded queue. :class:`LegacyWSGI` keeps that, and fixes:

* **request bodies without Content-Length** (chunked): a2wsgi does not set
  ``wsgi.input_terminated``, so Werkzeug reads them as empty. The bridge
  buffers every body and sets Content-Length before this app sees it, and this
  app marks the input as terminated as well, since an ASGI body always ends.
* **a client gone mid-response**: when ``send`` fails, a2wsgi stops draining its
  queue and the worker thread blocks forever on a full queue. Here the queue
  keeps draining, the worker's next write raises :class:`ClientDisconnected`,
  the response iterable is closed (so Flask's teardown runs) and the thread is
  free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import Body as _Body
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
        self.executor = ThreadPoolExecutor(thread_name_prefix="legacy-wsgi", max_workers=threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", "the legacy side only serves HTTP"
        responder = _Responder(self.app, self.executor, self.send_queue_size)
        await responder(scope, receive, send)

    def shutdown(self) -> None:
        """Stop accepting work; threads finish the requests they have."""
        self.executor.shutdown(wait=False, cancel_futures=True)


class _TerminatedInput:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)


class _Responder(WSGIResponder):
    def __init__(self, app: WSGIApp, executor: ThreadPoolExecutor, send_queue_size: int) -> None:
        super().__init__(app, executor, send_queue_size)
        self.send_error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        environ = build_environ(scope, _Body(self.loop, receive))  # type: ignore[arg-type]
        sender = self.loop.create_task(self.sender(send))
        try:
            run = functools.partial(contextvars.copy_context().run, self.wsgi)  # type: ignore[call-arg]
            # On ClientDisconnected, send_error holds the cause; it is raised below.
            with contextlib.suppress(ClientDisconnected):
                await self.loop.run_in_executor(self.executor, run, environ, self.start_response)
            await self.send_queue.put(None)
            await sender
        finally:
            if not sender.done():
                sender.cancel()
        if self.send_error is not None:
            raise self.send_error
        if self.exc_info is not None:
            raise self.exc_info[1].with_traceback(self.exc_info[2])

    def send(self, message: Any) -> None:
        # Runs in the worker thread.
        if self.send_error is not None:
            raise ClientDisconnected("the client disconnected") from self.send_error
        asyncio.run_coroutine_threadsafe(self.send_queue.put(message), loop=self.loop).result()

    async def sender(self, send: Send) -> None:  # type: ignore[override]
        while True:
            message: Message | None = await self.send_queue.get()
            if message is None:
                return
            if self.send_error is None:
                try:
                    await send(message)
                except Exception as exc:  # keep draining so the worker never blocks
                    self.send_error = exc
