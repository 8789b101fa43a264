"""Who is asking: the session's user in ``g.user``, and the decorators that need one."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, session
from werkzeug.exceptions import Forbidden, Unauthorized

from bridge import run_sync
from shop import repositories as repo
from shop import validation
from shop.errors import ADMIN_ONLY, LOGIN_REQUIRED
from shop.models import User

from .extensions import db

P = ParamSpec("P")
R = TypeVar("R")


def load_current_user() -> None:
    """Set ``g.user`` from ``session["user_id"]``; ``None`` when logged out or deleted.

    A session whose ``user_id`` is not an id is logged out
    (:func:`shop.validation.session_user_id`).
    """
    user_id = validation.session_user_id(session.get("user_id"))
    g.user = None if user_id is None else run_sync(db.session(), repo.user_by_id(user_id))


def current_user() -> User:
    """The logged-in user, in a view decorated with :func:`login_required`."""
    user: User = g.user
    return user


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Answer 401 unless someone is logged in."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if g.user is None:
            raise Unauthorized(LOGIN_REQUIRED)
        return view(*args, **kwargs)

    return wrapper


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    """Answer 401 when logged out, 403 unless the user is an admin."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if g.user is None:
            raise Unauthorized(LOGIN_REQUIRED)
        if not g.user.is_admin:
            raise Forbidden(ADMIN_ONLY)
        return view(*args, **kwargs)

    return wrapper
