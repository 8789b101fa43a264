"""/api/auth: register, login, logout, me, and g.user."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from legacy_flask_app.extensions import db
from shop.models import User

from .conftest import Login

ALICE = {
    "id": 2,
    "email": "alice@example.com",
    "name": "Alice Liddell",
    "is_admin": False,
    "created_at": "2024-01-01T09:01:00Z",
}
LOGGED_OUT = {"error": {"code": 401, "name": "Unauthorized", "message": "log in to do this"}}
BAD_LOGIN = {"error": {"code": 401, "name": "Unauthorized", "message": "invalid email or password"}}


def bad_request(message: str) -> dict[str, Any]:
    return {"error": {"code": 400, "name": "Bad Request", "message": message}}


NEW_USER = {"email": " Zed@Example.COM ", "name": " Zed ", "password": "  spaces count  "}


def test_register_creates_a_user_with_a_slow_hash(app: Flask, client: FlaskClient) -> None:
    response = client.post("/api/auth/register", json=NEW_USER)
    assert response.status_code == 201
    body = response.json
    assert body is not None
    assert set(body) == {"id", "email", "name", "is_admin", "created_at"}
    assert (body["id"], body["email"], body["name"], body["is_admin"]) == (
        4,
        "zed@example.com",
        "Zed",
        False,
    )
    with app.app_context():
        stored = db.session.scalars(select(User.password_hash).where(User.id == 4)).one()
    assert stored.startswith("scrypt:")  # werkzeug's default, not the seeds' cheap pbkdf2


def test_registered_user_logs_in_with_the_exact_password(client: FlaskClient, login: Login) -> None:
    client.post("/api/auth/register", json=NEW_USER)
    response = client.post(
        "/api/auth/login", json={"email": "zed@example.com", "password": "spaces count"}
    )
    assert response.status_code == 401
    assert login(client, "ZED@example.com", "  spaces count  ")["id"] == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be a JSON object"),
        ({"name": "Zed", "password": "password123"}, "email must be a non-empty string"),
        ({**NEW_USER, "email": "zed.example.com"}, "email must be an email address"),
        ({**NEW_USER, "name": "   "}, "name must be a non-empty string"),
        ({**NEW_USER, "password": "1234567"}, "password must be at least 8 characters"),
        ({**NEW_USER, "password": 12345678}, "password must be a non-empty string"),
    ],
)
def test_register_rejects_invalid_input(client: FlaskClient, body: Any, message: str) -> None:
    response = client.post("/api/auth/register", json=body)
    assert response.status_code == 400
    assert response.json == bad_request(message)


def test_register_rejects_a_taken_email_whatever_its_case(client: FlaskClient) -> None:
    response = client.post("/api/auth/register", json={**NEW_USER, "email": "ALICE@example.com"})
    assert response.status_code == 409
    assert response.json == {
        "error": {
            "code": 409,
            "name": "Conflict",
            "message": "a user with email alice@example.com already exists",
        }
    }


def test_login_sets_the_session_and_me_reads_it(client: FlaskClient) -> None:
    response = client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": "password123"}
    )
    assert response.status_code == 200
    assert response.json == ALICE
    assert "session=" in response.headers["Set-Cookie"]
    assert "HttpOnly" in response.headers["Set-Cookie"]
    with client.session_transaction() as session:
        assert session["user_id"] == 2
    me = client.get("/api/auth/me")
    assert (me.status_code, me.json) == (200, ALICE)


def test_login_starts_from_an_empty_session(client: FlaskClient, login: Login) -> None:
    with client.session_transaction() as session:
        session["left_over"] = "from before"
    login(client, "alice@example.com")
    with client.session_transaction() as session:
        assert dict(session) == {"user_id": 2}


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": "alice@example.com", "password": "wrong-password"},
        {"email": "nobody@example.com", "password": "password123"},
    ],
)
def test_login_refuses_bad_credentials_alike(
    client: FlaskClient, credentials: dict[str, str]
) -> None:
    response = client.post("/api/auth/login", json=credentials)
    assert (response.status_code, response.json) == (401, BAD_LOGIN)
    assert "Set-Cookie" not in response.headers


def test_login_requires_both_fields(client: FlaskClient) -> None:
    response = client.post("/api/auth/login", json={"email": "alice@example.com"})
    assert (response.status_code, response.json) == (
        400,
        bad_request("password must be a non-empty string"),
    )


def test_logout_clears_the_session(client: FlaskClient, login: Login) -> None:
    login(client, "alice@example.com")
    response = client.post("/api/auth/logout")
    assert (response.status_code, response.data) == (204, b"")
    with client.session_transaction() as session:
        assert "user_id" not in session
    assert client.get("/api/auth/me").status_code == 401


def test_logout_when_logged_out_is_harmless(client: FlaskClient) -> None:
    assert client.post("/api/auth/logout").status_code == 204


def test_me_when_logged_out_is_a_401_envelope(client: FlaskClient) -> None:
    response = client.get("/api/auth/me")
    assert (response.status_code, response.json) == (401, LOGGED_OUT)


def test_a_deleted_user_is_logged_out(app: Flask, client: FlaskClient, login: Login) -> None:
    client.post("/api/auth/register", json=NEW_USER)
    login(client, "zed@example.com", NEW_USER["password"])
    with app.app_context():
        db.session.execute(delete(User).where(User.id == 4))
        db.session.commit()
    response = client.get("/api/auth/me")
    assert (response.status_code, response.json) == (401, LOGGED_OUT)


def test_session_cookie_is_signed(client: FlaskClient) -> None:
    client.set_cookie("session", "eyJ1c2VyX2lkIjoxfQ.forged.signature")
    response = client.get("/api/auth/me")
    assert response.status_code == 401
