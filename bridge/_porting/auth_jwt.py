"""flask-jwt-extended for ported routes: the app's own ``JWTManager``, run on the port's request.

:meth:`FlaskJWT.required` is ``@jwt_required(...)`` as a FastAPI dependency.
It runs the extension's own ``jwt_required`` inside a Flask request context
built from the ASGI request (see
:func:`~bridge._porting.flask_context.run_in_flask`), so tokens are found and
decoded with the app's ``JWT_*`` settings, its ``token_in_blocklist_loader``,
``user_lookup_loader`` and claims checks run, and a refused token gets the
app's answer: its ``expired_token_loader`` and the other error loaders, or the
extension's defaults (401 ``{"msg": "Missing Authorization Header"}``, 422
for a token that does not decode, 401 for an expired one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from flask import Flask, g

from bridge._exceptions import ConfigurationError
from bridge._porting.flask_context import (
    install_flask_answers,
    require_extension,
    require_flask_app,
    run_in_flask,
)


@dataclass(frozen=True)
class JWTToken:
    """What the legacy view reads through flask-jwt-extended's functions, once verified.

    ``identity`` is ``get_jwt_identity()``, ``claims`` ``get_jwt()``, ``header``
    ``get_jwt_header()``, ``user`` ``current_user`` (what the app's
    ``user_lookup_loader`` returned, else ``None``) and ``location``
    ``get_jwt_request_location()``. With ``optional=True`` and no token, as in
    Flask: ``None``, ``{}``, ``{}``, ``None`` and ``None``.
    """

    identity: Any = None
    claims: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    user: Any = None
    location: str | None = None


class FlaskJWT:
    """flask-jwt-extended's ``jwt_required`` as FastAPI dependencies.

    ::

        jwt = FlaskJWT()  # the hybrid's Flask app; or FlaskJWT(create_app())
        jwt.install(app)

        Token = Annotated[JWTToken, Depends(jwt.required())]
        MaybeToken = Annotated[JWTToken, Depends(jwt.required(optional=True))]

    The user is loaded in a worker thread inside a Flask request context,
    which is gone when the route runs: what the loader loaded can be read, a
    lazy relationship cannot.
    """

    def __init__(self, flask_app: Flask | None = None) -> None:
        require_extension("flask_jwt_extended", "flask-jwt-extended", "FlaskJWT")
        self.flask_app = flask_app

    def install(self, app: FastAPI) -> None:
        """Let *app* send the extension's own answers to refused tokens."""
        install_flask_answers(app)

    def required(
        self,
        optional: bool = False,
        fresh: bool = False,
        refresh: bool = False,
        locations: str | Sequence[str] | None = None,
        verify_type: bool = True,
        skip_revocation_check: bool = False,
    ) -> Callable[[Request], Awaitable[JWTToken]]:
        """A dependency that verifies the request's JWT as ``@jwt_required(...)`` with
        the same arguments does, and gives the :class:`JWTToken`."""
        options = {
            "optional": optional,
            "fresh": fresh,
            "refresh": refresh,
            "locations": locations,
            "verify_type": verify_type,
            "skip_revocation_check": skip_revocation_check,
        }

        async def verified_jwt(request: Request) -> JWTToken:
            flask_app = require_flask_app(
                request, self.flask_app, "FlaskJWT", "FlaskJWT(create_app())"
            )
            if "flask-jwt-extended" not in flask_app.extensions:
                raise ConfigurationError(
                    f"the Flask app {flask_app.name!r} has no JWTManager: "
                    "call jwt.init_app(app) in its factory"
                )
            # The body goes too: the app may read tokens from JSON or CSRF tokens from forms.
            return await run_in_flask(request, flask_app, lambda: _verify(options), body=True)

        return verified_jwt


def _verify(options: dict[str, Any]) -> JWTToken:
    """The token as a view under ``@jwt_required(**options)`` would see it."""
    from flask_jwt_extended import jwt_required

    return jwt_required(**options)(_token)()  # type: ignore[no-any-return]


def _token() -> JWTToken:
    import flask_jwt_extended as ext

    if "_jwt_extended_jwt" not in g:  # an exempt method (OPTIONS): nothing was verified
        return JWTToken()
    return JWTToken(
        identity=ext.get_jwt_identity(),
        claims=ext.get_jwt(),
        header=ext.get_jwt_header(),
        # get_current_user() raises without a user_lookup_loader; None is what the view has then.
        user=ext.get_current_user() if g.get("_jwt_extended_jwt_user") else None,
        location=ext.get_jwt_request_location(),
    )
