"""``/api``: products, categories, reviews and the CSV export."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, request, url_for
from sqlalchemy import Select
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as BaseResponse

from bridge import page_args, run_sync, scalars, stream_rows
from shop import repositories as repo
from shop import validation
from shop.models import Product
from shop.serializers import (
    category_json,
    page_json,
    product_csv_lines,
    product_json,
    review_json,
)

from .extensions import db
from .security import admin_required, current_user, login_required

bp = Blueprint("catalog", __name__, url_prefix="/api")

MAX_PER_PAGE = 50


def product_list_from_args() -> Select[Product]:
    """The product list the query arguments ask for."""
    args = request.args
    return repo.product_list_select(
        category=args.get("category"),
        q=args.get("q"),
        min_price=args.get("min_price", type=int),
        max_price=args.get("max_price", type=int),
        in_stock=args.get("in_stock", type=validation.flag),
        sort=args.get("sort", "name"),
    )


@bp.get("/products")
def list_products() -> dict[str, Any]:
    """One page of products: filters ``category``, ``q``, ``min_price``, ``max_price``,
    ``in_stock``; ``sort`` one of :data:`shop.repositories.PRODUCT_SORTS`."""
    statement = product_list_from_args()
    # page_args rather than db.paginate's own reading: it answers 404 for a page
    # whose OFFSET no database takes (?page=10**19), where the database refuses it.
    page, per_page = page_args(request.args, max_per_page=MAX_PER_PAGE)
    products = db.paginate(statement, page=page, per_page=per_page)
    return page_json(products, product_json)


@bp.get("/products/export.csv")
def export_products() -> Response:
    """The product list as CSV, streamed row by row; takes the list's filters."""
    # The connection is taken here, in the view: a busy pool is the 503 of the
    # error handler, not a 200 cut short once the stream finds no connection.
    rows = scalars(product_list_from_args())
    return Response(
        stream_rows(db.engine, rows, product_csv_lines),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=products.csv"},
    )


@bp.get("/products/<int:product_id>")
def get_product(product_id: int) -> dict[str, Any]:
    """One product."""
    return product_json(run_sync(db.session(), repo.get_product(product_id)))


@bp.get("/products/sku/<string:sku>")
def product_by_sku(sku: str) -> BaseResponse:
    """Redirect to the product with this SKU."""
    product = run_sync(db.session(), repo.product_by_sku(sku))
    if product is None:
        raise NotFound(f"no product has sku {sku}")
    return redirect(url_for("catalog.get_product", product_id=product.id))


@bp.post("/products")
@admin_required
def create_product() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Add a product (admin)."""
    data = validation.new_product(request.get_json())
    product = run_sync(db.session(), repo.create_product(data))
    body = product_json(product)
    db.session.commit()
    return body, 201, {"Location": url_for("catalog.get_product", product_id=product.id)}


@bp.patch("/products/<int:product_id>")
@admin_required
def update_product(product_id: int) -> dict[str, Any]:
    """Change some fields of a product (admin)."""
    changes = validation.product_changes(request.get_json())
    product = run_sync(db.session(), repo.update_product(product_id, changes))
    body = product_json(product)
    db.session.commit()
    return body


@bp.delete("/products/<int:product_id>")
@admin_required
def delete_product(product_id: int) -> tuple[str, int]:
    """Delete a product that was never ordered, with its reviews (admin)."""
    run_sync(db.session(), repo.delete_product(product_id))
    db.session.commit()
    return "", 204


@bp.get("/categories")
def list_categories() -> dict[str, Any]:
    """Every category with its product count."""
    categories = run_sync(db.session(), repo.category_counts())
    return {"items": [category_json(category) for category in categories]}


@bp.get("/products/<int:product_id>/reviews")
def list_reviews(product_id: int) -> dict[str, Any]:
    """One page of a product's reviews, newest first."""
    run_sync(db.session(), repo.get_product(product_id))
    page, per_page = page_args(request.args, max_per_page=MAX_PER_PAGE)
    reviews = db.paginate(repo.reviews_select(product_id), page=page, per_page=per_page)
    return page_json(reviews, review_json)


@bp.post("/products/<int:product_id>/reviews")
@login_required
def create_review(product_id: int) -> tuple[dict[str, Any], int]:
    """Review a product, once per user."""
    data = validation.new_review(request.get_json())
    review = run_sync(db.session(), repo.create_review(product_id, current_user().id, data))
    body = review_json(review)
    db.session.commit()
    return body, 201
