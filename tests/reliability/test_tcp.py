"""The hybrid over real TCP, as hostile clients and a failing database would use it.

Each test drives a legacy route and a ported route of the demo through
``python -m bridge serve`` (see :mod:`tests.reliability.server`) and checks
what must stay true: aborted requests leave no connection, transaction or
thread behind; an exhausted pool is a 503, never a 200 cut short; a write
refused at COMMIT is never a 2xx; orders from both sides never oversell; a
request pipelined behind a 500 is answered.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx
import pytest
from sqlalchemy import text

from shop.errors import POOL_TIMEOUT_MESSAGE
from tests.reliability.server import (
    POOL_SIZE,
    WSGI_THREADS,
    Server,
    connect,
)

pytestmark = pytest.mark.reliability

LEGACY_EXPORT = "/api/products/export.csv"
ASYNC_EXPORT = "/test/async/products/export.csv"  # the port of the same view
LEGACY_ORDERS = "/test/legacy/orders"  # the legacy view of the port at /api/orders
ASYNC_ORDERS = "/api/orders"
ORDERS = {"legacy": LEGACY_ORDERS, "async": ASYNC_ORDERS}

ABORTS_PER_KIND = 50
ABORT_SECONDS = 90  # the abort loop stops there, whatever it has done
BUSY = {"error": {"code": 503, "name": "Service Unavailable", "message": POOL_TIMEOUT_MESSAGE}}


def order(product_id: int, quantity: int = 1) -> dict[str, Any]:
    return {"items": [{"product_id": product_id, "quantity": quantity}]}


def unique_sku() -> str:
    return f"REL-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ raw HTTP


def raw_request(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_request(path: str, data: Any, cookie: str) -> bytes:
    headers = {"Content-Type": "application/json", "Cookie": f"session={cookie}"}
    return raw_request("POST", path, body=json.dumps(data).encode(), headers=headers)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(reader: BinaryIO) -> RawResponse:
    """One HTTP/1.1 response from *reader*, leaving the next one in it."""
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection instead of answering")
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = _read_chunked(reader)
    else:
        body = reader.read()
    return RawResponse(int(status_line.split()[1]), headers, body)


def _read_chunked(reader: BinaryIO) -> bytes:
    chunks = []
    while size := int(reader.readline().split(b";")[0], 16):
        chunks.append(reader.read(size))
        reader.readline()
    reader.readline()  # the blank line after the last chunk
    return b"".join(chunks)


@dataclass(frozen=True)
class Abort:
    """A request a client sends and leaves: after *read* bytes of the answer, by RST
    when *reset*."""

    request: bytes
    read: int = 0
    reset: bool = False


def abort(server: Server, request: bytes, *, read: int = 0, reset: bool = False) -> None:
    """Send *request*, read *read* bytes of the answer, and leave: FIN, or RST with *reset*."""
    with connect(server) as sock:
        sock.sendall(request)
        received = 0
        while received < read and (data := sock.recv(read - received)):
            received += len(data)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ------------------------------------------------------------------ helpers


@contextmanager
def holding(server: Server, side: str, connections: int = POOL_SIZE) -> Iterator[None]:
    """Hold *connections* of *side*'s pool through a test route until the block ends."""
    client = server.client()
    url = f"/test/{side}/hold"
    with client.stream("GET", url, params={"connections": connections}) as response:
        assert response.status_code == 200, f"cannot hold the {side} pool: {response.read()!r}"
        lines = response.iter_lines()
        assert next(lines) == "held"
        try:
            yield
        finally:
            assert server.client().post(f"/test/{side}/release").status_code == 204
            assert list(lines) == ["released"]


def can_hold_the_whole_pool(server: Server, side: str, attempts: int = 5) -> bool:
    """Whether every connection of *side*'s pool can be checked out at once.

    A connection that leaked stays checked out forever; one still being given
    back by an aborted request is back within an attempt or two.
    """
    for _ in range(attempts):
        try:
            with holding(server, side):
                return True
        except AssertionError:
            continue
    return False


def assert_busy(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["retry-after"] == "1", what
    assert response.json() == BUSY, what


def concurrently(count: int, call: Any, *args: Any) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, *args))


# ------------------------------------------------------------------ tests


def test_the_export_is_the_same_bytes_on_both_sides(hybrid: Server) -> None:
    client = hybrid.client()
    legacy = client.get(LEGACY_EXPORT)
    ported = client.get(ASYNC_EXPORT)

    assert (legacy.headers["x-bridge-side"], ported.headers["x-bridge-side"]) == ("legacy", "async")
    assert legacy.status_code == ported.status_code == 200
    assert (
        legacy.headers["content-type"]
        == ported.headers["content-type"]
        == "text/csv; charset=utf-8"
    )
    assert legacy.content == ported.content == hybrid.export()


def test_aborted_requests_leave_no_connection_transaction_or_thread_behind(hybrid: Server) -> None:
    cookie = hybrid.logged_in().cookies["session"]
    partial_order = json_request(ASYNC_ORDERS, order(1), cookie)[:-5]  # the body stops short
    kinds = {
        "legacy": [
            Abort(raw_request("GET", LEGACY_EXPORT), read=1024),
            Abort(raw_request("GET", LEGACY_EXPORT), read=1024, reset=True),
            Abort(raw_request("GET", LEGACY_EXPORT)),
            Abort(partial_order.replace(ASYNC_ORDERS.encode(), LEGACY_ORDERS.encode(), 1)),
        ],
        "async": [
            Abort(raw_request("GET", ASYNC_EXPORT), read=1024),
            Abort(raw_request("GET", ASYNC_EXPORT), read=1024, reset=True),
            Abort(raw_request("GET", "/api/products?per_page=50")),
            Abort(partial_order),
        ],
    }
    deadline = time.monotonic() + ABORT_SECONDS
    aborted = 0
    for _ in range(ABORTS_PER_KIND):
        for kind in itertools.chain(*kinds.values()):
            abort(hybrid, kind.request, read=kind.read, reset=kind.reset)
            aborted += 1
        if time.monotonic() > deadline:
            break
    assert aborted >= len(kinds["legacy"]) * 2  # both sides, at least once

    states = hybrid.settle()
    assert states.get("idle in transaction", 0) == 0, states
    assert sum(states.values()) <= 2 * POOL_SIZE, states  # both pools, no more
    assert can_hold_the_whole_pool(hybrid, "legacy"), hybrid.log_tail()
    assert can_hold_the_whole_pool(hybrid, "async"), hybrid.log_tail()

    # Every legacy thread is free: WSGI_THREADS requests meet at a barrier.
    client = hybrid.client(limits=httpx.Limits(max_connections=2 * WSGI_THREADS))
    barrier = f"/test/legacy/barrier?parties={WSGI_THREADS}"
    met = concurrently(WSGI_THREADS, lambda _: client.get(barrier).status_code, range(WSGI_THREADS))
    assert met == [200] * WSGI_THREADS
    listed = concurrently(16, lambda _: client.get("/api/products").status_code, range(16))
    assert listed == [200] * 16


def test_an_exhausted_pool_is_a_503_with_retry_after_on_both_sides(hybrid: Server) -> None:
    # Anonymous reads: a logged-in request meets the busy pool loading its user,
    # before the view; the export must meet it in the view, not after the status.
    anonymous, customer = hybrid.client(), hybrid.logged_in()
    with holding(hybrid, "legacy"):
        assert_busy(anonymous.get(LEGACY_EXPORT), "the legacy export")
        assert_busy(customer.post(LEGACY_ORDERS, json=order(1)), "a legacy write")
        assert anonymous.get("/api/products").status_code == 200  # the other side's own pool
    with holding(hybrid, "async"):
        assert_busy(anonymous.get(ASYNC_EXPORT), "the ported export")
        assert_busy(anonymous.get("/api/products"), "a ported read")
        assert_busy(customer.post(ASYNC_ORDERS, json=order(1)), "a ported write")
        assert anonymous.get(LEGACY_EXPORT).content == hybrid.export()


def test_concurrent_exports_are_whole_or_503_never_cut_short(hybrid: Server) -> None:
    expected = hybrid.export()
    per_side = 4 * POOL_SIZE
    client = hybrid.client(limits=httpx.Limits(max_connections=2 * per_side))

    def export(path: str) -> str:
        try:
            response = client.get(path)
        except httpx.TransportError as exc:
            return f"{path}: cut short ({exc!r})"
        if response.status_code == 503 and response.json() == BUSY:
            return "503"
        if response.status_code == 200 and response.content == expected:
            return "whole"
        return f"{path}: {response.status_code}, {len(response.content)} of {len(expected)} bytes"

    outcomes = concurrently(2 * per_side, export, [LEGACY_EXPORT, ASYNC_EXPORT] * per_side)
    assert {outcome for outcome in outcomes} <= {"whole", "503"}, outcomes
    assert "whole" in outcomes


@contextmanager
def refused_at_commit(server: Server, product_id: int) -> Iterator[None]:
    """Make every transaction that updates the product fail at COMMIT, not before."""
    if server.on_postgres:
        setup = [
            "CREATE FUNCTION reliability_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused at commit by the reliability suite'; END $$",
            "CREATE CONSTRAINT TRIGGER reliability_refuse AFTER UPDATE ON products"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            f" WHEN (NEW.id = {product_id}) EXECUTE FUNCTION reliability_refuse()",
        ]
        teardown = [
            "DROP TRIGGER reliability_refuse ON products",
            "DROP FUNCTION reliability_refuse()",
        ]
    else:  # SQLite checks a deferred foreign key at COMMIT
        setup = [
            "CREATE TABLE reliability_parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE reliability_child (parent_id INTEGER"
            " REFERENCES reliability_parent (id) DEFERRABLE INITIALLY DEFERRED)",
            f"CREATE TRIGGER reliability_refuse AFTER UPDATE ON products WHEN NEW.id = {product_id}"
            " BEGIN INSERT INTO reliability_child VALUES (-1); END",
        ]
        teardown = [
            "DROP TRIGGER reliability_refuse",
            "DROP TABLE reliability_child",
            "DROP TABLE reliability_parent",
        ]
    with server.engine.begin() as connection:
        for statement in setup:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with server.engine.begin() as connection:
            for statement in teardown:
                connection.execute(text(statement))


def test_a_write_refused_at_commit_is_never_a_2xx(hybrid: Server) -> None:
    product = hybrid.add_product(stock=5, sku=unique_sku())
    cookies = hybrid.logged_in().cookies

    def place(path: str) -> httpx.Response:
        # A connection each: until the envelope stops re-raising, a port's 500
        # closes its connection (see the pipelining test).
        return hybrid.client(cookies=cookies).post(path, json=order(product))

    with refused_at_commit(hybrid, product):
        refused = {side: place(path) for side, path in ORDERS.items()}
    accepted = place(ASYNC_ORDERS)  # the trigger was the reason

    for side, response in refused.items():
        assert response.headers["x-bridge-side"] == side
        assert response.status_code == 500, (side, response.status_code, response.text)
        assert response.json()["error"]["code"] == 500
    assert accepted.status_code == 201
    assert (hybrid.stock(product), hybrid.ordered(product)) == (4, 1)


def test_orders_from_both_sides_at_once_never_oversell(hybrid: Server) -> None:
    stock = 20
    product = hybrid.add_product(stock=stock, sku=unique_sku())
    cookies = hybrid.logged_in().cookies
    client = hybrid.client(cookies=cookies, limits=httpx.Limits(max_connections=16))
    paths = [LEGACY_ORDERS, ASYNC_ORDERS] * (2 * stock)

    def place(path: str) -> tuple[str, int]:
        response = client.post(path, json=order(product))
        return response.headers["x-bridge-side"], response.status_code

    answers = concurrently(16, place, paths)

    placed = sum(status == 201 for _side, status in answers)
    assert {status for _side, status in answers} <= {201, 409, 503}, answers
    assert {side for side, status in answers if status == 201} == {"legacy", "async"}, answers
    assert hybrid.ordered(product) == placed == stock - hybrid.stock(product)
    assert hybrid.stock(product) >= 0


@pytest.mark.parametrize("side", ["legacy", "async"])
def test_a_write_pipelined_behind_a_500_is_answered_and_applied_once(
    hybrid: Server, side: str
) -> None:
    product = hybrid.add_product(stock=5, sku=unique_sku())
    cookie = hybrid.logged_in().cookies["session"]
    failing = raw_request("GET", f"/test/{side}/raise")
    write = json_request(ASYNC_ORDERS, order(product), cookie)

    with connect(hybrid) as sock, sock.makefile("rb") as reader:
        sock.sendall(failing + write)  # both at once, on one connection
        first = read_response(reader)
        second = read_response(reader)

    assert (first.status, first.headers["x-bridge-side"]) == (500, side)
    assert first.json()["error"]["code"] == 500
    assert second.status == 201, second.body
    assert (hybrid.stock(product), hybrid.ordered(product)) == (4, 1)
