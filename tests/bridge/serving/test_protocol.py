"""A request whose head does not arrive in time gets 408 and a closed connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from bridge._serving.protocol import HEADER_TIMEOUT_ENV, PROTOCOL

TIMEOUT = 0.5  # the deadline under test, in seconds
WAIT = 10.0  # how long a test waits for the server at most


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive())["more_body"]:
        pass
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(params=["httptools", "h11"])
def address(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A uvicorn server on a free port with the deadline at TIMEOUT seconds."""
    monkeypatch.setenv(HEADER_TIMEOUT_ENV, str(TIMEOUT))
    if request.param == "h11":
        # The wrapped protocol is uvicorn's own choice; make that h11.
        import uvicorn.protocols.http.auto as auto
        from uvicorn.protocols.http.h11_impl import H11Protocol

        monkeypatch.setattr(auto, "AutoHTTPProtocol", H11Protocol)
    config = uvicorn.Config(
        hello, host="127.0.0.1", port=0, http=PROTOCOL, lifespan="off", log_level="error",
        loop="asyncio",  # uvloop leaves handles behind when its loop ends in a thread
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    yield f"{host}:{port}"
    server.should_exit = True
    thread.join(WAIT)


def connect(address: str) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_half_sent_head_gets_408_and_the_connection_closes(address: str) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")

        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in answer


def test_a_connection_that_sends_nothing_is_closed(address: str) -> None:
    with connect(address) as sock:
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_a_head_sent_slowly_but_in_time_is_answered(address: str) -> None:
    with connect(address) as sock:
        for part in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"):
            sock.sendall(part)
            time.sleep(TIMEOUT / 5)

        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"hello")


def test_the_deadline_runs_again_for_each_request_on_a_kept_alive_connection(
    address: str,
) -> None:
    with connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"hello"):
            first += sock.recv(65536)
        time.sleep(TIMEOUT * 1.5)  # idle past the deadline: keep-alive's to bound, not ours
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # then half a request

        rest = read_until_closed(sock)

    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.startswith(b"HTTP/1.1 408 ")


def test_a_slow_body_is_not_cut_by_the_head_deadline(address: str) -> None:
    with connect(address) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n")
        sock.sendall(b"Connection: close\r\n\r\n")
        time.sleep(TIMEOUT * 1.5)
        sock.sendall(b"body")

        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
