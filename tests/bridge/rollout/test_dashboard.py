"""The dashboard's pages, login and forms, on the suite's database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bridge._rollout.dashboard import COOKIE, Dashboard
from bridge._rollout.store import Counts, Latencies, Mismatch, RolloutStore
from bridge._serving.manifest import RouteKey, RouteState, parse_manifest
from bridge._serving.routing import FlaskRoute

TOKEN = "s3cret-admin-token"
LIST = RouteKey("GET", "/api/products")
ONE = RouteKey("GET", "/api/products/<int:product_id>")
ORDERS = RouteKey("POST", "/api/orders")

MANIFEST = parse_manifest(
    """
[routes]
"GET /api/products" = "async"
"GET /api/products/<int:product_id>" = "shadow"
"POST /api/orders" = "legacy"

[rollout]
promote_min_compared = 10
"""
)

ROUTES = [
    FlaskRoute("GET", LIST.rule, "catalog.list_products", RouteState.ASYNC, ported=True),
    FlaskRoute("GET", ONE.rule, "catalog.get_product", RouteState.SHADOW, ported=True),
    FlaskRoute("POST", ORDERS.rule, "orders.create_order", RouteState.LEGACY, ported=False),
]


@pytest.fixture
async def client(store: RolloutStore) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = Dashboard(
        token=TOKEN,
        path="/_bridge/",
        store=lambda: store,
        manifest=lambda: MANIFEST,
        routes=lambda: ROUTES,
    )
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _log_in(client: httpx.AsyncClient) -> str:
    response = await client.post("/_bridge/login", data={"token": TOKEN})
    assert response.status_code == 303
    page = await client.get("/_bridge/")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found
    return found.group(1)


pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_bridge/"),
        ("GET", "/_bridge/data.json"),
        ("GET", f"/_bridge/route?key={LIST}"),
        ("POST", "/_bridge/action"),
        ("POST", "/_bridge/logout"),
    ],
)
async def test_without_the_token_every_page_and_data_url_is_401(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "catalog.list_products" not in response.text + wrong.text


async def test_the_bearer_token_opens_the_data(client: httpx.AsyncClient) -> None:
    response = await client.get("/_bridge/data.json", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.json()["routes"] == 3


async def test_logging_in_sets_a_strict_http_only_cookie(client: httpx.AsyncClient) -> None:
    wrong = await client.post("/_bridge/login", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "That is not the admin token." in wrong.text
    assert COOKIE not in wrong.cookies

    response = await client.post("/_bridge/login", data={"token": TOKEN})

    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/_bridge/" in cookie
    assert response.headers["location"] == "/_bridge/"


async def test_a_forged_cookie_is_refused(client: httpx.AsyncClient) -> None:
    client.cookies.set(COOKIE, "eyJub25jZSI6MX0.forged.signature")

    assert (await client.get("/_bridge/")).status_code == 401


async def test_the_top_line_and_rows_show_the_stores_counts(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    store.add_counts(
        {
            LIST: Counts(served_async=30, errors_async=3),
            ONE: Counts(served_legacy=10, compared=8, same=6, different=2),
        }
    )
    latencies = Latencies()
    for _ in range(9):
        latencies.observe("async", 0.004)
    latencies.observe("async", 0.3)
    store.add_latencies({LIST: latencies})
    store.demote(ONE, reason="mismatch rate 25% over 300 s")
    await _log_in(client)

    page = (await client.get("/_bridge/")).text
    data = (await client.get("/_bridge/data.json")).json()

    assert re.search(r'id="ported"><b>1 / 3</b>', page)
    assert re.search(r'id="async-share"><b>75.0%</b>', page)
    assert re.search(r'id="demoted"><b class="bad">1</b>', page)
    assert (data["ported"], data["async_share"], data["demoted"]) == (1, 0.75, 1)
    rows = {f"{row['method']} {row['rule']}": row for row in data["rows"]}
    listing = rows[str(LIST)]
    assert listing["last_hour"]["served"] == {"legacy": 0, "async": 30}
    assert listing["last_hour"]["p50"]["async"] == 0.005
    assert listing["last_hour"]["p95"]["async"] == 0.5
    one = rows[str(ONE)]
    assert (one["state"], one["effective_state"]) == ("shadow", "legacy")
    assert one["shadow"] == {"compared": 8, "same": 6, "different": 2, "skipped": 0}
    assert one["demoted"]["reason"] == "mismatch rate 25% over 300 s"
    assert "mismatch rate 25% over 300 s" in page
    assert "75.00%" in page  # the match rate


async def test_rows_filter_by_state_and_sort(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    store.add_counts({ORDERS: Counts(served_legacy=5), LIST: Counts(served_async=1)})
    await _log_in(client)

    legacy = (await client.get("/_bridge/?state=legacy")).text
    by_requests = (await client.get("/_bridge/?sort=legacy&order=desc")).text

    assert re.findall(r'<tr data-route="([^"]+)"', legacy) == [str(ORDERS)]
    assert re.findall(r'<tr data-route="([^"]+)"', by_requests)[0] == str(ORDERS)


async def test_html_in_recorded_requests_is_escaped(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    store.add_mismatch(
        Mismatch(
            route=ONE,
            at=datetime.now(UTC),
            request={"method": "GET", "path": "/api/products/<script>alert(1)</script>"},
            legacy={"status": 200, "headers": [], "body": "<img src=x onerror=alert(2)>"},
            port={"status": 404, "headers": [], "body": ""},
            diff="status: 200 vs 404 </pre><script>alert(3)</script>",
        )
    )
    await _log_in(client)

    page = (await client.get("/_bridge/route", params={"key": str(ONE)})).text

    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "status: 200 vs 404 &lt;/pre&gt;&lt;script&gt;alert(3)" in page


async def test_a_change_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    await _log_in(client)

    response = await client.post("/_bridge/action", data={"key": str(ONE), "action": "demote"})
    forged = await client.post(
        "/_bridge/action", data={"key": str(ONE), "action": "demote", "csrf": "0" * 64}
    )

    assert (response.status_code, forged.status_code) == (403, 403)
    assert store.overrides() == {}


async def test_promoting_below_the_bar_needs_forcing(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    store.add_counts({ONE: Counts(compared=10, same=9, different=1)})
    csrf = await _log_in(client)
    form = {"csrf": csrf, "key": str(ONE), "action": "promote", "state": "canary"}

    refused = await client.post("/_bridge/action", data={**form, "percent": "10"})
    assert refused.status_code == 303
    assert "error=" in refused.headers["location"]
    refusal = (await client.get(refused.headers["location"])).text
    assert "not promoted: match rate 90% over 10 compared requests" in refusal
    assert store.overrides() == {}

    bad = await client.post("/_bridge/action", data={**form, "percent": "120", "force": "1"})
    assert "percent+must+be+a+number+above+0+to+100" in bad.headers["location"]

    forced = await client.post("/_bridge/action", data={**form, "percent": "10", "force": "1"})
    assert forced.status_code == 303
    override = store.overrides()[ONE]
    assert (override.state, override.percent, override.actor) == (
        RouteState.CANARY,
        10,
        "dashboard",
    )
    page = (await client.get(forced.headers["location"])).text
    assert "GET /api/products/&lt;int:product_id&gt;: shadow -&gt; canary 10%, by dashboard" in page


async def test_a_port_less_route_cannot_be_promoted(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    csrf = await _log_in(client)

    response = await client.post(
        "/_bridge/action",
        data={"csrf": csrf, "key": str(ORDERS), "action": "promote", "state": "shadow"},
    )

    assert "has+no+port" in response.headers["location"]
    assert store.overrides() == {}


async def test_demote_and_clear_from_the_page(
    client: httpx.AsyncClient, store: RolloutStore
) -> None:
    csrf = await _log_in(client)
    form = {"csrf": csrf, "key": str(LIST)}

    await client.post("/_bridge/action", data={**form, "action": "demote"})
    assert store.overrides()[LIST].demoted
    await client.post("/_bridge/action", data={**form, "action": "clear"})
    assert store.overrides() == {}
    assert [event.actor for event in store.events(LIST)] == ["dashboard", "dashboard"]


async def test_logging_out_ends_the_login(client: httpx.AsyncClient) -> None:
    csrf = await _log_in(client)

    response = await client.post("/_bridge/logout", data={"csrf": csrf})

    assert response.status_code == 303
    assert (await client.get("/_bridge/")).status_code == 401
