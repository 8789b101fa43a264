"""Recording live requests as shadow cases: what is picked, what is kept, the bounds."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.types import Message, Receive, Scope, Send

from bridge._cli import main
from bridge._exceptions import ConfigurationError
from bridge._shadow.cases import load_cases
from bridge._shadow.redact import REDACTED, Redactor
from bridge._shadow.traffic import (
    CaseWriter,
    RecordOptions,
    TrafficRecorder,
    case_of,
    recording,
)

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it received: the method, the body and the headers it read."""
    assert scope["type"] == "http"
    body = b""
    more = True
    while more and scope["path"] != "/unread":
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = json.dumps({"method": scope["method"], "body": body.decode()}).encode()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-echo", b"1")]})
    await send({"type": "http.response.body", "body": answer})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@asynccontextmanager
async def client(
    path: Path, *, pick: float = 0.0, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the echo app behind a recorder; the file is complete on exit."""
    record = RecordOptions(path, **options)
    writer = CaseWriter(record, lambda capture: case_of(capture, Redactor()))
    app = TrafficRecorder(echo, writer, pick=lambda: pick)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            yield http
    finally:
        writer.close()


async def test_a_picked_request_is_kept_redacted_and_the_answer_is_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "recorded.jsonl"
    params = {"sort": "-price", "token": "s3cret"}
    headers = {
        "Authorization": "Bearer s3cret",
        "Cookie": "session=s3cret",
        "X-Forwarded-For": "203.0.113.9",
        "Accept": "application/json",
    }
    async with client(path, rate=1.0, methods=frozenset({"GET", "POST"})) as http:
        recorded = await http.get("/api/products", params=params, headers=headers)
        posted = await http.post("/api/auth/login", json={"email": "a@b.c", "password": "pw"})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=echo), base_url="http://shop.test"
    ) as http:
        plain = await http.post("/api/auth/login", json={"email": "a@b.c", "password": "pw"})

    # The app got the body as sent, and the client the app's answer.
    assert (posted.status_code, posted.headers["x-echo"]) == (201, "1")
    assert posted.content == plain.content
    assert json.loads(posted.content)["body"] == '{"email":"a@b.c","password":"pw"}'
    assert recorded.status_code == 201
    [get, post] = lines(path)
    assert get["method"] == "GET"
    assert get["path"] == f"/api/products?sort=-price&token={REDACTED}"
    assert get["headers"]["authorization"] == REDACTED
    assert get["headers"]["cookie"] == REDACTED
    assert get["headers"]["accept"] == "application/json"
    # Where the request came from is not kept at all, nor the connection's headers.
    assert not {"x-forwarded-for", "host", "content-length"} & set(get["headers"])
    assert "s3cret" not in path.read_text() and "203.0.113.9" not in path.read_text()
    assert json.loads(post["body"]) == {"email": REDACTED, "password": REDACTED}
    assert post["name"].startswith("recorded 20") and post["name"].endswith("Z")


async def test_a_request_with_nothing_to_redact_is_kept_to_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    async with client(path, rate=1.0, methods=frozenset({"POST"})) as http:
        await http.post("/a?flag&next=%2Fhome", content=b'{"n":1.0,"q":"x"}', headers=JSON)
        await http.post("/b?flag&token=t", content=b'{"n":1.0,"password":"pw"}', headers=JSON)
    kept, redacted = lines(path)
    # The redactor writes what it parsed again; with nothing replaced, the original stays.
    assert (kept["path"], kept["body"]) == ("/a?flag&next=%2Fhome", '{"n":1.0,"q":"x"}')
    assert redacted["path"] == f"/b?flag=&token={REDACTED}"
    assert json.loads(redacted["body"]) == {"n": 1.0, "password": REDACTED}


async def test_only_safe_methods_and_picked_requests_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    async with client(path, pick=0.5, rate=0.6) as http:
        await http.get("/picked")
        await http.head("/picked")
        await http.post("/not-safe", content=b"x")
        await http.delete("/not-safe")
    async with client(path, pick=0.5, rate=0.4) as http:
        await http.get("/not-picked")
    assert [(case["method"], case["path"]) for case in lines(path)] == [
        ("GET", "/picked"),
        ("HEAD", "/picked"),
    ]


async def test_a_body_too_large_or_not_read_to_its_end_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    async with client(path, rate=1.0, methods=frozenset({"POST"}), max_body=10) as http:
        await http.post("/small", content=b"0123456789")
        large = await http.post("/large", content=b"0123456789A")
        await http.post("/unread", content=b"abc")
    # The app still gets the whole large body: recording only stopped copying it.
    assert json.loads(large.content)["body"] == "0123456789A"
    assert [(case["path"], case.get("body")) for case in lines(path)] == [("/small", "0123456789")]


async def test_a_body_the_redactor_cannot_read_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    async with client(path, rate=1.0, methods=frozenset({"POST"})) as http:
        await http.post("/upload", files={"file": ("a.bin", b"\x00\x01")})
        await http.post("/text", content=b"plain", headers={"Content-Type": "text/plain"})
    assert [case["path"] for case in lines(path)] == ["/text"]


async def test_recording_stops_at_the_bound_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "recorded.jsonl"
    path.write_text('{"method": "GET", "path": "/before"}\n')  # counted: it is in the file
    with caplog.at_level(logging.WARNING, logger="flask2fastapi"):
        async with client(path, rate=1.0, max_cases=3) as http:
            for number in range(5):
                await http.get(f"/{number}")
    assert [case["path"] for case in lines(path)] == ["/before", "/0", "/1"]
    [stopped] = [r.getMessage() for r in caplog.records if "recording stopped" in r.getMessage()]
    assert stopped == (
        f"recording stopped: {path} holds 3 cases, {path.stat().st_size} bytes "
        f"(at most 3 cases, {100 * 2**20} bytes)"
    )


async def test_a_byte_bound_keeps_the_file_under_it(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    async with client(path, rate=1.0, max_bytes=300) as http:
        for number in range(10):
            await http.get(f"/{number}")
    assert 0 < path.stat().st_size <= 300
    assert len(lines(path)) < 10


WORKER = """
import sys
from pathlib import Path
from bridge._shadow.traffic import CaseWriter, Capture, RecordOptions

writer = CaseWriter(
    RecordOptions(Path(sys.argv[1]), max_cases=int(sys.argv[2])),
    lambda capture: {"method": "GET", "path": capture.path, "name": "x" * 2000},
)
for number in range(200):
    writer.submit(Capture("GET", f"/{sys.argv[3]}/{number}", "", [], b""))
writer.close()
"""


def test_processes_appending_to_one_file_write_whole_lines_within_the_bound(
    tmp_path: Path,
) -> None:
    path = tmp_path / "recorded.jsonl"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), "150", str(worker)])
        for worker in range(3)
    ]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0, 0]
    cases = load_cases(path)  # every line whole: each parses as a case
    # Each process counts every line before it writes one; at worst each of the
    # others writes one between that count and its own write.
    assert 150 <= len(cases) <= 152
    assert all(case.name == "x" * 2000 for case in cases)


async def test_the_lifespan_shutdown_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    lifespan_done: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        else:
            await echo(scope, receive, send)

    recorder = recording(app, RecordOptions(path, rate=1.0), Redactor())
    transport = httpx.ASGITransport(app=recorder)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.get("/queued")
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        lifespan_done.append(message["type"])

    await recorder({"type": "lifespan"}, receive, send)
    assert lifespan_done == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [case["path"] for case in lines(path)] == ["/queued"]


@pytest.mark.parametrize(
    ("given", "cases", "size"),
    [("5000", 5000, 100 * 2**20), ("50MB", 10_000, 50 * 10**6), ("512KiB", 10_000, 2**19)],
)
def test_record_max_is_cases_or_a_size(given: str, cases: int, size: int) -> None:
    options = RecordOptions(Path("r.jsonl")).with_max(given)
    assert (options.max_cases, options.max_bytes) == (cases, size)
    assert RecordOptions.from_env(options.to_env()) == options


@pytest.mark.parametrize("given", ["0", "5 cases", "-3", "0MB"])
def test_a_bad_record_max_names_both_forms(given: str) -> None:
    with pytest.raises(ConfigurationError, match="a number of cases such as 5000 or a size"):
        RecordOptions(Path("r.jsonl")).with_max(given)


def test_an_unwritable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="give --record a writable file"):
        CaseWriter(RecordOptions(tmp_path / "no" / "such.jsonl"), lambda capture: None)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    import threading

    before = set(threading.enumerate())
    yield
    left = [t for t in set(threading.enumerate()) - before if t.name == "flask2fastapi-record"]
    assert not left, "a CaseWriter thread was left running"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--record-rate", "0.5"],
            "--record-rate does nothing without --record: add --record FILE",
        ),
        (["--record-methods", "POST"], "--record-methods does nothing without --record"),
        (["--record", "r.jsonl", "--record-rate", "0"], "--record-rate must be above 0"),
        (["--record", "r.jsonl", "--record-max", "lots"], "--record-max must be a number of"),
        (
            ["--record", "r.jsonl", "--record-methods", "GET,FETCH"],
            "--record-methods takes methods such as GET,HEAD, got 'GET,FETCH'",
        ),
    ],
)
def test_serve_refuses_recording_options_that_do_nothing_or_make_no_sense(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"flask2fastapi: error: {message}")
    assert result.stderr.count("\n") == 1
