from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import pytest
from flask import Flask, Response, request, stream_with_context
from starlette.types import Message

from bridge._serving.wsgi import BodyTooLarge, LegacyWSGI, _Handoff, read_body
from tests.bridge.apps import SentMessages, http_scope, receive_body

pytestmark = pytest.mark.anyio

StartResponse = Callable[..., Any]
TIMEOUT = 5


class Chunks:
    """A WSGI response body that records whether the server closed it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for number in range(self.count):
            self.sent += 1
            yield b"chunk %d\n" % number

    def close(self) -> None:
        self.closed.set()


def streaming_app(body: Chunks) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return body
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    return app


async def test_streaming_response_arrives_in_chunks_while_the_app_still_runs() -> None:
    first_sent = threading.Event()
    flask_app = Flask(__name__)

    @flask_app.get("/stream")
    def stream() -> Response:
        def generate() -> Iterator[bytes]:
            yield b"first"
            # Only reached promptly if "first" left before the body was complete.
            yield b"second" if first_sent.wait(TIMEOUT) else b"buffered"

        return Response(generate(), mimetype="text/plain")

    received = SentMessages()

    async def send(message: Message) -> None:
        await received(message)
        if message.get("body") == b"first":
            first_sent.set()

    legacy = LegacyWSGI(flask_app, threads=2)
    with anyio.fail_after(TIMEOUT * 2):
        await legacy(http_scope("GET", "/stream"), receive_body([]), send)

    assert received.status == 200
    assert [chunk for chunk in received.body_chunks if chunk] == [b"first", b"second"]
    last = received.messages[-1]  # the response is complete
    assert last["type"] == "http.response.body" and not last.get("more_body", False)
    legacy.shutdown()


async def test_chunked_request_body_without_content_length_reaches_flask() -> None:
    flask_app = Flask(__name__)

    @flask_app.post("/echo")
    def echo() -> bytes:
        return request.get_data()

    chunks = [b"alpha-", b"", b"beta-" * 1000, b"gamma"]
    scope = http_scope("POST", "/echo", headers=[(b"transfer-encoding", b"chunked")])
    sent = SentMessages()
    legacy = LegacyWSGI(flask_app, threads=1)

    with anyio.fail_after(TIMEOUT):
        await legacy(scope, receive_body(chunks), sent)

    assert sent.status == 200
    assert sent.body == b"".join(chunks)
    legacy.shutdown()


async def test_form_body_without_content_length_reaches_flask() -> None:
    flask_app = Flask(__name__)

    @flask_app.post("/form")
    def form() -> dict[str, Any]:
        return dict(request.form)

    scope = http_scope(
        "POST", "/form", headers=[(b"content-type", b"application/x-www-form-urlencoded")]
    )
    sent = SentMessages()
    legacy = LegacyWSGI(flask_app, threads=1)

    with anyio.fail_after(TIMEOUT):
        await legacy(scope, receive_body([b"a=1&", b"b=two"]), sent)

    assert sent.body == b'{"a":"1","b":"two"}\n'
    legacy.shutdown()


async def test_send_failing_mid_stream_closes_the_body_and_frees_the_thread() -> None:
    body = Chunks(count=200)  # far more than a handoff of 16 bytes holds
    legacy = LegacyWSGI(streaming_app(body), threads=1, buffer_size=16)

    class ClientGone(OSError):
        pass

    bodies = 0

    async def failing_send(message: Message) -> None:
        nonlocal bodies
        if message["type"] == "http.response.body":
            bodies += 1
            if bodies == 2:
                raise ClientGone("the client went away")

    with anyio.fail_after(TIMEOUT):
        with pytest.raises(ClientGone):
            await legacy(http_scope("GET", "/stream"), receive_body([]), failing_send)
        assert body.closed.wait(TIMEOUT)
        assert body.sent < body.count  # the app stopped producing

        # The only worker thread is free again.
        sent = SentMessages()
        await legacy(http_scope("GET", "/next"), receive_body([]), sent)

    assert sent.body == b"served"
    legacy.shutdown()


async def test_send_failing_on_response_start_frees_the_thread() -> None:
    body = Chunks(count=50)
    legacy = LegacyWSGI(streaming_app(body), threads=1)

    async def failing_send(message: Message) -> None:
        raise ConnectionResetError

    with anyio.fail_after(TIMEOUT):
        with pytest.raises(ConnectionResetError):
            await legacy(http_scope("GET", "/stream"), receive_body([]), failing_send)
        sent = SentMessages()
        await legacy(http_scope("GET", "/next"), receive_body([]), sent)

    assert body.closed.is_set()
    assert sent.body == b"served"
    legacy.shutdown()


async def test_flask_teardown_runs_when_the_client_goes_away() -> None:
    torn_down = threading.Event()
    flask_app = Flask(__name__)

    @flask_app.teardown_request
    def teardown(_error: BaseException | None) -> None:
        torn_down.set()

    @flask_app.get("/stream")
    def stream() -> Response:
        return Response(stream_with_context(b"x" * 10 for _ in range(100)))

    async def failing_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise BrokenPipeError

    legacy = LegacyWSGI(flask_app, threads=1)
    with anyio.fail_after(TIMEOUT), pytest.raises(BrokenPipeError):
        await legacy(http_scope("GET", "/stream"), receive_body([]), failing_send)

    assert torn_down.wait(TIMEOUT)
    legacy.shutdown()


async def test_exception_in_the_wsgi_app_propagates() -> None:
    def broken(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise LookupError("the legacy app broke")

    legacy = LegacyWSGI(broken, threads=1)
    with anyio.fail_after(TIMEOUT), pytest.raises(LookupError, match="the legacy app broke"):
        await legacy(http_scope(), receive_body([]), SentMessages())
    legacy.shutdown()


async def test_exception_while_iterating_the_body_propagates_and_closes_it() -> None:
    closed = threading.Event()

    class Failing:
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"
            raise ValueError("broken stream")

        def close(self) -> None:
            closed.set()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Failing()

    legacy = LegacyWSGI(app, threads=1)
    sent = SentMessages()
    with anyio.fail_after(TIMEOUT), pytest.raises(ValueError, match="broken stream"):
        await legacy(http_scope(), receive_body([]), sent)

    assert closed.is_set()
    assert sent.status == 200
    legacy.shutdown()


async def test_threads_option_sizes_the_pool_and_a_restart_gets_a_new_one() -> None:
    legacy = LegacyWSGI(streaming_app(Chunks(1)), threads=3)
    pool = legacy.executor
    assert pool._max_workers == 3

    legacy.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(int)  # the old threads are gone

    sent = SentMessages()  # an app started again (a test client opened twice) still serves
    with anyio.fail_after(TIMEOUT):
        await legacy(http_scope("GET", "/"), receive_body([]), sent)
    assert sent.body == b"served"
    legacy.shutdown()


async def test_a_client_that_leaves_a_stream_frees_the_thread_though_send_never_fails() -> None:
    # uvicorn's send() returns quietly after a disconnect; only receive() tells.
    body = Chunks(count=100_000)
    legacy = LegacyWSGI(streaming_app(body), threads=1)
    first_body = anyio.Event()
    messages: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await first_body.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            first_body.set()

    with anyio.fail_after(TIMEOUT):
        await legacy(http_scope("GET", "/stream"), receive, send)
        assert body.closed.wait(TIMEOUT)
        assert body.sent < body.count  # the app stopped producing

        sent = SentMessages()  # the only worker thread is free again
        await legacy(http_scope("GET", "/next"), receive_body([]), sent)

    assert sent.body == b"served"
    legacy.shutdown()


async def test_a_client_gone_before_its_body_is_complete_takes_no_thread() -> None:
    called = threading.Event()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        called.set()
        start_response("200 OK", [])
        return [b""]

    messages: list[Message] = [
        {"type": "http.request", "body": b"half", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    sent = SentMessages()
    legacy = LegacyWSGI(app, threads=1)
    with anyio.fail_after(TIMEOUT):
        await legacy(http_scope("POST", "/"), receive, sent)
    assert not called.is_set()
    assert sent.messages == []
    legacy.shutdown()


async def test_read_body_joins_the_chunks_up_to_and_including_the_limit() -> None:
    with anyio.fail_after(TIMEOUT):
        body = await read_body(receive_body([b"abc", b"", b"def"]), limit=6)
    assert body == b"abcdef"


async def test_read_body_stops_at_the_first_chunk_past_the_limit() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"x" * 4, "more_body": True},
        {"type": "http.request", "body": b"x" * 4, "more_body": True},
        {"type": "http.request", "body": b"x" * 4, "more_body": False},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    with anyio.fail_after(TIMEOUT), pytest.raises(BodyTooLarge):
        await read_body(receive, limit=6)
    assert len(messages) == 1  # the rest of the body is never read


async def test_read_body_is_none_when_the_client_leaves_mid_body() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"half", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    with anyio.fail_after(TIMEOUT):
        assert await read_body(receive, limit=100) is None


class Paced:
    """A streamed body that records how far it ran ahead of what the client received."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.chunk = b"x" * size
        self.produced = 0
        self.received = 0
        self.most_ahead = 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.most_ahead = max(self.most_ahead, self.produced - self.received)
            self.produced += len(self.chunk)
            yield self.chunk


async def test_a_slow_client_holds_a_large_stream_back_instead_of_buffering_it() -> None:
    body = Paced(count=256, size=1024)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body

    received = bytearray()

    async def slow_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await anyio.sleep(0.005)  # a client on a slow link
            received.extend(message["body"])
            body.received = len(received)

    legacy = LegacyWSGI(app, threads=1, buffer_size=4096)
    with anyio.fail_after(TIMEOUT * 4):
        await legacy(http_scope("GET", "/"), receive_body([]), slow_send)

    assert bytes(received) == b"x" * (256 * 1024)
    # What the loop is sending, plus what waits in the handoff, plus one chunk.
    assert body.most_ahead <= 2 * 4096 + 1024
    legacy.shutdown()


async def test_a_response_with_no_body_still_sends_its_headers_and_ends() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("204 No Content", [("X-Empty", "yes")])
        return [b"", b""]

    sent = SentMessages()
    legacy = LegacyWSGI(app, threads=1)
    with anyio.fail_after(TIMEOUT):
        await legacy(http_scope(), receive_body([]), sent)

    assert sent.messages == [
        {"type": "http.response.start", "status": 204, "headers": [(b"x-empty", b"yes")]},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    legacy.shutdown()


async def test_an_app_failing_before_its_first_chunk_sends_no_headers() -> None:
    # The headers wait for the first chunk (PEP 3333), so the server can still
    # answer 500 instead of a 200 cut short.
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        raise LookupError("failed before the body")
        yield b"never"

    sent = SentMessages()
    legacy = LegacyWSGI(app, threads=1)
    with anyio.fail_after(TIMEOUT), pytest.raises(LookupError, match="failed before the body"):
        await legacy(http_scope(), receive_body([]), sent)

    assert sent.messages == []
    legacy.shutdown()


async def test_an_app_that_never_starts_a_response_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return []

    legacy = LegacyWSGI(app, threads=1)
    with anyio.fail_after(TIMEOUT), pytest.raises(RuntimeError, match="start_response"):
        await legacy(http_scope(), receive_body([]), SentMessages())
    legacy.shutdown()


async def test_a_request_cancelled_mid_stream_stops_the_app_and_frees_the_thread() -> None:
    body = Chunks(count=100_000)
    legacy = LegacyWSGI(streaming_app(body), threads=1, buffer_size=16)
    first_body = anyio.Event()

    async def stuck_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            first_body.set()
            await anyio.sleep_forever()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(legacy, http_scope("GET", "/stream"), receive_body([]), stuck_send)
            await first_body.wait()
            tasks.cancel_scope.cancel()  # the server shutting down, say
        assert body.closed.wait(TIMEOUT)
        sent = SentMessages()
        await legacy(http_scope("GET", "/next"), receive_body([]), sent)

    assert body.sent < body.count
    assert sent.body == b"served"
    legacy.shutdown()


async def test_what_the_app_produced_before_the_loop_looked_is_taken_in_one_batch() -> None:
    handoff = _Handoff(asyncio.get_running_loop(), limit=1024)
    handoff.start_response("200 OK", [("Content-Type", "text/plain")])
    for chunk in (b"a", b"", b"b", b"c"):
        handoff.write(chunk)
    handoff.finish(None)

    batch = await handoff.take()

    assert batch.start is not None and batch.start["status"] == 200
    assert batch.body == [b"a", b"b", b"c"]
    assert batch.finished and batch.error is None
