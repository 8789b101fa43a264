"""uvicorn's HTTP protocol with a deadline for each request's head.

uvicorn bounds the idle time between two requests (``timeout_keep_alive``) but
not the time a client takes to send a request line and its headers: every byte
received resets the keep-alive timer, so a client that sends half a request, or
one byte a second, holds its connection for good. nginx answers that with
``client_header_timeout`` and a 408; :class:`HeaderTimeoutProtocol` does the same.

It wraps the protocol uvicorn would pick itself (httptools, else h11) rather
than subclassing it, so it works with either; uvicorn is given it as the import
string :data:`PROTOCOL`, which worker processes can import too. The deadline
comes from the environment variable :data:`HEADER_TIMEOUT_ENV`, which
``flask2fastapi serve`` sets, for the same reason.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

PROTOCOL = "bridge._serving.protocol:HeaderTimeoutProtocol"
HEADER_TIMEOUT_ENV = "FLASK2FASTAPI_HEADER_TIMEOUT"
DEFAULT_HEADER_TIMEOUT = 60.0
"""Seconds, as nginx's ``client_header_timeout``."""

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request Timeout"
)


def header_timeout() -> float:
    """The deadline in seconds, from :data:`HEADER_TIMEOUT_ENV` (set by ``serve``)."""
    raw = os.environ.get(HEADER_TIMEOUT_ENV)
    return float(raw) if raw else DEFAULT_HEADER_TIMEOUT


class HeaderTimeoutProtocol(asyncio.Protocol):
    """Closes a connection with 408 when a request's head is not complete in time.

    The clock starts when the connection opens, and again when the first byte
    of a request arrives on an idle keep-alive connection; it stops when the
    head is complete (uvicorn then starts a new request cycle). A body that
    arrives slowly is the application's to bound, as with nginx.
    """

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        self.inner: Any = AutoHTTPProtocol(  # type: ignore[call-arg]
            config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )
        self.loop = _loop or asyncio.get_event_loop()
        self.timeout = header_timeout()
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport: Any = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.inner.cycle
        if cycle is None or cycle.response_complete:
            self._arm()  # a new request starts on an idle connection
        self.inner.data_received(data)
        upgraded = self.transport is not None and self.transport.get_protocol() is not self
        if self.inner.cycle is not cycle or upgraded:
            self._disarm()  # the head is complete, or a WebSocket took the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _arm(self) -> None:
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.timeout, self._expire)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expire(self) -> None:
        self.deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()
