"""Errors in the legacy app's shape, on both sides of the bridge.

Clients of a migrated route must not see FastAPI's ``{"detail": ...}`` or its
422. :func:`install_error_envelope` makes a FastAPI app answer every error with
the body the legacy app's error handlers give, built by a function the
user passes (the demo's is ``shop.errors.error_body``). Status names and default
messages are Werkzeug's, the ones Flask's ``abort()`` uses.

:func:`flask_error_response` renders an error through the Flask app's own
error handlers; the hybrid uses it for errors it answers itself (413), so they
have the legacy shape for any Flask app. For ports, with a Flask app at hand,
:func:`~bridge.install_flask_behaviour` does the same for every error; this
module's envelope serves an app without one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.exceptions import HTTPException as WerkzeugHTTPException
from werkzeug.exceptions import default_exceptions
from werkzeug.http import HTTP_STATUS_CODES

from bridge._exceptions import PageNotFound
from bridge._porting.db_errors import is_bad_value, is_database_unavailable
from bridge._porting.responses import FlaskJSONResponse as JSONResponse

logger = logging.getLogger("flask2fastapi")

ErrorBody = Callable[[int, str, str], Any]
"""``(status code, status name, message) -> JSON body`` of an error response."""

RETRY_AFTER_SECONDS = 1


def status_name(code: int) -> str:
    """The name Werkzeug gives a status code, as in ``NotFound().name``."""
    return HTTP_STATUS_CODES.get(code, "Unknown Error")


def phrase(code: int) -> str | None:
    """The reason phrase Starlette's ``HTTPException`` takes as its detail when given none."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return None


def default_message(code: int) -> str:
    """The message ``abort(code)`` gives when no description is passed."""
    exception = default_exceptions.get(code)
    return str(exception.description) if exception is not None else status_name(code)


def install_error_envelope(
    app: FastAPI, body: ErrorBody, *, messages: Mapping[int, str] | None = None
) -> None:
    """Answer every error of *app* with the legacy envelope built by *body*.

    *messages* replaces Werkzeug's default message for a status code where the
    legacy app's handler says something else (for example its 503 text).

    Covers ``HTTPException`` (raised by routes, and Starlette's own 404 and
    405), request validation errors (400, as Flask answers bad input, never
    422), pages past the end (404), a database pool that stays exhausted for
    ``pool_timeout`` or a database that cannot be reached (503 with
    ``Retry-After``; see :func:`~bridge.is_database_unavailable`), a value the
    database refused (400, :func:`~bridge.is_bad_value`) and any other
    exception (500, logged with its traceback).
    """

    defaults = dict(messages or {})

    def respond(code: int, message: str | None, headers: dict[str, str] | None = None) -> Response:
        if code in _NO_BODY or code < 200:
            return Response(status_code=code, headers=headers)  # HTTP forbids a body here
        text = message or defaults.get(code) or default_message(code)
        return JSONResponse(body(code, status_name(code), text), status_code=code, headers=headers)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail == phrase(exc.status_code):
            detail = None  # Starlette's own 404/405 carry the phrase, not a message
        return respond(exc.status_code, detail, dict(exc.headers or {}))

    async def validation_error(_request: Request, _exc: Exception) -> Response:
        return respond(400, None)

    async def page_not_found(_request: Request, _exc: Exception) -> Response:
        return respond(404, None)

    async def pool_timeout(_request: Request, exc: Exception) -> Response:
        logger.warning("database pool exhausted: %s", exc)
        return respond(503, None, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    def unhandled(scope: Scope, exc: Exception) -> Response:
        if is_database_unavailable(exc):
            logger.warning("database unavailable: %s", exc)
            return respond(503, None, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        if is_bad_value(exc):
            logger.warning("the database refused a value of the request: %s", exc)
            return respond(400, None)
        _log_exception(scope, exc)
        return respond(500, None)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(PageNotFound, page_not_found)
    app.add_exception_handler(PoolTimeoutError, pool_timeout)
    # Not an exception handler: Starlette answers those outside every middleware,
    # so a 500 would lose what middleware adds, such as the session cookie.
    app.add_middleware(ServerErrorEnvelope, respond=unhandled)


_NO_BODY = frozenset({204, 205, 304})


def _log_exception(scope: Scope, exc: Exception) -> None:
    """Log *exc* with its traceback, in the words Flask's ``log_exception`` uses.

    On the toolkit's logger rather than the server's (``uvicorn.error``): the
    message is the app's, whichever server runs it, and it sits beside the
    toolkit's other warnings, where logging configuration can route it.
    """
    logger.error(
        "Exception on %s [%s]", scope.get("path", ""), scope.get("method", ""), exc_info=exc
    )


class ServerErrorEnvelope:
    """Answers an exception no handler took with the ASGI app (such as a
    ``Response``) *respond* builds for it.

    The exception is not re-raised: the server would then close the
    connection, even after a complete response, and a request pipelined
    behind it would run but never be answered. *respond* logs it (see
    :func:`install_error_envelope`). Only an exception raised once the
    response has started but before it is complete is re-raised, so that the
    server closes a connection whose response was cut short.

    It runs inside the middleware added after it, so call
    :func:`install_error_envelope` before adding ``FlaskSessionMiddleware``.
    :func:`~bridge.install_flask_behaviour` uses it too, with the Flask app's
    own 500 as the answer.
    """

    def __init__(self, app: ASGIApp, respond: Callable[[Scope, Exception], ASGIApp]) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = complete = False

        async def tracked(message: Message) -> None:
            nonlocal started, complete
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if not started:
                await self.respond(scope, exc)(scope, receive, send)
            elif complete:
                _log_exception(scope, exc)  # answered already: the connection stays usable
            else:
                raise


def flask_error_response(
    flask_app: Any, error: WerkzeugHTTPException, environ: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Render *error* through the Flask app's error handlers for the request in *environ*.

    Returns status, headers and body. Only the error handler runs, not the view
    or ``before_request``; it runs in the calling thread.
    """
    with flask_app.request_context(environ):
        response = flask_app.make_response(flask_app.handle_user_exception(error))
        body = response.get_data()
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
    ]
    return response.status_code, headers, body
