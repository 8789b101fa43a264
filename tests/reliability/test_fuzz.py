"""Bounded fuzzing of every route of the demo, on both sides of the hybrid.

Hypothesis builds hostile requests per route: path segments (huge, negative,
not numbers, NUL, bytes that are not UTF-8), query values, JSON bodies (the
route's own shape with bad values, any JSON, deep nesting, bytes that are
not JSON), content types and cookies (sessions signed with the app's key that
hold anything, cookies that are not UTF-8, repeated Cookie headers). Each
request goes to the hybrid as migrated (ported routes async) and with every
route legacy. No answer may be a 5xx, and every 4xx must be in the shop's
envelope.

Runs are reproducible (``derandomize``) and bounded: :data:`EXAMPLES`
requests per route and side.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge._porting.sessions import FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, RouteState
from shop.seed import DEMO_PASSWORD

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

EXAMPLES = 100
"""Generated requests per route, each sent to both sides of the hybrid."""

BASE_URL = "http://localhost"
EMAILS = ("admin@example.com", "alice@example.com", "bob@example.com")

# ---------------------------------------------------------------- values

# Characters that break things: NUL, unpaired surrogates, URL and cookie
# separators, quotes, percent signs, LIKE wildcards.
NASTY = ["\x00", "\ud800", "\udfff", "%", "_", "'", '"', "\\", "/", ";", ",", "=", "\n", " "]
text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=20),
    st.integers(100, 12_000).map(lambda n: "a" * n),  # past every column length
)
integers = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
    st.integers(),
)
json_values = st.recursive(
    st.none() | st.booleans() | integers | st.floats() | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
number_like = st.one_of(integers.map(str), text)


def pick(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(*strategies)


# ---------------------------------------------------------------- bodies

BODIES: dict[str, st.SearchStrategy[Any]] = {
    "login": st.fixed_dictionaries(
        {"email": pick(st.sampled_from(EMAILS), text, json_values)},
        optional={"password": pick(st.just(DEMO_PASSWORD), text, json_values)},
    ),
    "register": st.fixed_dictionaries(
        {
            "email": pick(st.just("new@example.com"), text, json_values),
            "name": pick(st.just("New"), text, json_values),
            "password": pick(st.just("long enough"), text, json_values),
        }
    ),
    "product": st.fixed_dictionaries(
        {},
        optional={
            "sku": pick(text, json_values),
            "name": pick(text, json_values),
            "category": pick(text, json_values),
            "price_cents": pick(integers, json_values),
            "stock": pick(integers, json_values),
            "description": pick(text, json_values),
            "extra": json_values,
        },
    ),
    "review": st.fixed_dictionaries(
        {"rating": pick(st.integers(0, 6), json_values)}, optional={"body": pick(text, json_values)}
    ),
    "order": st.fixed_dictionaries(
        {
            "items": pick(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "product_id": pick(st.integers(1, 6), integers, json_values),
                            "quantity": pick(st.integers(1, 3), integers, json_values),
                        }
                    ),
                    max_size=60,
                ),
                json_values,
            )
        }
    ),
}


def encoded(value: Any) -> bytes:
    # ensure_ascii writes surrogates as \ud800 escapes: valid bytes, hostile text.
    return json.dumps(value).encode()


def body_strategy(shape: str | None) -> st.SearchStrategy[bytes]:
    """The body of a request: the route's shape with bad values, or anything else."""
    other = [
        json_values.map(encoded),
        st.integers(1, 200_000).map(lambda n: b"[" * n),
        st.binary(max_size=50),
        st.just(b""),
    ]
    if shape is None:
        return st.one_of(st.just(b""), *other)
    return st.one_of(BODIES[shape].map(encoded), *other)


CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/problem+json",
     "text/plain", "application/x-www-form-urlencoded", "", None]
)  # fmt: skip

# ---------------------------------------------------------------- URLs


def segment(value: str) -> str:
    # surrogatepass: an unpaired surrogate becomes bytes that are not UTF-8.
    return quote(value, safe="", errors="surrogatepass")


path_ids = st.one_of(integers.map(str), text.filter(bool)).map(segment)
QUERY_NAMES = ["page", "per_page", "q", "category", "min_price", "max_price", "in_stock",
               "sort", "status", "other"]  # fmt: skip
query_values = st.one_of(
    number_like,
    st.sampled_from(["name", "-price", "newest", "true", "no", "placed", "shipped"]),
)
queries = st.lists(st.tuples(st.sampled_from(QUERY_NAMES), query_values), max_size=5).map(
    lambda pairs: "&".join(f"{segment(k)}={segment(v)}" for k, v in pairs)
)


@dataclasses.dataclass(frozen=True)
class Route:
    """A route of the demo: its method, its path with ``{}`` for a segment, its body shape."""

    method: str
    path: str
    body: str | None = None

    def paths(self) -> st.SearchStrategy[str]:
        if "{}" not in self.path:
            return st.just(self.path)
        return path_ids.map(lambda value: self.path.replace("{}", value))


ROUTES = [
    Route("POST", "/api/auth/register", "register"),
    Route("POST", "/api/auth/login", "login"),
    Route("POST", "/api/auth/logout"),
    Route("GET", "/api/auth/me"),
    Route("GET", "/api/products"),
    Route("GET", "/api/products/export.csv"),
    Route("GET", "/api/products/{}"),
    Route("GET", "/api/products/sku/{}"),
    Route("POST", "/api/products", "product"),
    Route("PATCH", "/api/products/{}", "product"),
    Route("DELETE", "/api/products/{}"),
    Route("GET", "/api/categories"),
    Route("GET", "/api/products/{}/reviews"),
    Route("POST", "/api/products/{}/reviews", "review"),
    Route("GET", "/api/orders"),
    Route("GET", "/api/orders/{}"),
    Route("POST", "/api/orders", "order"),
    Route("POST", "/api/orders/{}/cancel"),
    Route("GET", "/api/health"),
]

# ---------------------------------------------------------------- cookies


def cookie_headers(cookie: FlaskSessionCookie) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """No cookie, a real login, a signed session holding anything, or junk cookies."""
    signed = st.one_of(
        st.sampled_from([1, 2, 3]).map(lambda user_id: {"user_id": user_id}),
        json_values.map(lambda user_id: {"user_id": user_id}),
        st.dictionaries(text, json_values, max_size=3),
    ).map(lambda data: b"session=" + cookie.dump(data).encode())
    junk = st.one_of(
        st.binary(max_size=40).map(lambda raw: b"session=" + raw),
        st.binary(max_size=40),
    )
    one = st.one_of(signed, junk)
    return st.one_of(
        st.just([]),
        one.map(lambda value: [(b"cookie", value)]),
        st.tuples(one, one).map(lambda pair: [(b"cookie", pair[0]), (b"cookie", pair[1])]),
    )


# ---------------------------------------------------------------- the run


def all_legacy(manifest: Manifest) -> Manifest:
    routes = {key: RouteState.LEGACY for key in manifest.routes}
    return dataclasses.replace(manifest, routes=routes)


@pytest.fixture
async def sides(
    legacy_app: Flask, fastapi_app: FastAPI, manifest: Manifest
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients of the hybrid as migrated and with every route legacy."""
    hybrids = [
        HybridApp(legacy_app, fastapi_app, manifest),
        HybridApp(legacy_app, fastapi_app, all_legacy(manifest)),
    ]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=hybrid, raise_app_exceptions=False),
            base_url=BASE_URL,
        )
        for hybrid in hybrids
    ]
    yield clients
    for client in clients:
        await client.aclose()
    for hybrid in hybrids:
        hybrid.legacy.shutdown()


def check(response: httpx.Response, request: str) -> None:
    """No 5xx; a 4xx in the envelope, naming its own status."""
    assert response.status_code < 500, f"{request} -> {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "name", "message"}, request
        assert error["code"] == response.status_code, request
        assert isinstance(error["name"], str) and isinstance(error["message"], str), request


# A failing example holds long strings; printing it is worth the warning.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
async def test_no_route_answers_5xx_or_leaves_the_envelope(
    route: Route, sides: list[httpx.AsyncClient], session_cookie: FlaskSessionCookie
) -> None:
    sent: list[str] = []

    def send(path: str, query: str, body: bytes, content_type: str | None, cookies: Any) -> None:
        url = f"{path}?{query}" if query else path
        headers = list(cookies)
        if content_type is not None:
            headers.append((b"content-type", content_type.encode()))
        described = f"{route.method} {url[:200]} body={body[:200]!r} headers={headers}"
        for client in sides:
            request = client.build_request(route.method, url, content=body, headers=headers)
            response = anyio.from_thread.run(client.send, request)
            check(response, described)
            sent.append(described)

    fuzz: Callable[[], None] = settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(
        given(
            path=route.paths(),
            query=queries,
            body=body_strategy(route.body),
            content_type=CONTENT_TYPES,
            cookies=cookie_headers(session_cookie),
        )(send)
    )
    await anyio.to_thread.run_sync(fuzz)

    assert len(sent) >= EXAMPLES  # both sides, for every example hypothesis kept
