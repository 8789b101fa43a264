"""Every error leaves as the envelope, with TESTING on and off."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import pytest
from flask import Flask
from werkzeug.exceptions import InternalServerError, MethodNotAllowed, NotFound

from legacy_flask_app import orders
from legacy_flask_app.extensions import db
from shop import repositories
from shop.errors import POOL_TIMEOUT_MESSAGE

from .conftest import Login, MakeApp


def envelope(code: int, name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "name": name, "message": message}}


def boom(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError("boom")


@pytest.fixture
def production_app(app: Flask) -> Flask:
    """The app as it runs in production: exceptions become responses."""
    app.config["TESTING"] = False
    return app


def test_unknown_url_is_a_404_envelope(production_app: Flask) -> None:
    response = production_app.test_client().get("/api/nowhere")
    assert response.status_code == 404
    assert response.json == envelope(404, "Not Found", NotFound.description)


def test_wrong_method_is_a_405_envelope_that_keeps_allow(production_app: Flask) -> None:
    response = production_app.test_client().put("/api/products")
    assert response.status_code == 405
    assert response.json == envelope(405, "Method Not Allowed", MethodNotAllowed.description)
    assert response.content_type == "application/json"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_unhandled_exception_is_a_logged_500_envelope(
    production_app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(repositories, "category_counts", boom)
    with caplog.at_level(logging.ERROR):
        response = production_app.test_client().get("/api/categories")
    assert response.status_code == 500
    assert response.json == envelope(500, "Internal Server Error", InternalServerError.description)
    [record] = [r for r in caplog.records if r.exc_info is not None]
    assert record.getMessage() == "Exception on /api/categories [GET]"
    assert isinstance(record.exc_info[1], RuntimeError)  # type: ignore[index]


def test_500_after_a_write_leaves_nothing_written(
    production_app: Flask, monkeypatch: pytest.MonkeyPatch, login: Login
) -> None:
    client = production_app.test_client()
    login(client, "alice@example.com")
    monkeypatch.setattr(orders, "order_json", boom)  # fails after place_order, before commit
    response = client.post("/api/orders", json={"items": [{"product_id": 1, "quantity": 5}]})
    assert response.status_code == 500
    monkeypatch.undo()
    assert client.get("/api/products/1").json["stock"] == 12  # type: ignore[index]
    assert client.get("/api/orders").json["total"] == 2  # type: ignore[index]


def test_unhandled_exception_propagates_when_testing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repositories, "category_counts", boom)
    with pytest.raises(RuntimeError, match="boom"):
        app.test_client().get("/api/categories")


def test_exhausted_pool_is_a_503_envelope_with_retry_after(make_app: MakeApp) -> None:
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.1}
    )
    with app.app_context():
        engine = db.engine
    with engine.connect():  # the pool's only connection
        response = app.test_client().get("/api/categories")
    assert response.status_code == 503
    assert response.json == envelope(503, "Service Unavailable", POOL_TIMEOUT_MESSAGE)
    assert response.headers["Retry-After"] == "1"
    assert app.test_client().get("/api/categories").status_code == 200


@pytest.mark.parametrize("testing", [True, False])
def test_json_body_errors(app: Flask, login: Login, testing: bool) -> None:
    app.config["TESTING"] = testing
    client = app.test_client()
    login(client, "alice@example.com")

    response = client.post("/api/orders", data="items=1")
    assert response.status_code == 415
    assert response.json == envelope(
        415,
        "Unsupported Media Type",
        "Did not attempt to load JSON data because the request Content-Type was not"
        " 'application/json'.",
    )

    response = client.post("/api/orders", data="{", content_type="application/json")
    assert response.status_code == 400
    assert response.json == envelope(
        400,
        "Bad Request",
        "The browser (or proxy) sent a request that this server could not understand.",
    )

    response = client.post("/api/orders", data="null", content_type="application/json")
    assert response.status_code == 400
    assert response.json == envelope(400, "Bad Request", "body must be a JSON object")
