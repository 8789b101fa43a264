"""Ports of ``legacy_flask_app.auth``: log in, log out, and who am I.

The session is Flask's signed cookie (see :class:`bridge.FlaskSessionMiddleware`), so a login
here is a login on the legacy routes too, and the other way round.
Registering is not ported yet.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import Response
from werkzeug.security import check_password_hash

from bridge import DbSession, FlaskJSONResponse, get_json, run_async
from shop import repositories as repo
from shop import validation
from shop.errors import INVALID_CREDENTIALS
from shop.serializers import user_json

from .security import CurrentUser

router = APIRouter(prefix="/api/auth")


@router.post("/login", name="auth.login")
async def login(request: Request, session: DbSession) -> FlaskJSONResponse:
    data = validation.login(await get_json(request))
    user = await run_async(session, repo.user_by_email(data.email))
    if user is None or not check_password_hash(user.password_hash, data.password):
        raise HTTPException(401, detail=INVALID_CREDENTIALS)
    request.session.clear()
    request.session["user_id"] = user.id
    return FlaskJSONResponse(user_json(user))


@router.post("/logout", name="auth.logout")
async def logout(request: Request) -> Response:
    request.session.clear()
    # Flask answers a view's "" with an empty text/html body.
    return Response(b"", status_code=204, media_type="text/html; charset=utf-8")


@router.get("/me", name="auth.me")
async def me(user: CurrentUser) -> FlaskJSONResponse:
    return FlaskJSONResponse(user_json(user))
