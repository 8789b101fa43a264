"""``/api/orders``: a customer's orders (an admin sees everyone's), placing and cancelling.

Views serialize before ``db.session.commit()``: committing expires every
loaded attribute, and reading ``Order.items`` afterwards would try to load it,
which ``lazy="raise"`` forbids.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for
from werkzeug.exceptions import Forbidden

from bridge import page_args, run_sync
from shop import repositories as repo
from shop import validation
from shop.models import Order
from shop.serializers import order_json, page_json

from .extensions import db
from .security import current_user, login_required

bp = Blueprint("orders", __name__, url_prefix="/api/orders")

MAX_PER_PAGE = 50


def visible_order(order_id: int) -> Order:
    """The order, if the current user may see it: 404 when missing, 403 when not theirs."""
    order = run_sync(db.session(), repo.get_order(order_id))
    user = current_user()
    if order.user_id != user.id and not user.is_admin:
        raise Forbidden(f"order {order_id} belongs to another customer")
    return order


@bp.get("")
@login_required
def list_orders() -> dict[str, Any]:
    """One page of orders, newest first; ``status`` filters."""
    user = current_user()
    status = validation.order_status(request.args.get("status"))
    statement = repo.orders_select(user_id=None if user.is_admin else user.id, status=status)
    page, per_page = page_args(request.args, max_per_page=MAX_PER_PAGE)
    orders = db.paginate(statement, page=page, per_page=per_page)
    return page_json(orders, order_json)


@bp.get("/<int:order_id>")
@login_required
def get_order(order_id: int) -> dict[str, Any]:
    """One order."""
    return order_json(visible_order(order_id))


@bp.post("")
@login_required
def place_order() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Place an order: stock is taken and the order recorded in one transaction."""
    lines = validation.order_lines(request.get_json())
    order = run_sync(db.session(), repo.place_order(current_user().id, lines))
    body = order_json(order)
    db.session.commit()
    return body, 201, {"Location": url_for("orders.get_order", order_id=order.id)}


@bp.post("/<int:order_id>/cancel")
@login_required
def cancel_order(order_id: int) -> dict[str, Any]:
    """Cancel a placed order and put its stock back."""
    order = run_sync(db.session(), repo.cancel_order(visible_order(order_id)))
    body = order_json(order)
    db.session.commit()
    return body
