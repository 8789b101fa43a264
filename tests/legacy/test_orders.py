"""/api/orders: listing, reading, placing and cancelling."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from .conftest import Login

ORDER_1 = {
    "id": 1,
    "user_id": 2,
    "status": "shipped",
    "total_cents": 4897,
    "created_at": "2024-02-01T10:00:00Z",
    "items": [
        {"product_id": 11, "quantity": 2, "unit_price_cents": 1999},
        {"product_id": 15, "quantity": 1, "unit_price_cents": 899},
    ],
}


def error(code: int, name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "name": name, "message": message}}


def order_ids(client: FlaskClient, query: str = "") -> list[int]:
    response = client.get(f"/api/orders{query}")
    assert response.status_code == 200, response.json
    return [order["id"] for order in response.json["items"]]  # type: ignore[index]


def stock(client: FlaskClient, product_id: int) -> int:
    value: int = client.get(f"/api/products/{product_id}").json["stock"]  # type: ignore[index]
    return value


def all_order_ids(client: FlaskClient, login: Login) -> list[int]:
    admin = client.application.test_client()
    login(admin, "admin@example.com")
    return order_ids(admin, "?per_page=50")


# ------------------------------------------------------------------ reading


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("alice@example.com", [2, 1]),
        ("bob@example.com", [3]),
        ("admin@example.com", [3, 2, 1]),
    ],
)
def test_list_own_orders_or_all_for_admin(
    client: FlaskClient, login: Login, email: str, expected: list[int]
) -> None:
    login(client, email)
    assert order_ids(client) == expected


def test_list_body(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    body = client.get("/api/orders?per_page=1&page=2").json
    assert body == {
        "items": [ORDER_1],
        "page": 2,
        "per_page": 1,
        "total": 2,
        "pages": 2,
        "has_next": False,
        "has_prev": True,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [("?status=placed", [2]), ("?status=shipped", [1]), ("?status=cancelled", [3])],
)
def test_list_filters_by_status(
    client: FlaskClient, login: Login, query: str, expected: list[int]
) -> None:
    login(client, "admin@example.com")
    assert order_ids(client, query) == expected


def test_list_unknown_status_is_a_400(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.get("/api/orders?status=lost")
    assert response.status_code == 400
    assert response.json == error(
        400, "Bad Request", "status must be one of: placed, shipped, cancelled"
    )


def test_list_past_the_last_page_is_a_404(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    assert client.get("/api/orders?page=2").status_code == 404


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/orders"),
        ("get", "/api/orders/1"),
        ("post", "/api/orders"),
        ("post", "/api/orders/2/cancel"),
    ],
)
def test_orders_need_a_login(client: FlaskClient, method: str, url: str) -> None:
    response = client.open(url, method=method, json={"items": [{"product_id": 1, "quantity": 1}]})
    assert response.status_code == 401
    assert response.json == error(401, "Unauthorized", "log in to do this")


def test_get_own_order(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.get("/api/orders/1")
    assert (response.status_code, response.json) == (200, ORDER_1)


def test_get_someone_elses_order_is_a_403(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.get("/api/orders/1")
    assert response.status_code == 403
    assert response.json == error(403, "Forbidden", "order 1 belongs to another customer")


def test_admin_gets_any_order(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    assert client.get("/api/orders/1").json == ORDER_1


def test_get_unknown_order_is_a_404(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.get("/api/orders/999")
    assert response.status_code == 404
    assert response.json == error(404, "Not Found", "order 999 does not exist")


# ------------------------------------------------------------------ placing


def test_place_order(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.post(
        "/api/orders",
        json={"items": [{"product_id": 3, "quantity": 2}, {"product_id": 12, "quantity": 1}]},
    )
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/orders/4"
    body = response.json
    assert body is not None
    assert {key: value for key, value in body.items() if key != "created_at"} == {
        "id": 4,
        "user_id": 3,
        "status": "placed",
        "total_cents": 2 * 4599 + 2499,
        "items": [
            {"product_id": 3, "quantity": 2, "unit_price_cents": 4599},
            {"product_id": 12, "quantity": 1, "unit_price_cents": 2499},
        ],
    }
    assert (stock(client, 3), stock(client, 12)) == (5 - 2, 25 - 1)
    assert client.get("/api/orders/4").json == body
    assert order_ids(client) == [4, 3]


def test_place_order_merges_repeated_products(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.post(
        "/api/orders",
        json={"items": [{"product_id": 3, "quantity": 2}, {"product_id": 3, "quantity": 3}]},
    )
    assert response.status_code == 201
    assert response.json is not None
    assert response.json["items"] == [{"product_id": 3, "quantity": 5, "unit_price_cents": 4599}]
    assert stock(client, 3) == 0  # exactly the stock there was


def test_place_order_records_the_price_at_the_time(client: FlaskClient, login: Login) -> None:
    login(client, "admin@example.com")
    client.post("/api/orders", json={"items": [{"product_id": 3, "quantity": 1}]})
    client.patch("/api/products/3", json={"price_cents": 1})
    assert client.get("/api/orders/4").json["total_cents"] == 4599  # type: ignore[index]


PRODUCT_ID = "items[0].product_id must be a positive integer"
QUANTITY = "items[0].quantity must be an integer from 1 to 100"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"product_id": 1, "quantity": 1}], "body must be a JSON object"),
        ({}, "items must be a non-empty list"),
        ({"items": []}, "items must be a non-empty list"),
        ({"items": {"product_id": 1}}, "items must be a non-empty list"),
        ({"items": [5]}, "items[0] must be an object"),
        ({"items": [{"quantity": 1}]}, PRODUCT_ID),
        ({"items": [{"product_id": "1", "quantity": 1}]}, PRODUCT_ID),
        ({"items": [{"product_id": 0, "quantity": 1}]}, PRODUCT_ID),
        ({"items": [{"product_id": 1, "quantity": 0}]}, QUANTITY),
        ({"items": [{"product_id": 1, "quantity": True}]}, QUANTITY),
        (
            {"items": [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 101}]},
            "items[1].quantity must be an integer from 1 to 100",
        ),
        ({"items": [{"product_id": 1, "quantity": 1}] * 51}, "items must have at most 50 entries"),
    ],
)
def test_place_order_rejects_invalid_input(
    client: FlaskClient, login: Login, body: Any, message: str
) -> None:
    login(client, "bob@example.com")
    response = client.post("/api/orders", json=body)
    assert (response.status_code, response.json) == (400, error(400, "Bad Request", message))


def test_place_order_with_an_unknown_product_writes_nothing(
    client: FlaskClient, login: Login
) -> None:
    login(client, "bob@example.com")
    response = client.post(
        "/api/orders",
        json={"items": [{"product_id": 3, "quantity": 1}, {"product_id": 999, "quantity": 1}]},
    )
    assert response.status_code == 404
    assert response.json == error(404, "Not Found", "product 999 does not exist")
    assert stock(client, 3) == 5
    assert all_order_ids(client, login) == [3, 2, 1]


def test_out_of_stock_is_a_409_that_writes_nothing(client: FlaskClient, login: Login) -> None:
    # Product 1 is decremented first (ids are taken in order), then product 4 has none:
    # the whole transaction is rolled back.
    login(client, "bob@example.com")
    response = client.post(
        "/api/orders",
        json={"items": [{"product_id": 4, "quantity": 1}, {"product_id": 1, "quantity": 2}]},
    )
    assert response.status_code == 409
    assert response.json == error(409, "Conflict", "product 4 has 0 in stock, 1 requested")
    assert (stock(client, 1), stock(client, 4)) == (12, 0)
    assert all_order_ids(client, login) == [3, 2, 1]


def test_merged_quantities_can_exceed_stock(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.post(
        "/api/orders",
        json={"items": [{"product_id": 25, "quantity": 1}, {"product_id": 25, "quantity": 1}]},
    )
    assert response.status_code == 409
    assert response.json == error(409, "Conflict", "product 25 has 1 in stock, 2 requested")
    assert stock(client, 25) == 1


# ------------------------------------------------------------------ cancelling


def test_cancel_order_puts_the_stock_back(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    before = (stock(client, 1), stock(client, 23))
    response = client.post("/api/orders/2/cancel")
    assert response.status_code == 200
    assert response.json is not None
    assert (response.json["id"], response.json["status"]) == (2, "cancelled")
    assert len(response.json["items"]) == 2
    assert (stock(client, 1), stock(client, 23)) == (before[0] + 1, before[1] + 2)
    assert client.get("/api/orders/2").json == response.json


def test_cancel_twice_is_a_409_and_restocks_once(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    client.post("/api/orders/2/cancel")
    response = client.post("/api/orders/2/cancel")
    assert response.status_code == 409
    assert response.json == error(409, "Conflict", "order 2 is already cancelled")
    assert stock(client, 1) == 13


def test_cancel_a_shipped_order_is_a_409(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.post("/api/orders/1/cancel")
    assert response.status_code == 409
    assert response.json == error(409, "Conflict", "order 1 has shipped and cannot be cancelled")
    assert client.get("/api/orders/1").json == ORDER_1


def test_cancel_someone_elses_order_is_a_403(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    response = client.post("/api/orders/2/cancel")
    assert response.status_code == 403
    assert response.json == error(403, "Forbidden", "order 2 belongs to another customer")
    assert stock(client, 1) == 12


def test_cancel_unknown_order_is_a_404(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.post("/api/orders/999/cancel")
    assert response.json == error(404, "Not Found", "order 999 does not exist")


def test_placed_then_cancelled_round_trip(client: FlaskClient, login: Login) -> None:
    login(client, "bob@example.com")
    placed = client.post("/api/orders", json={"items": [{"product_id": 25, "quantity": 1}]})
    assert stock(client, 25) == 0
    client.post(f"/api/orders/{placed.json['id']}/cancel")  # type: ignore[index]
    assert stock(client, 25) == 1
