"""The shop's JSON, built from models by plain functions both apps call.

Datetimes are naive UTC in the database and leave as ISO 8601 with a ``Z``
(``"2024-01-01T09:00:00Z"``); prices stay integer cents. A serializer reads
only the relationships the repository loaded (see :mod:`shop.repositories`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .models import Order, OrderItem, Product, Review, User
from .repositories import CategoryCount

T = TypeVar("T")

JSON = dict[str, Any]


class PageLike(Protocol):
    """What :func:`page_json` reads: Flask-SQLAlchemy's ``Pagination`` and
    ``bridge.Page`` both have it."""

    @property
    def items(self) -> Sequence[Any]: ...
    @property
    def page(self) -> int: ...
    @property
    def per_page(self) -> int: ...
    @property
    def total(self) -> int | None: ...
    @property
    def pages(self) -> int: ...
    @property
    def has_next(self) -> bool: ...
    @property
    def has_prev(self) -> bool: ...


def timestamp(value: datetime) -> str:
    """A naive UTC datetime as ISO 8601 with a ``Z``."""
    return value.isoformat() + "Z"


def user_json(user: User) -> JSON:
    """A user, without the password hash."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "is_admin": user.is_admin,
        "created_at": timestamp(user.created_at),
    }


def product_json(product: Product) -> JSON:
    """A product."""
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "price_cents": product.price_cents,
        "stock": product.stock,
        "created_at": timestamp(product.created_at),
        "updated_at": timestamp(product.updated_at),
    }


def category_json(category: CategoryCount) -> JSON:
    """A category and how many products it has."""
    return {"name": category.name, "product_count": category.product_count}


def review_json(review: Review) -> JSON:
    """A review; needs ``Review.user`` loaded for the author's name."""
    return {
        "id": review.id,
        "product_id": review.product_id,
        "user_id": review.user_id,
        "author": review.user.name,
        "rating": review.rating,
        "body": review.body,
        "created_at": timestamp(review.created_at),
    }


def order_item_json(item: OrderItem) -> JSON:
    """One line of an order."""
    return {
        "product_id": item.product_id,
        "quantity": item.quantity,
        "unit_price_cents": item.unit_price_cents,
    }


def order_json(order: Order) -> JSON:
    """An order; needs ``Order.items`` loaded."""
    return {
        "id": order.id,
        "user_id": order.user_id,
        "status": order.status,
        "total_cents": order.total_cents,
        "created_at": timestamp(order.created_at),
        "items": [order_item_json(item) for item in order.items],
    }


def page_json(page: PageLike, item_fn: Callable[[T], JSON]) -> JSON:
    """One page of a list, each item rendered by *item_fn*."""
    return {
        "items": [item_fn(item) for item in page.items],
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
        "pages": page.pages,
        "has_next": page.has_next,
        "has_prev": page.has_prev,
    }


PRODUCT_CSV_COLUMNS = ("id", "sku", "name", "category", "price_cents", "stock")


def product_csv_lines(products: Iterable[Product]) -> Iterator[str]:
    """The product export: a header line, then one CSV line per product, as they come."""
    yield _csv_line(PRODUCT_CSV_COLUMNS)
    for product in products:
        yield _csv_line([getattr(product, column) for column in PRODUCT_CSV_COLUMNS])


def _csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()
