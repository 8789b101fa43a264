"""Who is asking: the port of the legacy ``before_request`` and its decorators."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from bridge import DbSession, run_async
from shop import repositories as repo
from shop import validation
from shop.errors import ADMIN_ONLY, LOGIN_REQUIRED
from shop.models import User


async def load_current_user(request: Request, session: DbSession) -> None:
    """Set ``request.state.user`` from the Flask session's ``user_id``; a value that
    is not an id is logged out, as on the legacy side."""
    user_id = validation.session_user_id(request.session.get("user_id"))
    user = None if user_id is None else await run_async(session, repo.user_by_id(user_id))
    request.state.user = user


def current_user(request: Request) -> User:
    """The logged-in user, or 401 as the legacy ``login_required`` answers."""
    user: User | None = request.state.user
    if user is None:
        raise HTTPException(401, detail=LOGIN_REQUIRED)
    return user


def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    """The logged-in admin: 401 when logged out, 403 for anyone else."""
    if not user.is_admin:
        raise HTTPException(403, detail=ADMIN_ONLY)
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
