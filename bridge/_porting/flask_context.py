"""The Flask app behind a port, and its own code run for a ported request.

Some answers can only be Flask's if Flask's code gives them: an extension's
user loader, its error handlers, its config. :func:`run_in_flask` runs a
function inside a Flask request context built from the ASGI request, in a
worker thread (loaders query through Flask-SQLAlchemy, which blocks), with the
port's Flask session as ``flask.session``, so what the function writes there
is saved by ``FlaskSessionMiddleware`` as the legacy side would save it.

The hybrid tells each FastAPI app its Flask app (``app.state.flask_app``);
:func:`flask_app_of` reads it, so a port served by the hybrid or checked by a
shadow run needs no wiring. A port served on its own passes the Flask app
to the adapter instead.

When Flask's code answers instead of returning (an ``unauthorized`` redirect,
an extension's error handler), the answer is raised as :class:`FlaskAnswer`,
which :func:`install_flask_answers` makes FastAPI send as it is.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

import anyio.to_thread
from a2wsgi.wsgi import build_environ
from fastapi import FastAPI, Request
from flask import Flask, current_app
from flask.ctx import RequestContext
from flask.sessions import SessionMixin
from starlette.responses import Response
from starlette.types import Scope

from bridge._exceptions import ConfigurationError

T = TypeVar("T")

STATE_KEY = "flask_app"
"""Where the hybrid puts the Flask app on the FastAPI app's ``state``."""


class FlaskAnswer(Exception):
    """Flask's own response to a request, to be sent by the port unchanged."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def install_flask_answers(app: FastAPI) -> None:
    """Let *app* send the Flask app's own answers (an extension's refusal, a
    ``login_view`` redirect) that the adapters raise, as they are.

    ``FlaskLogin.install`` and ``FlaskJWT.install`` call it; a port that uses
    :func:`~bridge.webargs_parse` alone calls it once, as it builds the app.
    """

    async def answer(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FlaskAnswer)
        return exc.response

    app.add_exception_handler(FlaskAnswer, answer)


def require_extension(module: str, package: str, adapter: str) -> None:
    """Import the extension *module* an adapter runs, or say how to install it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"{adapter} runs the app's {package}, which is not installed: pip install {package}"
        ) from exc


def flask_app_of(request: Request, given: Flask | None = None) -> Flask | None:
    """*given*, else the Flask app the hybrid set on the request's FastAPI app, else ``None``."""
    if given is not None:
        return given
    app = request.scope.get("app")
    state = getattr(app, "state", None)
    found = getattr(state, STATE_KEY, None)
    return found if isinstance(found, Flask) else None


def require_flask_app(request: Request, given: Flask | None, adapter: str, how: str) -> Flask:
    """:func:`flask_app_of`, or a :class:`~bridge.ConfigurationError` that says how to give it."""
    flask_app = flask_app_of(request, given)
    if flask_app is None:
        raise ConfigurationError(
            f"{adapter} has no Flask app: serve the port through the hybrid, which sets "
            f"app.state.{STATE_KEY}, or pass it: {how}"
        )
    return flask_app


def environ_of(scope: Scope, body: bytes = b"") -> dict[str, Any]:
    """The WSGI environ the legacy side would get for the ASGI request in *scope*
    (see ``LegacyWSGI``), with *body*; without one, without the headers that
    frame a body. A websocket's handshake is a GET."""
    headers = scope.get("headers", ())
    if not body:
        headers = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding")]
    full = {
        "http_version": "1.1",
        "query_string": b"",
        "method": "GET",
        **scope,
        "headers": headers,
    }
    environ = cast("dict[str, Any]", build_environ(full, io.BytesIO(body)))  # type: ignore[arg-type]
    environ["wsgi.input_terminated"] = True
    return environ


async def run_in_flask(
    request: Request,
    flask_app: Flask,
    function: Callable[[], T],
    *,
    body: bool = False,
    session: SessionMixin | None = None,
) -> T:
    """``function()`` inside a Flask request context for *request*, in a worker thread.

    *session* becomes ``flask.session`` (the port's, so that writes are kept);
    without it Flask opens its own from the cookie. *body* hands the request
    body over, for code that reads ``request.form`` or ``get_json()``. An
    exception the function raises is turned into the app's answer by its
    error handlers, as ``full_dispatch_request`` would, and raised as
    :class:`FlaskAnswer`; one no handler takes propagates.
    """
    environ = environ_of(request.scope, await request.body() if body else b"")
    return await anyio.to_thread.run_sync(_run, flask_app, environ, session, function)


def _run(
    flask_app: Flask,
    environ: dict[str, Any],
    session: SessionMixin | None,
    function: Callable[[], T],
) -> T:
    with RequestContext(flask_app, environ, session=session):
        try:
            return function()
        except FlaskAnswer:
            raise
        except Exception as exc:
            handled = flask_app.handle_user_exception(exc)  # re-raises what no handler takes
            raise FlaskAnswer(to_starlette(flask_app.make_response(handled))) from exc


def answer_with(value: Any) -> NoReturn:
    """Inside :func:`run_in_flask`: stop the port's request with what a Flask view returned.

    *value* is anything a view may return (a response, a string, a tuple...),
    made a response by the app as Flask would.
    """
    raise FlaskAnswer(to_starlette(current_app.make_response(value)))


def to_starlette(response: Any) -> Response:
    """A Flask response as the port sends it: the headers Werkzeug would send, the same body.

    Only what the view or handler made: ``after_request`` functions and the
    session cookie are the port's own middleware's business.
    """
    from flask import request

    environ = request.environ
    headers = response.get_wsgi_headers(environ)
    body = b"".join(response.get_app_iter(environ))
    converted = Response(body, status_code=response.status_code)
    converted.raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    return converted
