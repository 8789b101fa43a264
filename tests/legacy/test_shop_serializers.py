"""shop.serializers: the JSON both apps send."""

from __future__ import annotations

from datetime import datetime

from bridge._porting.pagination import Page
from shop.models import User
from shop.serializers import page_json, product_csv_lines, timestamp, user_json


def test_timestamp_is_iso_8601_utc_with_z() -> None:
    assert timestamp(datetime(2024, 3, 4, 5, 6, 7)) == "2024-03-04T05:06:07Z"


def test_user_json_never_has_the_password_hash() -> None:
    user = User(
        id=7,
        email="e@x",
        name="E",
        password_hash="secret",
        is_admin=True,
        created_at=datetime(2024, 1, 1),
    )
    assert user_json(user) == {
        "id": 7,
        "email": "e@x",
        "name": "E",
        "is_admin": True,
        "created_at": "2024-01-01T00:00:00Z",
    }


def test_page_json_reads_the_bridge_page() -> None:
    page = Page(page=2, per_page=2, total=5, items=[3, 4])
    assert page_json(page, lambda n: {"n": n}) == {
        "items": [{"n": 3}, {"n": 4}],
        "page": 2,
        "per_page": 2,
        "total": 5,
        "pages": 3,
        "has_next": True,
        "has_prev": True,
    }


def test_product_csv_of_no_products_is_the_header() -> None:
    assert list(product_csv_lines([])) == ["id,sku,name,category,price_cents,stock\r\n"]
