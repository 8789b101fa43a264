"""Deterministic demo data: the same rows, ids and timestamps on every run.

Ids are assigned in insertion order, so on an empty database the products are
1 to 25 in the order of :data:`PRODUCTS`, the users 1 to 3 in the order of
:data:`USERS`, and the JSON of the seeded shop is identical across runs and
across SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from bridge import Add, Flush, Operation, scalar

from .models import Order, OrderItem, Product, Review, User

DEMO_PASSWORD = "password123"

# Seeds use a cheap work factor so that tests, which seed per test, stay fast;
# registrations hash with werkzeug's default, which is deliberately slow.
SEED_HASH_METHOD = "pbkdf2:sha256:1000"

EPOCH = datetime(2024, 1, 1, 9, 0, 0)

USERS = (
    # email, name, is_admin
    ("admin@example.com", "Ada Admin", True),
    ("alice@example.com", "Alice Liddell", False),
    ("bob@example.com", "Bob Builder", False),
)

PRODUCTS = (
    # sku, name, category, price_cents, stock
    ("BK-001", "Algorithms Illustrated", "books", 3499, 12),
    ("BK-002", "Clean Architecture", "books", 2999, 8),
    ("BK-003", "Designing Data Systems", "books", 4599, 5),
    ("BK-004", "Fluent Python", "books", 5499, 0),
    ("BK-005", "Python Tricks", "books", 2999, 20),
    ("BK-006", "The Pragmatic Programmer", "books", 3999, 15),
    ("BK-007", "Web APIs in Practice", "books", 2499, 9),
    ("EL-001", "Bluetooth Speaker", "electronics", 4999, 30),
    ("EL-002", "Mechanical Keyboard", "electronics", 8999, 14),
    ("EL-003", "Noise Cancelling Headphones", "electronics", 19999, 6),
    ("EL-004", "USB-C Charger", "electronics", 1999, 50),
    ("EL-005", "Wireless Mouse", "electronics", 2499, 25),
    ("EL-006", "Webcam HD", "electronics", 5999, 3),
    ("GD-001", "Garden Hose", "garden", 2799, 18),
    ("GD-002", "Hand Trowel", "garden", 899, 40),
    ("GD-003", "Pruning Shears", "garden", 1599, 22),
    ("GD-004", "Rain Barrel", "garden", 6499, 4),
    ("GD-005", "Seed Starter Kit", "garden", 1299, 35),
    ("GD-006", "Watering Can", "garden", 1899, 11),
    ("KT-001", "Cast Iron Skillet", "kitchen", 3499, 16),
    ("KT-002", "Chef Knife", "kitchen", 7999, 7),
    ("KT-003", "Coffee Grinder", "kitchen", 4499, 9),
    ("KT-004", "French Press", "kitchen", 2999, 13),
    ("KT-005", "Measuring Cups", "kitchen", 999, 28),
    ("KT-006", "Teapot", "kitchen", 2199, 1),
)

ORDERS = (
    # customer, status, created_at, ((sku, quantity), ...)
    ("alice@example.com", "shipped", datetime(2024, 2, 1, 10, 0), (("EL-004", 2), ("GD-002", 1))),
    ("alice@example.com", "placed", datetime(2024, 2, 10, 12, 30), (("BK-001", 1), ("KT-004", 2))),
    ("bob@example.com", "cancelled", datetime(2024, 2, 12, 8, 15), (("EL-002", 1),)),
)

REVIEWS = (
    # sku, author, rating, body, created_at
    ("BK-001", "alice@example.com", 5, "Clear and well paced.", datetime(2024, 2, 5, 10, 0)),
    ("BK-001", "bob@example.com", 4, "Good, if a little dense.", datetime(2024, 2, 5, 10, 0)),
    (
        "KT-002",
        "alice@example.com",
        3,
        "Sharp, but the handle is slippery.",
        datetime(2024, 2, 3, 9, 0),
    ),
)


def is_seeded() -> Operation[bool]:
    """Whether the database already holds users (and so, the demo data)."""
    return (yield from scalar(select(User.id).limit(1))) is not None


def seed() -> Operation[None]:
    """Insert the demo data into empty tables; the caller commits."""
    users = {
        email: _user(index, email, name, admin) for index, (email, name, admin) in enumerate(USERS)
    }
    products = {row[0]: _product(index, *row) for index, row in enumerate(PRODUCTS)}
    yield Add(*users.values())
    yield Add(*products.values())
    yield Flush()
    for email, status, created_at, lines in ORDERS:
        items = [
            OrderItem(
                product_id=products[sku].id,
                quantity=quantity,
                unit_price_cents=products[sku].price_cents,
            )
            for sku, quantity in lines
        ]
        total = sum(item.quantity * item.unit_price_cents for item in items)
        yield Add(
            Order(
                user_id=users[email].id,
                status=status,
                total_cents=total,
                created_at=created_at,
                items=items,
            )
        )
    for sku, email, rating, body, created_at in REVIEWS:
        yield Add(
            Review(
                product_id=products[sku].id,
                user_id=users[email].id,
                rating=rating,
                body=body,
                created_at=created_at,
            )
        )
    yield Flush()


def _user(index: int, email: str, name: str, is_admin: bool) -> User:
    return User(
        email=email,
        name=name,
        password_hash=generate_password_hash(DEMO_PASSWORD, method=SEED_HASH_METHOD),
        is_admin=is_admin,
        created_at=EPOCH + timedelta(minutes=index),
    )


def _product(
    index: int, sku: str, name: str, category: str, price_cents: int, stock: int
) -> Product:
    created_at = EPOCH + timedelta(days=index)
    return Product(
        sku=sku,
        name=name,
        description=f"{name}, from the {category} aisle.",
        category=category,
        price_cents=price_cents,
        stock=stock,
        created_at=created_at,
        updated_at=created_at,
    )
