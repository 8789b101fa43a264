"""Requests to the demo shop, per route: valid and bad input, missing items,
anonymous and unauthorised users, and writes.

Every case runs against the legacy app, the hybrid server and, for ported
routes, the FastAPI app alone, each from the same freshly seeded database;
the answers and the rows left behind must be the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Seeded users, in insertion order (see shop.seed.USERS).
USER_IDS = {"admin@example.com": 1, "alice@example.com": 2, "bob@example.com": 3}


@dataclass(frozen=True)
class Case:
    route: str  # the manifest key: "METHOD /flask/rule"
    name: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # logged in as this seeded user
    session: dict[str, Any] | None = None  # or with this Flask session
    route_method: str | None = None  # another method than the route's

    @property
    def method(self) -> str:
        return self.route_method or self.route.split(" ", 1)[0]

    @property
    def session_data(self) -> dict[str, Any] | None:
        if self.user is not None:
            return {"user_id": USER_IDS[self.user]}
        return self.session

    @property
    def id(self) -> str:
        return f"{self.route} | {self.name}"


def _cases(route: str, *specs: tuple[str, dict[str, Any]]) -> list[Case]:
    path = route.split(" ", 1)[1]
    return [Case(route=route, name=name, **{"path": path, **spec}) for name, spec in specs]


ORDER = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 8, "quantity": 1}]}

CASES: list[Case] = [
    # ------------------------------------------------------------ auth
    *_cases(
        "POST /api/auth/register",
        (
            "new user",
            {"json": {"email": "Carol@Example.com", "name": "Carol", "password": "longenough"}},
        ),
        (
            "email taken",
            {"json": {"email": "alice@example.com", "name": "A", "password": "longenough"}},
        ),
        ("short password", {"json": {"email": "c@example.com", "name": "C", "password": "short"}}),
        (
            "not json",
            {
                "content": b"email=x",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
        ),
    ),
    *_cases(
        "POST /api/auth/login",
        ("good credentials", {"json": {"email": "alice@example.com", "password": "password123"}}),
        ("wrong password", {"json": {"email": "alice@example.com", "password": "nope"}}),
        ("unknown user", {"json": {"email": "zed@example.com", "password": "password123"}}),
        ("missing fields", {"json": {"email": "alice@example.com"}}),
        ("malformed json", {"content": b"{", "headers": {"Content-Type": "application/json"}}),
        ("wrong content type", {"content": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("json array", {"json": ["alice@example.com"]}),
        (
            "relogin replaces session",
            {
                "json": {"email": "bob@example.com", "password": "password123"},
                "user": "alice@example.com",
            },
        ),
    ),
    *_cases(
        "POST /api/auth/logout",
        ("logged in", {"user": "alice@example.com"}),
        ("anonymous", {}),
        ("with a body", {"json": {"ignored": True}, "user": "bob@example.com"}),
        ("admin", {"user": "admin@example.com"}),
        (
            "form body",
            {"content": b"a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        ),
    ),
    *_cases(
        "GET /api/auth/me",
        ("alice", {"user": "alice@example.com"}),
        ("admin", {"user": "admin@example.com"}),
        ("anonymous", {}),
        ("forged cookie", {"headers": {"Cookie": "session=eyJ1c2VyX2lkIjoxfQ.forged.signature"}}),
        ("deleted user id", {"session": {"user_id": 999}}),
    ),
    # ------------------------------------------------------------ catalog
    *_cases(
        "GET /api/products",
        ("first page", {}),
        ("category and sort", {"path": "/api/products?category=books&sort=-price"}),
        (
            "price range, in stock",
            {"path": "/api/products?min_price=1000&max_price=5000&in_stock=yes&sort=price"},
        ),
        ("out of stock only", {"path": "/api/products?in_stock=false"}),
        ("search", {"path": "/api/products?q=PYTHON"}),
        ("search with like characters", {"path": "/api/products?q=50%25_"}),
        ("page two of five", {"path": "/api/products?per_page=5&page=2"}),
        ("per_page clamped", {"path": "/api/products?per_page=500"}),
        ("page past the end", {"path": "/api/products?page=99"}),
        ("page zero", {"path": "/api/products?page=0"}),
        ("page not a number", {"path": "/api/products?page=two"}),
        ("unknown sort", {"path": "/api/products?sort=colour"}),
        ("bad filter values are ignored", {"path": "/api/products?min_price=cheap&in_stock=maybe"}),
        (
            "repeated argument takes the first",
            {"path": "/api/products?category=garden&category=books"},
        ),
        ("negative price", {"path": "/api/products?min_price=-5"}),
        ("trailing slash", {"path": "/api/products/"}),
    ),
    *_cases(
        "GET /api/products/export.csv",
        ("all", {}),
        ("filtered", {"path": "/api/products/export.csv?category=garden&sort=-price"}),
        ("unknown sort", {"path": "/api/products/export.csv?sort=colour"}),
    ),
    *_cases(
        "GET /api/products/<int:product_id>",
        ("exists", {"path": "/api/products/3"}),
        ("out of stock", {"path": "/api/products/4"}),
        ("missing", {"path": "/api/products/999"}),
        ("not an int", {"path": "/api/products/abc"}),
        ("negative", {"path": "/api/products/-1"}),
        ("huge id", {"path": "/api/products/99999999999"}),
        ("wrong method", {"path": "/api/products/3", "route_method": "PUT"}),
    ),
    *_cases(
        "GET /api/products/sku/<string:sku>",
        ("exists", {"path": "/api/products/sku/EL-002"}),
        ("missing", {"path": "/api/products/sku/XX-999"}),
        ("lower case", {"path": "/api/products/sku/el-002"}),
        ("encoded", {"path": "/api/products/sku/KT%2D001"}),
        ("with query", {"path": "/api/products/sku/GD-001?x=1"}),
    ),
    *_cases(
        "POST /api/products",
        (
            "admin creates",
            {
                "user": "admin@example.com",
                "json": {
                    "sku": "NEW-1",
                    "name": "New",
                    "category": "books",
                    "price_cents": 100,
                    "stock": 3,
                },
            },
        ),
        (
            "duplicate sku",
            {
                "user": "admin@example.com",
                "json": {
                    "sku": "BK-001",
                    "name": "Dup",
                    "category": "books",
                    "price_cents": 100,
                    "stock": 3,
                },
            },
        ),
        (
            "invalid price",
            {
                "user": "admin@example.com",
                "json": {
                    "sku": "NEW-2",
                    "name": "New",
                    "category": "books",
                    "price_cents": -1,
                    "stock": 3,
                },
            },
        ),
        (
            "not admin",
            {
                "user": "alice@example.com",
                "json": {
                    "sku": "NEW-3",
                    "name": "New",
                    "category": "books",
                    "price_cents": 100,
                    "stock": 3,
                },
            },
        ),
        (
            "anonymous",
            {
                "json": {
                    "sku": "NEW-4",
                    "name": "New",
                    "category": "books",
                    "price_cents": 100,
                    "stock": 3,
                }
            },
        ),
    ),
    *_cases(
        "PATCH /api/products/<int:product_id>",
        (
            "change price",
            {"path": "/api/products/2", "user": "admin@example.com", "json": {"price_cents": 1234}},
        ),
        (
            "unknown field",
            {"path": "/api/products/2", "user": "admin@example.com", "json": {"colour": "red"}},
        ),
        (
            "missing product",
            {"path": "/api/products/999", "user": "admin@example.com", "json": {"stock": 1}},
        ),
        (
            "sku taken",
            {"path": "/api/products/2", "user": "admin@example.com", "json": {"sku": "BK-001"}},
        ),
        ("not admin", {"path": "/api/products/2", "user": "bob@example.com", "json": {"stock": 1}}),
    ),
    *_cases(
        "DELETE /api/products/<int:product_id>",
        ("never ordered, with reviews", {"path": "/api/products/21", "user": "admin@example.com"}),
        ("ordered", {"path": "/api/products/1", "user": "admin@example.com"}),
        ("missing", {"path": "/api/products/999", "user": "admin@example.com"}),
        ("anonymous", {"path": "/api/products/3"}),
    ),
    *_cases(
        "GET /api/categories",
        ("all", {}),
        ("logged in", {"user": "alice@example.com"}),
        ("query ignored", {"path": "/api/categories?sort=x"}),
        ("trailing slash", {"path": "/api/categories/"}),
        ("HEAD", {"route_method": "HEAD"}),
    ),
    *_cases(
        "GET /api/products/<int:product_id>/reviews",
        ("two reviews", {"path": "/api/products/1/reviews"}),
        ("none", {"path": "/api/products/5/reviews"}),
        ("missing product", {"path": "/api/products/999/reviews"}),
        ("second page is past the end", {"path": "/api/products/1/reviews?page=2"}),
        ("one per page", {"path": "/api/products/1/reviews?per_page=1&page=2"}),
    ),
    *_cases(
        "POST /api/products/<int:product_id>/reviews",
        (
            "new review",
            {
                "path": "/api/products/3/reviews",
                "user": "bob@example.com",
                "json": {"rating": 4, "body": "Solid."},
            },
        ),
        (
            "second review",
            {"path": "/api/products/1/reviews", "user": "alice@example.com", "json": {"rating": 1}},
        ),
        (
            "rating out of range",
            {"path": "/api/products/3/reviews", "user": "bob@example.com", "json": {"rating": 6}},
        ),
        (
            "rating is a bool",
            {
                "path": "/api/products/3/reviews",
                "user": "bob@example.com",
                "json": {"rating": True},
            },
        ),
        (
            "missing product",
            {"path": "/api/products/999/reviews", "user": "bob@example.com", "json": {"rating": 4}},
        ),
        ("anonymous", {"path": "/api/products/3/reviews", "json": {"rating": 4}}),
        (
            "malformed json",
            {
                "path": "/api/products/3/reviews",
                "user": "bob@example.com",
                "content": b"{",
                "headers": {"Content-Type": "application/json"},
            },
        ),
    ),
    # ------------------------------------------------------------ orders
    *_cases(
        "GET /api/orders",
        ("own orders", {"user": "alice@example.com"}),
        ("admin sees all", {"user": "admin@example.com"}),
        ("status filter", {"path": "/api/orders?status=placed", "user": "alice@example.com"}),
        ("bad status", {"path": "/api/orders?status=lost", "user": "alice@example.com"}),
        ("anonymous", {}),
        ("page past the end", {"path": "/api/orders?page=3", "user": "bob@example.com"}),
    ),
    *_cases(
        "GET /api/orders/<int:order_id>",
        ("own order", {"path": "/api/orders/1", "user": "alice@example.com"}),
        ("someone else's", {"path": "/api/orders/3", "user": "alice@example.com"}),
        ("admin", {"path": "/api/orders/3", "user": "admin@example.com"}),
        ("missing", {"path": "/api/orders/999", "user": "alice@example.com"}),
        ("anonymous", {"path": "/api/orders/1"}),
    ),
    *_cases(
        "POST /api/orders",
        ("places an order", {"user": "alice@example.com", "json": ORDER}),
        (
            "same product twice is merged",
            {
                "user": "bob@example.com",
                "json": {
                    "items": [{"product_id": 2, "quantity": 3}, {"product_id": 2, "quantity": 4}]
                },
            },
        ),
        (
            "out of stock writes nothing",
            {
                "user": "alice@example.com",
                "json": {
                    "items": [{"product_id": 1, "quantity": 1}, {"product_id": 4, "quantity": 1}]
                },
            },
        ),
        (
            "more than in stock",
            {"user": "alice@example.com", "json": {"items": [{"product_id": 25, "quantity": 2}]}},
        ),
        (
            "unknown product",
            {"user": "alice@example.com", "json": {"items": [{"product_id": 999, "quantity": 1}]}},
        ),
        ("empty items", {"user": "alice@example.com", "json": {"items": []}}),
        (
            "zero quantity",
            {"user": "alice@example.com", "json": {"items": [{"product_id": 1, "quantity": 0}]}},
        ),
        ("anonymous", {"json": ORDER}),
        (
            "wrong content type",
            {
                "user": "alice@example.com",
                "content": b"items",
                "headers": {"Content-Type": "text/plain"},
            },
        ),
    ),
    *_cases(
        "POST /api/orders/<int:order_id>/cancel",
        ("cancel own", {"path": "/api/orders/2/cancel", "user": "alice@example.com"}),
        ("already cancelled", {"path": "/api/orders/3/cancel", "user": "bob@example.com"}),
        ("shipped", {"path": "/api/orders/1/cancel", "user": "alice@example.com"}),
        ("someone else's", {"path": "/api/orders/2/cancel", "user": "bob@example.com"}),
        ("anonymous", {"path": "/api/orders/2/cancel"}),
    ),
    *_cases(
        "GET /api/health",
        ("up", {}),
        ("wrong method", {"route_method": "POST"}),
    ),
    # ------------------------------------------------------------ no route at all
    *_cases(
        "GET /nowhere",
        ("unknown URL", {}),
        ("unknown API URL", {"path": "/api/nothing/here"}),
    ),
]
