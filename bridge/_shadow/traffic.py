"""Cases from real traffic: a sample of live requests, redacted, written as shadow cases.

``flask2fastapi serve --record FILE`` wraps the hybrid in a :class:`TrafficRecorder`.
It picks requests at the sampling rate, safe methods only unless told
otherwise, and passes each on untouched: it reads the request body as the app
reads it, and never sees the response. What it picked is turned into a case
line and appended to the file by a :class:`CaseWriter` in a thread of its own,
so the event loop does no file I/O and no redaction. ``flask2fastapi shadow
FILE`` replays the file.

Before anything is written, the manifest's redactor replaces secrets and
personal data in headers (``Authorization``, ``Cookie``...), the query string
and the body; a header whose value it redacted is left out of the replay.
Headers that say where the request came from (``X-Forwarded-For``,
``Forwarded``...) and those that belong to the connection (``Host``,
``Content-Length``...) are not recorded at all. A recorded case is therefore
anonymous: its cookies and tokens are gone.

Bounds: a request whose body is larger than ``max_body`` is not recorded (a
cut body would be another request), and the file stops growing at
``max_cases`` lines or ``max_bytes``. With several workers, each appends whole
lines with one ``O_APPEND`` write and counts what every process wrote before
writing, so the bounds hold across processes (give or take a line per worker).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, AnyStr

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge._exceptions import ConfigurationError
from bridge._shadow.cases import Case
from bridge._shadow.redact import REDACTED, Redactor

logger = logging.getLogger("flask2fastapi")

SAFE_METHODS = frozenset({"GET", "HEAD"})

# Environment variables that carry the options to the workers of `serve --workers N`.
RECORD_ENV = "FLASK2FASTAPI_RECORD"

# Not recorded: they belong to the connection or the proxy, or say who the client is.
UNRECORDED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
    }
)

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b|b)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


@dataclass(frozen=True)
class RecordOptions:
    """Where and how much ``serve`` records."""

    path: Path
    rate: float = 0.01
    methods: frozenset[str] = SAFE_METHODS
    max_cases: int = 10_000
    max_bytes: int = 100 * 2**20
    max_body: int = 64 * 2**10

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ConfigurationError(
                f"--record-rate must be above 0 and at most 1, got {self.rate:g}: "
                "0.01 records one request in a hundred"
            )

    def with_max(self, text: str) -> RecordOptions:
        """The options bounded by ``--record-max``: a number of cases (``5000``) or a
        size (``50MB``, ``512KiB``)."""
        if text.strip().isdigit() and int(text) > 0:
            return replace(self, max_cases=int(text))
        size = _SIZE.match(text)
        if size is None or int(size[1]) == 0:
            raise ConfigurationError(
                f"--record-max must be a number of cases such as 5000 or a size such as "
                f"50MB or 512KiB, got {text!r}"
            )
        return replace(self, max_bytes=int(size[1]) * _UNITS[size[2].lower()])

    def to_env(self) -> str:
        """The options as one environment value, for the workers of ``serve``."""
        return "\t".join(
            [
                str(self.path),
                repr(self.rate),
                ",".join(sorted(self.methods)),
                str(self.max_cases),
                str(self.max_bytes),
                str(self.max_body),
            ]
        )

    @classmethod
    def from_env(cls, value: str) -> RecordOptions:
        path, rate, methods, max_cases, max_bytes, max_body = value.split("\t")
        return cls(
            Path(path),
            float(rate),
            frozenset(methods.split(",")),
            int(max_cases),
            int(max_bytes),
            int(max_body),
        )


@dataclass
class Capture:
    """What the recorder kept of one request, before redaction."""

    method: str
    path: str  # as sent, percent-encoded
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def case_of(capture: Capture, redactor: Redactor) -> dict[str, Any] | None:
    """The case line of a captured request, redacted; ``None`` when it cannot be
    replayed as recorded (a body that is not text or JSON or a form, a method cases
    do not take)."""
    headers = [(n, v) for n, v in capture.headers if n.lower() not in UNRECORDED_HEADERS]
    headers = redactor.header_pairs(headers)
    content_type = next((v for n, v in headers if n.lower() == "content-type"), None)
    path = capture.path + (
        f"?{_kept(capture.query, redactor.query(capture.query))}" if capture.query else ""
    )
    case: dict[str, Any] = {"method": capture.method, "path": path}
    joined: dict[str, str] = {}
    for name, value in headers:  # repeated lines mean the same joined (RFC 9110 5.3)
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    if joined:
        case["headers"] = joined
    if capture.body:
        body = redactor.body(capture.body, content_type)
        if body.startswith(f"[{len(capture.body)} bytes of ".encode()):
            return None  # binary or multipart: the redactor kept a note of it, not the body
        case["body"] = _kept(capture.body, body).decode("utf-8")
    case["name"] = f"recorded {capture.at.isoformat(timespec='seconds').replace('+00:00', 'Z')}"
    try:
        Case.from_mapping(case)
    except ValueError:
        return None
    return case


def _kept(original: AnyStr, redacted: AnyStr) -> AnyStr:
    """The original when the redactor replaced nothing: it parses and writes JSON,
    forms and queries again, which would change their bytes for nothing."""
    text = redacted if isinstance(redacted, str) else redacted.decode("utf-8", "replace")
    return redacted if REDACTED in text else original


class CaseWriter:
    """Appends case lines to a file from a thread of its own, within bounds that hold
    for every process appending to the file.

    :meth:`submit` never blocks: when the thread falls behind by ``backlog``
    requests, more are dropped, as a sample may be.
    """

    def __init__(
        self,
        options: RecordOptions,
        encode: Callable[[Capture], dict[str, Any] | None],
        *,
        backlog: int = 1000,
    ) -> None:
        self.options = options
        self.encode = encode
        self.full = False
        self._queue: queue.Queue[Capture | None] = queue.Queue(backlog)
        try:
            # Read and write: the bytes other workers appended are counted.
            self._fd = os.open(options.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot record to {options.path} ({exc.strerror}): give --record a writable file"
            ) from exc
        self._counted = 0  # bytes of the file whose lines are counted in _cases
        self._cases = 0
        self._thread = threading.Thread(target=self._run, name="flask2fastapi-record", daemon=True)
        self._thread.start()

    def submit(self, capture: Capture) -> None:
        """Queue a request to be written (called on the event loop)."""
        # A sample may drop a request while the thread falls behind.
        with suppress(queue.Full):
            self._queue.put_nowait(capture)

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
            os.close(self._fd)

    def _run(self) -> None:
        while (capture := self._queue.get()) is not None:
            if self.full:
                continue
            try:
                case = self.encode(capture)
                if case is not None:
                    self._append((json.dumps(case, ensure_ascii=False) + "\n").encode())
            except Exception:  # a recording must never stop because of one request
                logger.exception("recording a request to %s failed", self.options.path)

    def _append(self, line: bytes) -> None:
        size = self._count_lines()
        if self._cases >= self.options.max_cases or size + len(line) > self.options.max_bytes:
            self.full = True
            logger.warning(
                "recording stopped: %s holds %d cases, %d bytes (at most %d cases, %d bytes)",
                self.options.path,
                self._cases,
                size,
                self.options.max_cases,
                self.options.max_bytes,
            )
            return
        os.write(self._fd, line)  # one write of a whole line: appends do not interleave

    def _count_lines(self) -> int:
        """The file's size, with the lines any process appended since last time counted."""
        size = os.fstat(self._fd).st_size
        while self._counted < size:
            chunk = os.pread(self._fd, min(size - self._counted, 2**20), self._counted)
            if not chunk:
                break
            self._cases += chunk.count(b"\n")
            self._counted += len(chunk)
        return size


class TrafficRecorder:
    """ASGI middleware that records a sample of requests as shadow cases.

    It changes nothing of what passes through: requests it does not pick go
    straight to the app, and for those it picks it only keeps a copy of the
    body chunks the app receives. At the app's lifespan shutdown the writer
    writes what is queued and closes the file.
    """

    def __init__(
        self,
        app: ASGIApp,
        writer: CaseWriter,
        *,
        pick: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.writer = writer
        self.options = writer.options
        self.pick = pick

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
        elif (
            scope["type"] != "http"
            or self.writer.full
            or scope["method"] not in self.options.methods
            or self.pick() >= self.options.rate
        ):
            await self.app(scope, receive, send)
        else:
            await self._record(scope, receive, send)

    async def _record(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
        chunks: list[bytes] = []
        size = 0
        # A request without a length or chunked encoding has no body to wait for.
        complete = not _has_body(headers)

        async def copying() -> Message:
            nonlocal size, complete
            message = await receive()
            if message["type"] == "http.request":
                body: bytes = message.get("body", b"")
                size += len(body)
                if size <= self.options.max_body:
                    chunks.append(body)
                complete = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, copying, send)
        finally:
            # A body the app did not read to its end, or too large, is not recorded.
            if complete and size <= self.options.max_body:
                raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
                self.writer.submit(
                    Capture(
                        method=scope["method"],
                        path=raw_path.decode("latin-1"),
                        query=scope.get("query_string", b"").decode("latin-1"),
                        headers=headers,
                        body=b"".join(chunks),
                    )
                )

    def _closing(self, send: Send) -> Send:
        async def closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await anyio.to_thread.run_sync(self.writer.close)
            await send(message)

        return closing


def _has_body(headers: Iterable[tuple[str, str]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == "transfer-encoding" or (lowered == "content-length" and value.strip("0 ")):
            return True
    return False


def recording(app: ASGIApp, options: RecordOptions, redactor: Redactor) -> TrafficRecorder:
    """*app* wrapped in a :class:`TrafficRecorder` writing to ``options.path``."""
    return TrafficRecorder(app, CaseWriter(options, lambda capture: case_of(capture, redactor)))


def recording_hybrid_from_env() -> TrafficRecorder:
    """The factory of ``serve --workers N --record``: each worker's hybrid, as
    ``bridge.hybrid_from_env`` builds it, recording."""
    from bridge._serving.hybrid import hybrid_from_env

    app = hybrid_from_env()
    options = RecordOptions.from_env(os.environ[RECORD_ENV])
    return recording(app, options, app.manifest.redactor)
