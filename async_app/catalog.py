"""Ports of ``legacy_flask_app.catalog``: the product list and detail, the SKU
redirect, categories, reviews and the CSV export."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import Select
from starlette.responses import Response

from bridge import (
    DbSession,
    FlaskJSONResponse,
    arg,
    args,
    flask_redirect,
    get_json,
    page_args,
    paginate,
    run_async,
    scalars,
    stream_rows_response,
    url_for,
)
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

from .security import CurrentUser

router = APIRouter(prefix="/api")

MAX_PER_PAGE = 50


def product_list_from_args(request: Request) -> Select[Product]:
    """The product list the query arguments ask for."""
    return repo.product_list_select(
        category=arg(request, "category"),
        q=arg(request, "q"),
        min_price=arg(request, "min_price", type=int),
        max_price=arg(request, "max_price", type=int),
        in_stock=arg(request, "in_stock", type=validation.flag),
        sort=arg(request, "sort", "name"),
    )


@router.get("/products", name="catalog.list_products")
async def list_products(request: Request, session: DbSession) -> FlaskJSONResponse:
    statement = product_list_from_args(request)
    page, per_page = page_args(args(request), max_per_page=MAX_PER_PAGE)
    products = await run_async(session, paginate(statement, page=page, per_page=per_page))
    return FlaskJSONResponse(page_json(products, product_json))


@router.get("/products/export.csv", name="catalog.export_products")
async def export_products(request: Request) -> Response:
    # Not the request's DbSession: it is closed when the route returns, before
    # the body is written. The stream takes a connection of its own, here.
    rows = scalars(product_list_from_args(request))
    return await stream_rows_response(
        request,
        rows,
        product_csv_lines,
        media_type="text/csv",
        headers={"Content-Disposition": "attachment; filename=products.csv"},
    )


@router.get("/products/{product_id:int}", name="catalog.get_product")
async def get_product(product_id: int, session: DbSession) -> FlaskJSONResponse:
    product = await run_async(session, repo.get_product(product_id))
    return FlaskJSONResponse(product_json(product))


@router.get("/products/sku/{sku}", name="catalog.product_by_sku")
async def product_by_sku(sku: str, request: Request, session: DbSession) -> Response:
    product = await run_async(session, repo.product_by_sku(sku))
    if product is None:
        raise HTTPException(404, detail=f"no product has sku {sku}")
    return flask_redirect(url_for(request, "catalog.get_product", product_id=product.id))


@router.get("/categories", name="catalog.list_categories")
async def list_categories(session: DbSession) -> FlaskJSONResponse:
    categories = await run_async(session, repo.category_counts())
    return FlaskJSONResponse({"items": [category_json(category) for category in categories]})


@router.get("/products/{product_id:int}/reviews", name="catalog.list_reviews")
async def list_reviews(product_id: int, request: Request, session: DbSession) -> FlaskJSONResponse:
    await run_async(session, repo.get_product(product_id))
    page, per_page = page_args(args(request), max_per_page=MAX_PER_PAGE)
    statement = repo.reviews_select(product_id)
    reviews = await run_async(session, paginate(statement, page=page, per_page=per_page))
    return FlaskJSONResponse(page_json(reviews, review_json))


@router.post("/products/{product_id:int}/reviews", name="catalog.create_review")
async def create_review(
    product_id: int, request: Request, user: CurrentUser, session: DbSession
) -> FlaskJSONResponse:
    data = validation.new_review(await get_json(request))
    review = await run_async(session, repo.create_review(product_id, user.id, data))
    return FlaskJSONResponse(review_json(review), status_code=201)
