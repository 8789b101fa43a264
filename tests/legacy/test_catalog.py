"""/api/products, /api/categories and reviews."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from flask.testing import FlaskClient
from werkzeug.exceptions import NotFound

from shop.seed import PRODUCTS

from .conftest import Login


class Seeded(NamedTuple):
    id: int
    sku: str
    name: str
    category: str
    price: int
    stock: int


# Seeded products get ids 1.. in the order of PRODUCTS.
SEEDED = [Seeded(index, *row) for index, row in enumerate(PRODUCTS, start=1)]
PRODUCT_1 = {
    "id": 1,
    "sku": "BK-001",
    "name": "Algorithms Illustrated",
    "description": "Algorithms Illustrated, from the books aisle.",
    "category": "books",
    "price_cents": 3499,
    "stock": 12,
    "created_at": "2024-01-01T09:00:00Z",
    "updated_at": "2024-01-01T09:00:00Z",
}
NEW_PRODUCT = {"sku": "TY-001", "name": "Yo-yo", "category": "toys", "price_cents": 350, "stock": 3}


def error(code: int, name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "name": name, "message": message}}


def bad_request(message: str) -> dict[str, Any]:
    return error(400, "Bad Request", message)


def ids(client: FlaskClient, url: str) -> list[int]:
    response = client.get(url)
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["items"]]  # type: ignore[index]


# ------------------------------------------------------------------ list


def test_list_first_page(client: FlaskClient) -> None:
    response = client.get("/api/products")
    body = response.json
    assert body is not None
    assert {key: value for key, value in body.items() if key != "items"} == {
        "page": 1,
        "per_page": 20,
        "total": 25,
        "pages": 2,
        "has_next": True,
        "has_prev": False,
    }
    assert body["items"][0] == PRODUCT_1
    assert len(body["items"]) == 20


def test_list_last_page(client: FlaskClient) -> None:
    body = client.get("/api/products?page=2").json
    assert body is not None
    assert (len(body["items"]), body["has_next"], body["has_prev"]) == (5, False, True)


@pytest.mark.parametrize(
    "query", ["page=3", "page=0", "page=-1", "page=two", "per_page=0", "per_page=many"]
)
def test_list_bad_page_is_a_404_envelope(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/products?{query}")
    assert response.status_code == 404
    assert response.json == error(404, "Not Found", NotFound.description)


def test_list_clamps_per_page_to_50(client: FlaskClient) -> None:
    body = client.get("/api/products?per_page=500").json
    assert body is not None
    assert (body["per_page"], body["pages"], len(body["items"])) == (50, 1, 25)


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("name", lambda p: (p.name, p.id), False),
        ("-name", lambda p: (p.name, p.id), True),
        ("price", lambda p: (p.price, p.id), False),
        ("-price", lambda p: (p.price, p.id), True),
        ("newest", lambda p: p.id, True),  # seeded one day apart, in id order
    ],
)
def test_list_sort_orders_with_id_tiebreak(
    client: FlaskClient, sort: str, key: Any, reverse: bool
) -> None:
    expected = [p.id for p in sorted(SEEDED, key=key, reverse=reverse)]
    assert ids(client, f"/api/products?per_page=50&sort={sort}") == expected


def test_list_price_ties_are_broken_by_id(client: FlaskClient) -> None:
    # Three products at 2999: ids 2, 5 and 23.
    assert ids(client, "/api/products?min_price=2999&max_price=2999&sort=price") == [2, 5, 23]
    assert ids(client, "/api/products?min_price=2999&max_price=2999&sort=-price") == [23, 5, 2]


def test_list_unknown_sort_is_a_400(client: FlaskClient) -> None:
    response = client.get("/api/products?sort=popular")
    assert response.status_code == 400
    assert response.json == bad_request("sort must be one of: name, -name, price, -price, newest")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("category=garden", [14, 15, 16, 17, 18, 19]),
        ("category=toys", []),
        ("category=", [p.id for p in sorted(SEEDED, key=lambda p: p.name)]),
        ("q=PYTHON", [4, 5]),
        ("q=web", [7, 13]),
        ("q=%25", []),  # a literal "%", not a LIKE wildcard
        ("q=_", []),
        ("min_price=5000", [21, 4, 9, 10, 17, 13]),
        ("max_price=999&sort=price", [15, 24]),
        ("min_price=2000&max_price=2500&sort=price", [25, 7, 12]),
        ("min_price=cheap&category=garden", [14, 15, 16, 17, 18, 19]),
        ("in_stock=false", [4]),
        ("in_stock=0&category=books", [4]),
        ("in_stock=yes&category=books", [1, 2, 3, 5, 6, 7]),
        ("in_stock=perhaps&category=books", [1, 2, 3, 4, 5, 6, 7]),
        ("category=kitchen&q=co&in_stock=true", [22]),
    ],
)
def test_list_filters(client: FlaskClient, query: str, expected: list[int]) -> None:
    assert ids(client, f"/api/products?per_page=50&{query}") == expected


def test_list_price_bound_too_large_is_a_400(client: FlaskClient) -> None:
    response = client.get("/api/products?max_price=99999999999")
    assert response.status_code == 400
    assert response.json == bad_request("max_price must be an integer from 0 to 2147483647")


# ------------------------------------------------------------------ one product


def test_get_product(client: FlaskClient) -> None:
    response = client.get("/api/products/1")
    assert (response.status_code, response.json) == (200, PRODUCT_1)


def test_get_unknown_product_is_a_404_naming_it(client: FlaskClient) -> None:
    response = client.get("/api/products/999")
    assert response.status_code == 404
    assert response.json == error(404, "Not Found", "product 999 does not exist")


def test_sku_redirects_to_the_product(client: FlaskClient) -> None:
    response = client.get("/api/products/sku/BK-002")
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/products/2"
    followed = client.get("/api/products/sku/BK-002", follow_redirects=True)
    assert followed.json is not None
    assert followed.json["sku"] == "BK-002"


def test_unknown_sku_is_a_404(client: FlaskClient) -> None:
    response = client.get("/api/products/sku/NOPE-1")
    assert response.status_code == 404
    assert response.json == error(404, "Not Found", "no product has sku NOPE-1")


# ------------------------------------------------------------------ writes (admin)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/api/products"),
        ("patch", "/api/products/1"),
        ("delete", "/api/products/1"),
    ],
)
def test_product_writes_need_an_admin(
    client: FlaskClient, login: Login, method: str, url: str
) -> None:
    response = client.open(url, method=method, json=NEW_PRODUCT)
    assert response.status_code == 401
    assert response.json == error(401, "Unauthorized", "log in to do this")
    login(client, "alice@example.com")
    response = client.open(url, method=method, json=NEW_PRODUCT)
    assert response.status_code == 403
    assert response.json == error(403, "Forbidden", "only an admin can do this")


def test_create_product(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    response = client.post("/api/products", json={**NEW_PRODUCT, "description": "Classic."})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/products/26"
    body = response.json
    assert body is not None
    assert {key: body[key] for key in (*NEW_PRODUCT, "id", "description")} == {
        **NEW_PRODUCT,
        "id": 26,
        "description": "Classic.",
    }
    assert body["created_at"] == body["updated_at"]
    assert client.get("/api/products/26").json == body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sku": ""}, "sku must be a non-empty string"),
        ({"sku": "X" * 33}, "sku must be at most 32 characters"),
        ({"category": None}, "category must be a non-empty string"),
        ({"price_cents": -1}, "price_cents must be a non-negative integer"),
        ({"price_cents": 9.5}, "price_cents must be a non-negative integer"),
        ({"stock": True}, "stock must be a non-negative integer"),
        ({"stock": 2**31}, "stock must be at most 2147483647"),
        ({"description": 5}, "description must be a string"),
    ],
)
def test_create_product_rejects_invalid_input(
    client: FlaskClient, login: Login, change: dict[str, Any], message: str
) -> None:
    login(client, "admin@example.com")
    response = client.post("/api/products", json={**NEW_PRODUCT, **change})
    assert (response.status_code, response.json) == (400, bad_request(message))


def test_create_product_with_a_taken_sku_is_a_409(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    response = client.post("/api/products", json={**NEW_PRODUCT, "sku": "BK-001"})
    assert response.status_code == 409
    assert response.json == error(409, "Conflict", "a product with sku BK-001 already exists")


def test_update_product(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    response = client.patch("/api/products/1", json={"price_cents": 3000, "stock": 0})
    assert response.status_code == 200
    body = response.json
    assert body is not None
    assert (body["price_cents"], body["stock"], body["name"]) == (3000, 0, PRODUCT_1["name"])
    assert body["updated_at"] > PRODUCT_1["updated_at"]
    assert body["created_at"] == PRODUCT_1["created_at"]
    assert client.get("/api/products/1").json == body


def test_update_product_may_keep_its_own_sku(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    response = client.patch("/api/products/1", json={"sku": "BK-001", "name": "Renamed"})
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["name"] == "Renamed"


@pytest.mark.parametrize(
    ("url", "body", "status", "expected"),
    [
        ("/api/products/1", {}, 400, bad_request(
            "body must set at least one of: sku, name, category, price_cents, stock, description"
        )),
        ("/api/products/1", {"price": 5, "colour": "red"}, 400, bad_request(
            "unknown field: colour, price"
        )),
        ("/api/products/1", {"stock": -3}, 400, bad_request(
            "stock must be a non-negative integer"
        )),
        ("/api/products/999", {"stock": 3}, 404, error(
            404, "Not Found", "product 999 does not exist"
        )),
        ("/api/products/1", {"sku": "BK-002"}, 409, error(
            409, "Conflict", "a product with sku BK-002 already exists"
        )),
    ],
)  # fmt: skip
def test_update_product_errors(
    client: FlaskClient, login: Login, url: str, body: Any, status: int, expected: Any
) -> None:
    login(client, "admin@example.com")
    response = client.patch(url, json=body)
    assert (response.status_code, response.json) == (status, expected)
    assert client.get("/api/products/1").json == PRODUCT_1


def test_delete_product_and_its_reviews(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    assert client.get("/api/products/21/reviews").json["total"] == 1  # type: ignore[index]
    response = client.delete("/api/products/21")
    assert (response.status_code, response.data) == (204, b"")
    assert client.get("/api/products/21").status_code == 404
    assert client.get("/api/products").json["total"] == 24  # type: ignore[index]


def test_delete_an_ordered_product_is_a_409(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    response = client.delete("/api/products/1")
    assert response.status_code == 409
    assert response.json == error(
        409, "Conflict", "product 1 has been ordered and cannot be deleted"
    )
    assert client.get("/api/products/1").status_code == 200


def test_delete_unknown_product_is_a_404(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    response = client.delete("/api/products/999")
    assert response.status_code == 404
    assert response.json == error(404, "Not Found", "product 999 does not exist")


# ------------------------------------------------------------------ categories


def test_categories_with_counts_by_name(client: FlaskClient, login: Login) -> None:
    response = client.get("/api/categories")
    assert response.json == {
        "items": [
            {"name": "books", "product_count": 7},
            {"name": "electronics", "product_count": 6},
            {"name": "garden", "product_count": 6},
            {"name": "kitchen", "product_count": 6},
        ]
    }
    login(client, "admin@example.com")
    client.post("/api/products", json={**NEW_PRODUCT, "category": "aardvarks"})
    items = client.get("/api/categories").json["items"]  # type: ignore[index]
    assert items[0] == {"name": "aardvarks", "product_count": 1}


# ------------------------------------------------------------------ reviews

BOB_ON_1 = {
    "id": 2,
    "product_id": 1,
    "user_id": 3,
    "author": "Bob Builder",
    "rating": 4,
    "body": "Good, if a little dense.",
    "created_at": "2024-02-05T10:00:00Z",
}


def test_reviews_newest_first_ties_by_id(client: FlaskClient) -> None:
    # Both reviews of product 1 have the same timestamp: the later id comes first.
    body = client.get("/api/products/1/reviews").json
    assert body is not None
    assert [review["id"] for review in body["items"]] == [2, 1]
    assert body["items"][0] == BOB_ON_1
    assert (body["total"], body["page"], body["pages"]) == (2, 1, 1)


def test_reviews_paginate(client: FlaskClient) -> None:
    body = client.get("/api/products/1/reviews?per_page=1&page=2").json
    assert body is not None
    assert [review["id"] for review in body["items"]] == [1]
    assert (body["pages"], body["has_next"], body["has_prev"]) == (2, False, True)
    assert client.get("/api/products/1/reviews?page=3").status_code == 404


def test_reviews_of_a_product_without_any(client: FlaskClient) -> None:
    body = client.get("/api/products/2/reviews").json
    assert body is not None
    assert (body["items"], body["total"], body["pages"]) == ([], 0, 0)


def test_reviews_of_unknown_product_is_a_404(client: FlaskClient) -> None:
    response = client.get("/api/products/999/reviews")
    assert response.json == error(404, "Not Found", "product 999 does not exist")


def test_create_review(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.post("/api/products/3/reviews", json={"rating": 5, "body": "Loved it."})
    assert response.status_code == 201
    body = response.json
    assert body is not None
    assert {key: value for key, value in body.items() if key != "created_at"} == {
        "id": 4,
        "product_id": 3,
        "user_id": 3,
        "author": "Bob Builder",
        "rating": 5,
        "body": "Loved it.",
    }
    listed = client.get("/api/products/3/reviews").json
    assert listed is not None
    assert listed["items"] == [body]


def test_create_review_needs_a_login(client: FlaskClient) -> None:
    response = client.post("/api/products/3/reviews", json={"rating": 5})
    assert response.json == error(401, "Unauthorized", "log in to do this")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "rating must be an integer from 1 to 5"),
        ({"rating": 0}, "rating must be an integer from 1 to 5"),
        ({"rating": 6}, "rating must be an integer from 1 to 5"),
        ({"rating": True}, "rating must be an integer from 1 to 5"),
        ({"rating": "5"}, "rating must be an integer from 1 to 5"),
        ({"rating": 5, "body": "x" * 2001}, "body must be at most 2000 characters"),
        ({"rating": 5, "body": ["x"]}, "body must be a string"),
    ],
)
def test_create_review_rejects_invalid_input(
    client: FlaskClient, login: Login, body: Any, message: str
) -> None:
    login(client, "bob@example.com")
    response = client.post("/api/products/3/reviews", json=body)
    assert (response.status_code, response.json) == (400, bad_request(message))


def test_create_review_of_unknown_product_is_a_404(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.post("/api/products/999/reviews", json={"rating": 5})
    assert response.json == error(404, "Not Found", "product 999 does not exist")


def test_a_second_review_is_a_409(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.post("/api/products/1/reviews", json={"rating": 1})
    assert response.status_code == 409
    assert response.json == error(409, "Conflict", "user 2 has already reviewed product 1")
    assert client.get("/api/products/1/reviews").json["total"] == 2  # type: ignore[index]


# ------------------------------------------------------------------ CSV export


def csv_line(*values: object) -> str:
    return ",".join(str(value) for value in values) + "\r\n"


def test_export_streams_every_product_as_csv(client: FlaskClient) -> None:
    response = client.get("/api/products/export.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == "attachment; filename=products.csv"
    lines = response.get_data(as_text=True).splitlines(keepends=True)
    assert lines[0] == csv_line("id", "sku", "name", "category", "price_cents", "stock")
    assert lines[1:] == [csv_line(*p) for p in sorted(SEEDED, key=lambda p: p.name)]


def test_export_takes_the_list_filters(client: FlaskClient) -> None:
    response = client.get("/api/products/export.csv?category=kitchen&sort=-price&max_price=3000")
    assert response.get_data(as_text=True) == (
        csv_line("id", "sku", "name", "category", "price_cents", "stock")
        + csv_line(23, "KT-004", "French Press", "kitchen", 2999, 13)
        + csv_line(25, "KT-006", "Teapot", "kitchen", 2199, 1)
        + csv_line(24, "KT-005", "Measuring Cups", "kitchen", 999, 28)
    )


def test_export_quotes_what_csv_needs_quoted(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    client.post("/api/products", json={**NEW_PRODUCT, "name": 'Yo-yo, "pro"'})
    text = client.get("/api/products/export.csv?category=toys").get_data(as_text=True)
    assert text.splitlines()[1] == '26,TY-001,"Yo-yo, ""pro""",toys,350,3'


def test_export_with_a_bad_sort_is_a_400_before_streaming(client: FlaskClient) -> None:
    response = client.get("/api/products/export.csv?sort=random")
    assert response.status_code == 400
    assert response.json == bad_request("sort must be one of: name, -name, price, -price, newest")
