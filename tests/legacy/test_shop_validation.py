"""shop.validation: what bodies are accepted, and the exact refusal for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shop import validation
from shop.errors import ValidationError
from shop.validation import (
    Credentials,
    NewProduct,
    NewReview,
    OrderLine,
    Registration,
)

PRODUCT = {"sku": "A-1", "name": "A", "category": "c", "price_cents": 0, "stock": 0}


@pytest.mark.parametrize(
    ("check", "body", "message"),
    [
        (validation.login, None, "body must be a JSON object"),
        (validation.login, "alice", "body must be a JSON object"),
        (validation.login, {"email": "a@b", "password": ""}, "password must be a non-empty string"),
        (validation.login, {"email": 1, "password": "x"}, "email must be a non-empty string"),
        (validation.registration, {"email": "a@b", "name": "A", "password": "x" * 7},
         "password must be at least 8 characters"),
        (validation.registration, {"email": "a@b", "name": "A" * 121, "password": "x" * 8},
         "name must be at most 120 characters"),
        (validation.new_product, {**PRODUCT, "price_cents": False},
         "price_cents must be a non-negative integer"),
        (validation.new_product, {**PRODUCT, "price_cents": 1.0},
         "price_cents must be a non-negative integer"),
        (validation.new_product, {**PRODUCT, "name": "n" * 201},
         "name must be at most 200 characters"),
        (validation.new_product, {**PRODUCT, "category": "c" * 61},
         "category must be at most 60 characters"),
        (validation.product_changes, {"sku": "A", "id": 3}, "unknown field: id"),
        (validation.product_changes, [], "body must be a JSON object"),
        (validation.product_changes, {"name": None}, "name must be a non-empty string"),
        (validation.new_review, {"rating": 3.0}, "rating must be an integer from 1 to 5"),
        (validation.order_lines, {"items": [{"product_id": 2**31, "quantity": 1}]},
         "items[0].product_id must be a positive integer"),
        (validation.order_lines, {"items": [{"product_id": False, "quantity": 1}]},
         "items[0].product_id must be a positive integer"),
    ],
)  # fmt: skip
def test_refusals(check: Callable[[Any], object], body: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check(body)
    assert caught.value.message == message
    assert caught.value.status_code == 400


def test_login_lowercases_the_email_but_keeps_the_password() -> None:
    assert validation.login({"email": " Alice@Example.com", "password": " pw "}) == Credentials(
        email="alice@example.com", password=" pw "
    )


def test_login_does_not_require_an_at_sign() -> None:
    # A login with a malformed email is an ordinary failed login (401), not a 400.
    assert validation.login({"email": "alice", "password": "x"}).email == "alice"


def test_registration_strips_name_and_email() -> None:
    body = {"email": " Bo@X.org ", "name": " Bo ", "password": "12345678"}
    assert validation.registration(body) == Registration("bo@x.org", "Bo", "12345678")


def test_new_product_defaults_the_description() -> None:
    assert validation.new_product(PRODUCT) == NewProduct("A-1", "A", "c", 0, 0, "")


def test_new_product_ignores_unknown_fields() -> None:
    assert validation.new_product({**PRODUCT, "colour": "red"}).sku == "A-1"


def test_product_changes_keeps_only_what_was_sent() -> None:
    changes = validation.product_changes({"stock": 4, "description": "", "name": " B "})
    assert changes == {"stock": 4, "description": "", "name": "B"}


def test_new_review_body_is_optional() -> None:
    assert validation.new_review({"rating": 1}) == NewReview(rating=1, body="")
    assert validation.new_review({"rating": 5, "body": "x" * 2000}).body == "x" * 2000


def test_order_lines_keep_request_order_and_repeats() -> None:
    body = {"items": [{"product_id": 9, "quantity": 100}, {"product_id": 9, "quantity": 1}]}
    assert validation.order_lines(body) == [OrderLine(9, 100), OrderLine(9, 1)]


@pytest.mark.parametrize("status", [None, "placed", "shipped", "cancelled"])
def test_order_status_accepts_known_statuses(status: str | None) -> None:
    assert validation.order_status(status) == status


def test_order_status_is_case_sensitive() -> None:
    with pytest.raises(ValidationError):
        validation.order_status("Placed")


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("On", True), ("1", True), ("no", False), ("0", False)]
)
def test_flag_reads_booleans(value: str, expected: bool) -> None:
    assert validation.flag(value) is expected


@pytest.mark.parametrize("value", ["", "maybe", "2"])
def test_flag_refuses_anything_else_with_value_error(value: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        validation.flag(value)
