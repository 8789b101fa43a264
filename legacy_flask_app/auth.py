"""``/api/auth``: register, log in and out, and who am I."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, session
from werkzeug.exceptions import Unauthorized
from werkzeug.security import check_password_hash, generate_password_hash

from bridge import run_sync
from shop import repositories as repo
from shop import validation
from shop.errors import INVALID_CREDENTIALS
from shop.serializers import user_json

from .extensions import db
from .security import current_user, login_required

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.post("/register")
def register() -> tuple[dict[str, Any], int]:
    """Create an account; it does not log in."""
    data = validation.registration(request.get_json())
    password_hash = generate_password_hash(data.password)
    user = run_sync(db.session(), repo.create_user(data.email, data.name, password_hash))
    body = user_json(user)
    db.session.commit()
    return body, 201


@bp.post("/login")
def login() -> dict[str, Any]:
    """Check the credentials and start a session."""
    data = validation.login(request.get_json())
    user = run_sync(db.session(), repo.user_by_email(data.email))
    if user is None or not check_password_hash(user.password_hash, data.password):
        raise Unauthorized(INVALID_CREDENTIALS)
    # Start from an empty session, so nothing stored before logging in carries over.
    session.clear()
    session["user_id"] = user.id
    return user_json(user)


@bp.post("/logout")
def logout() -> tuple[str, int]:
    """End the session; harmless when logged out."""
    session.clear()
    return "", 204


@bp.get("/me")
@login_required
def me() -> dict[str, Any]:
    """The logged-in user."""
    return user_json(current_user())
