"""Flask-Login for ported routes: the app's own ``LoginManager``, run on the port's request.

:class:`FlaskLogin` gives FastAPI dependencies that do what Flask-Login does
in the legacy app, by running Flask-Login itself (see
:func:`~bridge._porting.flask_context.run_in_flask`): the user comes from the
Flask session through the app's ``user_loader`` (or its remember-me cookie or
``request_loader``), session protection and ``LOGIN_DISABLED`` apply, and a
request that must log in first gets the app's ``unauthorized`` answer, a 401
or a redirect to ``login_view`` with ``next``, with its flashed message.

What Flask-Login's ``after_request`` does to the remember-me cookie (set after
``login_user(remember=True)``, refreshed with
``REMEMBER_COOKIE_REFRESH_EACH_REQUEST``, cleared on logout or by strong session
protection) is done on the port's response by the middleware that
:meth:`FlaskLogin.install` adds, for requests that used the adapter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from flask import Flask, current_app
from flask.sessions import SessionMixin
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge._exceptions import ConfigurationError
from bridge._porting.flask_context import (
    answer_with,
    install_flask_answers,
    require_extension,
    require_flask_app,
    run_in_flask,
)

# Where the remember-me cookies to send wait in the request's scope, by name.
_COOKIES = "flask2fastapi.login_cookies"


class FlaskLogin:
    """Flask-Login's ``current_user``, ``login_required`` and friends as FastAPI dependencies.

    ::

        login = FlaskLogin()  # the hybrid's Flask app; or FlaskLogin(create_app())
        login.install(app)

        CurrentUser = Annotated[Any, Depends(login.current_user)]
        LoggedIn = Annotated[Any, Depends(login.login_required)]

    The user is the one the app's ``user_loader`` returned, loaded in a worker
    thread inside a Flask request context, which is gone when the route runs:
    what the loader loaded can be read, a lazy relationship cannot (load it
    in the loader, or query it again on the async side).
    """

    def __init__(self, flask_app: Flask | None = None) -> None:
        require_extension("flask_login", "flask-login", "FlaskLogin")
        self.flask_app = flask_app

    def install(self, app: FastAPI) -> None:
        """Let *app* send the app's own ``unauthorized`` answers and remember-me cookies.

        Call it before adding ``FlaskSessionMiddleware``, as ``install_error_envelope``.
        """
        install_flask_answers(app)
        app.add_middleware(RememberCookies)

    async def current_user(self, request: Request) -> Any:
        """``flask_login.current_user``: the logged-in user, else the app's anonymous user."""
        return await self._run(request, _current_user)

    async def login_required(self, request: Request) -> Any:
        """The user, as a view under ``@login_required`` sees it; else the app's
        ``unauthorized`` answer."""
        return await self._run(request, functools.partial(_passes, _login_required()))

    async def fresh_login_required(self, request: Request) -> Any:
        """The user, as under ``@fresh_login_required``; else ``unauthorized`` or
        ``needs_refresh``'s answer."""
        return await self._run(request, functools.partial(_passes, _fresh_login_required()))

    async def login_user(
        self,
        request: Request,
        user: Any,
        remember: bool = False,
        duration: timedelta | None = None,
        force: bool = False,
        fresh: bool = True,
    ) -> bool:
        """``flask_login.login_user``: log *user* in on the Flask session, which both
        sides read. ``False`` when the user is not active, as Flask-Login answers."""
        from flask_login import login_user

        login = functools.partial(login_user, user, remember, duration, force, fresh)
        return bool(await self._run(request, login))

    async def logout_user(self, request: Request) -> bool:
        """``flask_login.logout_user``: forget the user and, if set, the remember-me cookie."""
        from flask_login import logout_user

        return bool(await self._run(request, logout_user))

    async def _run(self, request: Request, function: Callable[[], Any]) -> Any:
        flask_app = require_flask_app(
            request, self.flask_app, "FlaskLogin", "FlaskLogin(create_app())"
        )
        if getattr(flask_app, "login_manager", None) is None:
            raise ConfigurationError(
                f"the Flask app {flask_app.name!r} has no LoginManager: "
                "call login_manager.init_app(app) in its factory"
            )
        session = request.scope.get("session")
        if not isinstance(session, SessionMixin):
            raise ConfigurationError(
                "FlaskLogin reads the Flask session, and the request has none: "
                "add FlaskSessionMiddleware to the FastAPI app"
            )
        cookies: dict[str, str] = request.scope.setdefault(_COOKIES, {})
        step = functools.partial(_then_update_cookies, function, cookies)
        return await run_in_flask(request, flask_app, step, session=session)


def _current_user() -> Any:
    from flask_login import current_user

    return current_user._get_current_object()


def _login_required() -> Callable[..., Any]:
    from flask_login import login_required

    return login_required  # type: ignore[no-any-return]


def _fresh_login_required() -> Callable[..., Any]:
    from flask_login import fresh_login_required

    return fresh_login_required  # type: ignore[no-any-return]


class _Passed:
    def __init__(self, user: Any) -> None:
        self.user = user


def _passes(decorator: Callable[..., Any]) -> Any:
    """The user if a view under *decorator* would run; else the decorator's answer."""
    result = decorator(lambda: _Passed(_current_user()))()
    if isinstance(result, _Passed):
        return result.user
    answer_with(result)


def _then_update_cookies(function: Callable[[], Any], cookies: dict[str, str]) -> Any:
    """``function()``, then Flask-Login's ``after_request`` on the remember-me cookie,
    whose ``Set-Cookie`` goes to *cookies* for :class:`RememberCookies` to send."""
    try:
        return function()
    finally:
        response = current_app.response_class()
        current_app.login_manager._update_remember_cookie(response)  # type: ignore[attr-defined]
        for header in response.headers.getlist("Set-Cookie"):
            cookies[header.partition("=")[0]] = header  # the last word on each cookie wins


class RememberCookies:
    """Adds the remember-me cookies the request's :class:`FlaskLogin` calls decided on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start" and scope.get(_COOKIES):
                headers = [
                    (b"set-cookie", value.encode("latin-1")) for value in scope[_COOKIES].values()
                ]
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_cookies)
