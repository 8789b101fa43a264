"""Small tables, error envelopes and ASGI helpers shared by the toolkit's tests.

Nothing here imports the demo apps: the toolkit must work on any Flask app, so
its tests build their own.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
from flask import Flask, jsonify
from sqlalchemy import Engine, String, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.types import Message, Receive, Scope
from werkzeug.exceptions import HTTPException

# A suffix unique to this test process, so that two runs against the same
# PostgreSQL database never create or drop each other's tables.
TABLE_SUFFIX = uuid.uuid4().hex[:8]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = f"bridge_item_{TABLE_SUFFIX}"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


def insert_items(engine: Engine, *names: str) -> None:
    """Commit one row of ``Item`` per name."""
    with engine.begin() as connection:
        connection.execute(insert(Item), [{"name": name} for name in names])


def error_body(code: int, name: str, message: str) -> dict[str, Any]:
    """The error envelope both sides of the test apps answer with."""
    return {"error": {"code": code, "name": name, "message": message}}


def install_flask_envelope(app: Flask) -> None:
    """Make *app* answer every HTTP error with :func:`error_body`, as a legacy app would."""

    @app.errorhandler(HTTPException)
    def envelope(error: HTTPException) -> Any:
        code = error.code or 500
        return jsonify(error_body(code, error.name, error.description or "")), code


def http_scope(
    method: str = "GET",
    path: str = "/",
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    root_path: str = "",
    query_string: bytes = b"",
) -> Scope:
    """An ASGI HTTP scope as a server would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": query_string,
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def receive_body(chunks: Sequence[bytes]) -> Receive:
    """A ``receive`` that sends *chunks* as one request body, then waits, as a server does."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks or [b""])
    ]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        # A client that stays: a server's receive waits until the client leaves.
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


class SentMessages:
    """A ``send`` that records what the app sends."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body_chunks(self) -> list[bytes]:
        return [m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(self.body_chunks)


def stop(process: subprocess.Popen[str]) -> str:
    """Terminate a server started for a test, kill it if it lingers; its stderr."""
    process.terminate()
    try:
        _stdout, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _stdout, stderr = process.communicate(timeout=10)
    return stderr
