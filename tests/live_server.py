"""An ASGI app served by uvicorn on a real socket, for tests that need real TCP.

In-process transports cannot show what a server does with the connection: a
pipelined request, a closed keep-alive, a malformed request line. These tests
run uvicorn in a thread on an ephemeral port of 127.0.0.1 and talk to it with
raw sockets.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn

HTTPImplementation = Literal["h11", "httptools"]


class Records(logging.Handler):
    """Keeps every record logged while the server runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[logging.LogRecord]:
        return [record for record in self.records if record.exc_info]


@dataclass
class LiveServer:
    host: str
    port: int
    log: Records = field(default_factory=Records)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def exchange(self, raw: bytes, timeout: float = 10.0) -> Exchange:
        """Send *raw* on a new connection and read until the server closes it."""
        with self.connect(timeout) as sock:
            # The server may answer and close before it has read all of *raw*.
            with contextlib.suppress(ConnectionResetError):
                sock.sendall(raw)
            return read_until_closed(sock)


@dataclass(frozen=True)
class Exchange:
    """What the server sent on one connection, and whether it closed the connection."""

    data: bytes
    closed: bool

    @property
    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1])

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]

    def header(self, name: str) -> str | None:
        head = self.data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        pairs = (line.partition(":") for line in head)
        return next((v.strip() for k, _, v in pairs if k.strip().lower() == name.lower()), None)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def read_responses(sock: socket.socket, count: int) -> list[RawResponse]:
    """Read *count* responses with a Content-Length from *sock*; fewer if it closes first."""
    buffer = b""
    responses: list[RawResponse] = []
    while len(responses) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head, rest = buffer[:head_end].decode("latin-1"), buffer[head_end + 4 :]
            status_line, *lines = head.split("\r\n")
            headers = [
                (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)
            ]
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            if len(rest) >= length:
                status = int(status_line.split()[1])
                responses.append(RawResponse(status, headers, rest[:length]))
                buffer = rest[length:]
                continue
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        buffer += chunk
    return responses


def read_until_closed(sock: socket.socket) -> Exchange:
    """Everything the server sends until it closes the connection, or the timeout."""
    chunks = []
    closed = True
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        closed = False
    return Exchange(b"".join(chunks), closed)


# The loggers a server run writes to: uvicorn's (uvicorn.error propagates to
# uvicorn) and the toolkit's.
LOGGERS = ("uvicorn", "flask2fastapi")


@contextmanager
def live_server(app: Any, *, http: HTTPImplementation = "httptools") -> Iterator[LiveServer]:
    """Serve *app* with uvicorn on 127.0.0.1 in a thread, lifespan included, for the block."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=http,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    records = Records()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for logger in loggers:
        logger.addHandler(records)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start; see the log above")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer("127.0.0.1", port, records)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for logger in loggers:
            logger.removeHandler(records)
