"""Checks on request bodies, shared by both apps.

Each function takes the body as parsed JSON (any JSON value, or ``None``) and
returns clean, typed values, or raises :class:`~shop.errors.ValidationError`
with a one-line message that names the field, such as
``"items[0].quantity must be an integer from 1 to 100"``.

Lengths and integer ranges follow the columns in :mod:`shop.models`: PostgreSQL
rejects a value that does not fit (a 500), SQLite stores it anyway, so checking
here makes both databases answer the same 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeGuard, cast

from .errors import ValidationError

MAX_INT = 2**31 - 1
"""The largest value of an ``INTEGER`` column on PostgreSQL."""

MIN_PASSWORD_LENGTH = 8
MAX_REVIEW_LENGTH = 2000
MAX_ORDER_QUANTITY = 100
MAX_ORDER_LINES = 50
ORDER_STATUSES = ("placed", "shipped", "cancelled")


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str


@dataclass(frozen=True)
class Registration:
    email: str
    name: str
    password: str


@dataclass(frozen=True)
class NewProduct:
    sku: str
    name: str
    category: str
    price_cents: int
    stock: int
    description: str = ""


class ProductChanges(TypedDict, total=False):
    """The fields a product update sets; absent keys stay as they are."""

    sku: str
    name: str
    category: str
    price_cents: int
    stock: int
    description: str


@dataclass(frozen=True)
class NewReview:
    rating: int
    body: str = ""


@dataclass(frozen=True)
class OrderLine:
    product_id: int
    quantity: int


def login(body: Any) -> Credentials:
    """Validate a login body: ``{"email": str, "password": str}``."""
    data = _object(body)
    return Credentials(
        email=_email(data, require_at=False),
        password=_text(data, "password", max_length=None, strip=False),
    )


def registration(body: Any) -> Registration:
    """Validate a registration body: an email address, a name and a long enough password."""
    data = _object(body)
    email = _email(data, require_at=True)
    name = _text(data, "name", max_length=120)
    password = _text(data, "password", max_length=None, strip=False)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return Registration(email=email, name=name, password=password)


_PRODUCT_TEXT_LIMITS = {"sku": 32, "name": 200, "category": 60}
_PRODUCT_FIELDS = ("sku", "name", "category", "price_cents", "stock", "description")


def new_product(body: Any) -> NewProduct:
    """Validate a product to create; ``description`` may be left out."""
    data = _object(body)
    return NewProduct(
        sku=_text(data, "sku", max_length=32),
        name=_text(data, "name", max_length=200),
        category=_text(data, "category", max_length=60),
        price_cents=_count(data, "price_cents"),
        stock=_count(data, "stock"),
        description=_optional_text(data, "description", max_length=None),
    )


def product_changes(body: Any) -> ProductChanges:
    """Validate a partial product update: known fields only, at least one of them."""
    data = _object(body)
    unknown = sorted(set(data) - set(_PRODUCT_FIELDS))
    if unknown:
        raise ValidationError(f"unknown field: {', '.join(unknown)}")
    if not data:
        raise ValidationError(f"body must set at least one of: {', '.join(_PRODUCT_FIELDS)}")
    changes: dict[str, Any] = {}
    for key in data:
        if key in _PRODUCT_TEXT_LIMITS:
            changes[key] = _text(data, key, max_length=_PRODUCT_TEXT_LIMITS[key])
        elif key == "description":
            changes[key] = _optional_text(data, key, max_length=None)
        else:
            changes[key] = _count(data, key)
    return cast(ProductChanges, changes)  # keys and values checked above, key by key


def new_review(body: Any) -> NewReview:
    """Validate a review: a rating from 1 to 5 and an optional text of up to 2000 characters."""
    data = _object(body)
    rating = data.get("rating")
    if not _is_int(rating) or not 1 <= rating <= 5:
        raise ValidationError("rating must be an integer from 1 to 5")
    return NewReview(rating=rating, body=_optional_text(data, "body", MAX_REVIEW_LENGTH))


def order_lines(body: Any) -> list[OrderLine]:
    """Validate an order: ``{"items": [{"product_id": int, "quantity": int}, ...]}``.

    The same product may appear more than once; placing the order adds the quantities.
    """
    items = _object(body).get("items")
    if not isinstance(items, list) or not items:
        raise ValidationError("items must be a non-empty list")
    if len(items) > MAX_ORDER_LINES:
        raise ValidationError(f"items must have at most {MAX_ORDER_LINES} entries")
    return [_order_line(item, f"items[{index}]") for index, item in enumerate(items)]


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def flag(value: str) -> bool:
    """Parse a boolean query argument such as ``in_stock=true``.

    Raises ``ValueError`` for anything else, so that, passed as ``type=`` to
    Flask's ``request.args.get``, an unreadable value is ignored as ``type=int``
    ignores one.
    """
    lowered = value.lower()
    if lowered not in _TRUE | _FALSE:
        raise ValueError(f"not a boolean: {value!r}")
    return lowered in _TRUE


def session_user_id(value: Any) -> int | None:
    """The user id kept in the session, or ``None`` when there is none or it is no id.

    The cookie is signed, so only an app holding the key wrote it; but an
    older release, or another app sharing the key, may have stored something
    else under ``user_id`` (a string, a float, ``true``). Such a session names
    no user: it is logged out, on both sides, rather than a 500.
    """
    return value if _is_int(value) and 1 <= value <= MAX_INT else None


def order_status(value: str | None) -> str | None:
    """Validate the optional ``status`` filter of an order list."""
    if value is not None and value not in ORDER_STATUSES:
        raise ValidationError(f"status must be one of: {', '.join(ORDER_STATUSES)}")
    return value


def _order_line(item: Any, where: str) -> OrderLine:
    if not isinstance(item, dict):
        raise ValidationError(f"{where} must be an object")
    product_id = item.get("product_id")
    if not _is_int(product_id) or not 1 <= product_id <= MAX_INT:
        raise ValidationError(f"{where}.product_id must be a positive integer")
    quantity = item.get("quantity")
    if not _is_int(quantity) or not 1 <= quantity <= MAX_ORDER_QUANTITY:
        raise ValidationError(f"{where}.quantity must be an integer from 1 to {MAX_ORDER_QUANTITY}")
    return OrderLine(product_id=product_id, quantity=quantity)


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    return body


def _email(data: Mapping[str, Any], *, require_at: bool) -> str:
    email = _text(data, "email", max_length=255).lower()
    if require_at and "@" not in email:
        raise ValidationError("email must be an email address")
    return email


def is_storable_text(value: str) -> bool:
    """Whether both databases can take *value* as text, and a password hash its bytes.

    PostgreSQL refuses a NUL character in text (SQLite stores it), and no
    driver can encode an unpaired surrogate, which a JSON string's ``\\ud800``
    escape produces.
    """
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def filter_text(name: str, value: str, max_length: int) -> str:
    """A text filter from the query string, checked as stored text is.

    Longer than the column it filters, it can match nothing; SQLite also
    refuses a ``LIKE`` pattern past 50,000 bytes (a 500).
    """
    if not is_storable_text(value):
        raise ValidationError(f"{name} {_UNSTORABLE}")
    if len(value) > max_length:
        raise ValidationError(f"{name} must be at most {max_length} characters")
    return value


_UNSTORABLE = "must not contain NUL characters or unpaired surrogates"


def _text(data: Mapping[str, Any], key: str, max_length: int | None, *, strip: bool = True) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{key} must be a non-empty string")
    if not is_storable_text(value):
        raise ValidationError(f"{key} {_UNSTORABLE}")
    if strip:
        value = value.strip()
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{key} must be at most {max_length} characters")
    return value


def _optional_text(data: Mapping[str, Any], key: str, max_length: int | None) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string")
    if not is_storable_text(value):
        raise ValidationError(f"{key} {_UNSTORABLE}")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{key} must be at most {max_length} characters")
    return value


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not _is_int(value) or value < 0:
        raise ValidationError(f"{key} must be a non-negative integer")
    if value > MAX_INT:
        raise ValidationError(f"{key} must be at most {MAX_INT}")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    # JSON true is a Python bool, and bool is an int subclass: it is not a number here.
    return isinstance(value, int) and not isinstance(value, bool)
