"""The shop's error envelope and the domain errors its repositories raise.

Clients depend on the envelope's exact shape::

    {"error": {"code": 404, "name": "Not Found", "message": "product 7 does not exist"}}

Both apps render every error through :func:`error_body`, so the shape is
declared once.
"""

from __future__ import annotations

from typing import Any


def error_body(code: int, name: str, message: str) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "name": name, "message": message}}


class DomainError(Exception):
    """A business rule said no. ``status_code`` is the HTTP status both apps answer."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class OutOfStockError(ConflictError):
    def __init__(self, product_id: int, requested: int, available: int) -> None:
        super().__init__(f"product {product_id} has {available} in stock, {requested} requested")
        self.product_id = product_id
        self.requested = requested
        self.available = available


class ValidationError(DomainError):
    """The request's input is not acceptable; answered with 400."""

    status_code = 400


LOGIN_REQUIRED = "log in to do this"
ADMIN_ONLY = "only an admin can do this"
POOL_TIMEOUT_MESSAGE = "the database is busy; try again in a moment"
INVALID_CREDENTIALS = "invalid email or password"
