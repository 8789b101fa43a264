"""The demo's ports, each broken on purpose in one way a real port could be.

A shadow run must catch every one of them and say where.
"""

from __future__ import annotations

import types
from typing import Any

from fastapi import FastAPI

import async_app
import async_app.catalog
import async_app.orders
from bridge._porting.repository import Operation
from shop import repositories
from shop.models import Order, Product
from shop.serializers import product_json
from shop.validation import OrderLine


def place_order_forgetting_stock(user_id: int, lines: list[OrderLine]) -> Operation[Order]:
    """Places the order, then puts the stock back: the decrement is lost."""
    order = yield from repositories.place_order(user_id, lines)
    for item in order.items:
        yield repositories._change_stock(item.product_id, item.quantity)
    return order


def product_json_with_shouted_name(product: Product) -> dict[str, Any]:
    return {**product_json(product), "name": product.name.upper()}


FORGETFUL_REPOSITORIES = types.SimpleNamespace(
    **{**vars(repositories), "place_order": place_order_forgetting_stock}
)


def create_app_forgetting_stock() -> FastAPI:
    """The ports, with ``POST /api/orders`` leaving the stock as it was."""
    async_app.orders.repo = FORGETFUL_REPOSITORIES  # type: ignore[assignment,attr-defined]
    return async_app.create_app()
