"""Ports of ``legacy_flask_app.orders``: listing, reading and placing orders.

Cancelling is not ported yet; the hybrid server sends it to the legacy app.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from bridge import (
    DbSession,
    FlaskJSONResponse,
    arg,
    args,
    get_json,
    page_args,
    paginate,
    run_async,
    url_for,
)
from shop import repositories as repo
from shop import validation
from shop.serializers import order_json, page_json

from .security import CurrentUser

router = APIRouter(prefix="/api/orders")

MAX_PER_PAGE = 50


@router.get("", name="orders.list_orders")
async def list_orders(request: Request, user: CurrentUser, session: DbSession) -> FlaskJSONResponse:
    status = validation.order_status(arg(request, "status"))
    statement = repo.orders_select(user_id=None if user.is_admin else user.id, status=status)
    page, per_page = page_args(args(request), max_per_page=MAX_PER_PAGE)
    orders = await run_async(session, paginate(statement, page=page, per_page=per_page))
    return FlaskJSONResponse(page_json(orders, order_json))


@router.get("/{order_id:int}", name="orders.get_order")
async def get_order(order_id: int, user: CurrentUser, session: DbSession) -> FlaskJSONResponse:
    order = await run_async(session, repo.get_order(order_id))
    if order.user_id != user.id and not user.is_admin:
        raise HTTPException(403, detail=f"order {order_id} belongs to another customer")
    return FlaskJSONResponse(order_json(order))


@router.post("", name="orders.place_order")
async def place_order(request: Request, user: CurrentUser, session: DbSession) -> FlaskJSONResponse:
    lines = validation.order_lines(await get_json(request))
    order = await run_async(session, repo.place_order(user.id, lines))
    location = url_for(request, "orders.get_order", order_id=order.id)
    return FlaskJSONResponse(order_json(order), status_code=201, headers={"Location": location})
