"""Every database access of the shop, as operations both apps run.

Each function either builds a statement (pure, no ``yield``) or is an
*operation* (see :data:`bridge.Operation`): run it with
``run_sync(db.session, op)`` on the Flask side and
``await run_async(session, op)`` on the FastAPI side. Operations flush but never
commit: the caller owns the transaction, so when one raises, rolling back leaves
nothing written.

Functions named ``*_by_*`` return ``None`` for a missing row; ``get_*`` raise
:class:`~shop.errors.NotFoundError`. Objects are returned with the relationships
the serializers in :mod:`shop.serializers` read already loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, Update, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from bridge import Add, Flush, Operation, execute, scalar

from .errors import ConflictError, NotFoundError, OutOfStockError, ValidationError
from .models import Order, OrderItem, Product, Review, User
from .validation import (
    MAX_INT,
    NewProduct,
    NewReview,
    OrderLine,
    ProductChanges,
    filter_text,
    is_storable_text,
)

# ---------------------------------------------------------------- users


def user_by_id(user_id: int) -> Operation[User | None]:
    """The user with this id, or ``None``."""
    if not _storable_id(user_id):
        return None
    result = yield from execute(select(User).where(User.id == user_id))
    return result.scalar_one_or_none()


def user_by_email(email: str) -> Operation[User | None]:
    """The user with this (already lower-cased) email, or ``None``."""
    if not is_storable_text(email):
        return None
    result = yield from execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


def create_user(
    email: str, name: str, password_hash: str, *, is_admin: bool = False
) -> Operation[User]:
    """Insert a user; :class:`ConflictError` if the email is taken."""
    if (yield from user_by_email(email)) is not None:
        raise ConflictError(f"a user with email {email} already exists")
    user = User(email=email, name=name, password_hash=password_hash, is_admin=is_admin)
    yield Add(user)
    yield from _flush_or_conflict(f"a user with email {email} already exists")
    return user


# ---------------------------------------------------------------- products

PRODUCT_SORTS: Mapping[str, tuple[ColumnElement[Any], ...]] = {
    # The id tiebreaker runs the same way as the key, so "-x" is exactly "x" reversed.
    "name": (Product.name.asc(), Product.id.asc()),
    "-name": (Product.name.desc(), Product.id.desc()),
    "price": (Product.price_cents.asc(), Product.id.asc()),
    "-price": (Product.price_cents.desc(), Product.id.desc()),
    "newest": (Product.created_at.desc(), Product.id.desc()),
}
"""The ``sort`` values of the product list, and the ``ORDER BY`` each one means."""


def product_by_id(product_id: int) -> Operation[Product | None]:
    """The product with this id, or ``None``."""
    if not _storable_id(product_id):
        return None
    result = yield from execute(select(Product).where(Product.id == product_id))
    return result.scalar_one_or_none()


def get_product(product_id: int) -> Operation[Product]:
    """The product with this id; :class:`NotFoundError` if there is none."""
    product = yield from product_by_id(product_id)
    if product is None:
        raise NotFoundError(f"product {product_id} does not exist")
    return product


def product_by_sku(sku: str) -> Operation[Product | None]:
    """The product with this SKU, or ``None``; a SKU no column can hold names none."""
    if not is_storable_text(sku):
        return None
    result = yield from execute(select(Product).where(Product.sku == sku))
    return result.scalar_one_or_none()


def product_list_select(
    *,
    category: str | None = None,
    q: str | None = None,
    min_price: int | None = None,
    max_price: int | None = None,
    in_stock: bool | None = None,
    sort: str = "name",
) -> Select[Product]:
    """The filtered, sorted product list; empty strings and ``None`` filter nothing.

    Raises :class:`ValidationError` for an unknown *sort*, a price bound that
    no column can hold, or a text filter longer than its column or holding
    what no column can (:func:`shop.validation.filter_text`).
    """
    if sort not in PRODUCT_SORTS:
        raise ValidationError(f"sort must be one of: {', '.join(PRODUCT_SORTS)}")
    statement = select(Product).order_by(*PRODUCT_SORTS[sort])
    if category:
        category = filter_text("category", category, _length(Product.category))
        statement = statement.where(Product.category == category)
    if q:
        q = filter_text("q", q, _length(Product.name))
        # autoescape: a search for "50%" means those characters, not a LIKE pattern.
        statement = statement.where(func.lower(Product.name).contains(q.lower(), autoescape=True))
    if min_price is not None:
        statement = statement.where(Product.price_cents >= _price_bound("min_price", min_price))
    if max_price is not None:
        statement = statement.where(Product.price_cents <= _price_bound("max_price", max_price))
    if in_stock is not None:
        statement = statement.where(Product.stock > 0 if in_stock else Product.stock == 0)
    return statement


def create_product(new: NewProduct) -> Operation[Product]:
    """Insert a product; :class:`ConflictError` if the SKU is taken."""
    yield from _check_sku_free(new.sku)
    product = Product(
        sku=new.sku,
        name=new.name,
        category=new.category,
        price_cents=new.price_cents,
        stock=new.stock,
        description=new.description,
    )
    yield Add(product)
    yield from _flush_or_conflict(f"a product with sku {new.sku} already exists")
    return product


def update_product(product_id: int, changes: ProductChanges) -> Operation[Product]:
    """Apply *changes* to a product; 404 if it is missing, 409 if the new SKU is taken."""
    product = yield from get_product(product_id)
    sku = changes.get("sku")
    if sku is not None and sku != product.sku:
        yield from _check_sku_free(sku)
    for field, value in changes.items():
        setattr(product, field, value)
    yield from _flush_or_conflict(f"a product with sku {sku} already exists")
    return product


def delete_product(product_id: int) -> Operation[None]:
    """Delete a product and its reviews; :class:`ConflictError` once it has been ordered."""
    yield from get_product(product_id)
    ordered = yield from scalar(select(exists().where(OrderItem.product_id == product_id)))
    message = f"product {product_id} has been ordered and cannot be deleted"
    if ordered:
        raise ConflictError(message)
    yield from execute(delete(Review).where(Review.product_id == product_id))
    try:
        yield from execute(delete(Product).where(Product.id == product_id))
    except IntegrityError:
        # An order placed since the check above: the foreign key had the last word.
        raise ConflictError(message) from None


class CategoryCount(NamedTuple):
    name: str
    product_count: int


def category_counts() -> Operation[list[CategoryCount]]:
    """Every category with its number of products, by category name."""
    result = yield from execute(
        select(Product.category, func.count(Product.id))
        .group_by(Product.category)
        .order_by(Product.category)
    )
    return [CategoryCount(name, count) for name, count in result]


# ---------------------------------------------------------------- reviews


def reviews_select(product_id: int) -> Select[Review]:
    """A product's reviews with their authors, newest first."""
    return (
        select(Review)
        .where(Review.product_id == product_id)
        .options(selectinload(Review.user))
        .order_by(Review.created_at.desc(), Review.id.desc())
    )


def create_review(product_id: int, user_id: int, new: NewReview) -> Operation[Review]:
    """Insert a user's review of a product; 404 for an unknown product, 409 for a second one."""
    yield from get_product(product_id)
    message = f"user {user_id} has already reviewed product {product_id}"
    existing = yield from scalar(
        select(Review.id).where(Review.product_id == product_id, Review.user_id == user_id)
    )
    if existing is not None:
        raise ConflictError(message)
    author = yield from user_by_id(user_id)
    if author is None:
        raise NotFoundError(f"user {user_id} does not exist")
    review = Review(product_id=product_id, user=author, rating=new.rating, body=new.body)
    yield Add(review)
    yield from _flush_or_conflict(message)
    return review


# ---------------------------------------------------------------- orders


def orders_select(*, user_id: int | None, status: str | None = None) -> Select[Order]:
    """Orders with their items, newest id first; ``user_id=None`` means everyone's."""
    statement = select(Order).options(selectinload(Order.items)).order_by(Order.id.desc())
    if user_id is not None:
        statement = statement.where(Order.user_id == user_id)
    if status is not None:
        statement = statement.where(Order.status == status)
    return statement


def order_by_id(order_id: int) -> Operation[Order | None]:
    """The order with its items, or ``None``."""
    if not _storable_id(order_id):
        return None
    result = yield from execute(
        select(Order).options(selectinload(Order.items)).where(Order.id == order_id)
    )
    return result.scalar_one_or_none()


def get_order(order_id: int) -> Operation[Order]:
    """The order with its items; :class:`NotFoundError` if there is none."""
    order = yield from order_by_id(order_id)
    if order is None:
        raise NotFoundError(f"order {order_id} does not exist")
    return order


def merge_lines(lines: Iterable[OrderLine]) -> dict[int, int]:
    """Quantities by product id, adding up lines that name the same product."""
    merged: dict[int, int] = {}
    for line in lines:
        merged[line.product_id] = merged.get(line.product_id, 0) + line.quantity
    return merged


def place_order(user_id: int, lines: Iterable[OrderLine]) -> Operation[Order]:
    """Take the stock for *lines* and record the order at today's prices.

    Raises :class:`NotFoundError` naming the first unknown product, or
    :class:`OutOfStockError` for the first product short of stock; statements
    already run by then are undone when the caller rolls back.
    """
    wanted = merge_lines(lines)
    # Columns, not entities: no Product objects in the session to go stale below.
    rows = yield from execute(select(Product.id, Product.price_cents).where(Product.id.in_(wanted)))
    prices = {product_id: price for product_id, price in rows}
    for product_id in wanted:
        if product_id not in prices:
            raise NotFoundError(f"product {product_id} does not exist")
    # Rows are locked in id order so two orders sharing products cannot deadlock.
    for product_id in sorted(wanted):
        yield from _take_stock(product_id, wanted[product_id])
    items = [
        OrderItem(product_id=product_id, quantity=quantity, unit_price_cents=prices[product_id])
        for product_id, quantity in wanted.items()
    ]
    total = sum(item.quantity * item.unit_price_cents for item in items)
    order = Order(user_id=user_id, status="placed", total_cents=total, items=items)
    yield Add(order)
    yield Flush()
    return order


def cancel_order(order: Order) -> Operation[Order]:
    """Cancel a placed order (loaded with its items) and put its stock back."""
    result = yield from execute(
        update(Order)
        .where(Order.id == order.id, Order.status == "placed")
        .values(status="cancelled")
        .execution_options(synchronize_session="evaluate")
    )
    # The guard in the WHERE clause, not order.status, decides: another request may
    # have cancelled the order since it was loaded.
    if result.rowcount != 1:
        if order.status == "shipped":
            raise ConflictError(f"order {order.id} has shipped and cannot be cancelled")
        raise ConflictError(f"order {order.id} is already cancelled")
    for item in sorted(order.items, key=lambda item: item.product_id):
        yield from execute(_change_stock(item.product_id, item.quantity))
    return order


def _take_stock(product_id: int, quantity: int) -> Operation[None]:
    # One guarded UPDATE instead of read-then-write: two concurrent orders for the
    # last unit cannot both pass, and the CHECK (stock >= 0) is never reached.
    result = yield from execute(
        _change_stock(product_id, -quantity).where(Product.stock >= quantity)
    )
    if result.rowcount != 1:
        available = yield from execute(select(Product.stock).where(Product.id == product_id))
        raise OutOfStockError(product_id, quantity, available.scalar_one())


def _change_stock(product_id: int, delta: int) -> Update:
    # synchronize_session=False: with "auto", SQLAlchemy may add RETURNING or a
    # SELECT to sync objects, and nothing here reads Product.stock from memory.
    return (
        update(Product)
        .where(Product.id == product_id)
        .values(stock=Product.stock + delta)
        .execution_options(synchronize_session=False)
    )


def _check_sku_free(sku: str) -> Operation[None]:
    if (yield from product_by_sku(sku)) is not None:
        raise ConflictError(f"a product with sku {sku} already exists")


def _flush_or_conflict(message: str) -> Operation[None]:
    # The check before an insert is for the message; the unique constraint is the
    # guard, and a concurrent request can pass the check between the two.
    try:
        yield Flush()
    except IntegrityError:
        raise ConflictError(message) from None


def _storable_id(value: int) -> bool:
    # A URL can carry any integer; one no INTEGER column can hold names no row,
    # and PostgreSQL would reject it as a parameter rather than find nothing.
    return 0 < value <= MAX_INT


def _length(column: InstrumentedAttribute[str]) -> int:
    """The declared length of a ``String(n)`` column."""
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), f"{column} has no declared length"
    return length


def _price_bound(name: str, value: int) -> int:
    if not 0 <= value <= MAX_INT:
        raise ValidationError(f"{name} must be an integer from 0 to {MAX_INT}")
    return value
