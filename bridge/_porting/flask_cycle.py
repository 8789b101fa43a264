"""The legacy Flask app's own request cycle around a port: errors, hooks, session.

:func:`install_flask_behaviour` makes a FastAPI app answer as the Flask app
would around its routes, by running the Flask app's own code rather than a
copy of it:

- **errors**: an HTTP error raised in a port (Werkzeug's ``HTTPException``,
  Starlette's and FastAPI's ``HTTPException``, FastAPI's own 404 and 405), a
  request validation error (Flask's ``BadRequest``, 400) and any exception no
  handler took are answered by the Flask app's registered error handlers, and
  without one by Werkzeug's default page: a JSON envelope, ``{"msg": ...}`` or
  HTML, whatever the app produces. An exception the app has a handler for
  (say ``OperationalError``) goes to that handler; any other is logged by the
  app's ``log_exception``, sent to ``got_request_exception``, and answered by
  the app's 500 handler, even with ``TESTING`` or ``PROPAGATE_EXCEPTIONS`` on.
  A driver's connection error that SQLAlchemy leaves unwrapped (asyncpg's) is
  handed over as the ``OperationalError`` the legacy side would have raised.
- **session**: ``request.session`` is opened and saved by
  ``flask_app.session_interface``, so a custom or server-side interface works
  on both sides.
- **after_request**: the response goes through ``process_response``: the
  functions of ``after_this_request``, the blueprint's and the app's
  ``after_request`` functions (so extensions built on them, such as
  flask-cors), then ``save_session``.

Flask's code runs in a request context built from the ASGI request: its
method, path, query string, headers and cookies, matched against the Flask
app's URL map (so ``request.blueprint`` and ``request.endpoint`` are those of
the legacy route), with an empty body. It runs in a worker thread of
AnyIO's default limiter, since handlers and hooks may do I/O; only the signed
cookie interface Flask ships with is opened and saved on the event loop, being
CPU work alone. ``g`` starts empty, holding what the port put in
:func:`flask_g`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from flask import Flask
from flask import g as flask_globals
from flask.ctx import RequestContext, _AppCtxGlobals
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from flask.signals import got_request_exception
from flask.wrappers import Response as FlaskResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.exceptions import (
    BadRequest,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    default_exceptions,
)
from werkzeug.exceptions import HTTPException as WerkzeugHTTPException

from bridge._exceptions import ConfigurationError, PageNotFound
from bridge._porting.db_errors import is_database_unavailable
from bridge._porting.error_envelope import ServerErrorEnvelope, phrase
from bridge._porting.flask_context import environ_of
from bridge._porting.sessions import FlaskSessionMiddleware, mark_accessed_on_use

if TYPE_CHECKING:
    from bridge._serving.manifest import BridgeOptions

Headers = list[tuple[bytes, bytes]]
Rendered = tuple[int, Headers, bytes]

G_SCOPE_KEY = "flask.g"


def install_flask_behaviour(
    app: FastAPI,
    flask_app: Flask,
    *,
    errors: bool = True,
    session: bool = True,
    after_request: bool = False,
) -> None:
    """Answer errors, sessions and app-wide hooks of *app* with *flask_app*'s own code.

    See the module docstring for what each part does. *after_request* implies
    *session*: Flask saves the session after the hooks, which may change it.
    A ``FlaskSessionMiddleware`` or ``install_error_envelope`` the app added
    already is replaced. Installing twice with the same Flask app does nothing
    more; the hybrid installs it when the manifest's ``[bridge]`` asks.

    Raises :class:`~bridge.ConfigurationError` when the Flask app's session
    interface cannot be used from the port (see :func:`check_session_interface`),
    or, with *session* off, cannot be read by the app's ``FlaskSessionMiddleware``.
    """
    installed = getattr(app.state, "flask_behaviour", None)
    if installed is not None:
        if installed.flask_app is not flask_app:
            raise ConfigurationError(
                "this FastAPI app already answers as another Flask app: "
                "give each Flask app its own FastAPI app"
            )
        return
    session = session or after_request
    if session:
        check_session_interface(flask_app)
    else:
        refuse_cookie_only_session(app, flask_app)
    cycle = FlaskCycle(flask_app)
    app.state.flask_behaviour = cycle
    _drop_middleware(app, FlaskSessionMiddleware if session else None)
    if errors:
        _install_errors(app, cycle)
    if session:
        app.add_middleware(FlaskCycleMiddleware, cycle=cycle, after_request=after_request)


def install_from_options(app: FastAPI, flask_app: Flask, options: BridgeOptions) -> None:
    """Install what the manifest's ``[bridge]`` asks for: the hybrid calls it.

    Asked for nothing, it still refuses a ``FlaskSessionMiddleware`` that
    cannot read the Flask app's sessions, which would log every user out of
    the ports.
    """
    if options.flask_errors or options.flask_session or options.after_request:
        install_flask_behaviour(
            app,
            flask_app,
            errors=options.flask_errors,
            session=options.flask_session,
            after_request=options.after_request,
        )
        return
    refuse_cookie_only_session(app, flask_app)


def refuse_cookie_only_session(app: FastAPI, flask_app: Flask) -> None:
    """Refuse a ``FlaskSessionMiddleware`` on *app* that cannot read *flask_app*'s sessions."""
    interface = flask_app.session_interface
    cookie_only = any(_is(m, FlaskSessionMiddleware) for m in app.user_middleware)
    if cookie_only and type(interface) is not SecureCookieSessionInterface:
        raise ConfigurationError(
            f"the Flask app keeps its sessions with {type(interface).__name__}, which "
            "FlaskSessionMiddleware cannot read: set [bridge] flask_session = true "
            "so the ports use the app's session_interface"
        )


def check_session_interface(flask_app: Flask) -> None:
    """Refuse a session interface the port cannot call, with the reason and the fix."""
    interface = flask_app.session_interface
    name = type(interface).__name__
    if not isinstance(interface, SessionInterface):
        raise ConfigurationError(
            f"the Flask app's session_interface is a {name}, not a flask.sessions."
            "SessionInterface: subclass SessionInterface so the port can open and save it"
        )
    for method in ("open_session", "save_session"):
        if inspect.iscoroutinefunction(getattr(interface, method)):
            raise ConfigurationError(
                f"{name}.{method} is a coroutine function, which Flask never awaits: "
                "make it a plain function"
            )
    if isinstance(interface, SecureCookieSessionInterface) and not flask_app.secret_key:
        raise ConfigurationError(
            "SECRET_KEY is not set: the async side needs the Flask app's key "
            "to read its session cookie"
        )


async def flask_g(connection: HTTPConnection) -> _AppCtxGlobals:
    """The ``g`` this request's Flask code sees: a FastAPI dependency.

    What a port stores here is in ``flask.g`` when the Flask app's error
    handlers and ``after_request`` functions run for the request, as a
    ``before_request`` function's values would be::

        async def load_user(request: Request, g: Annotated[Any, Depends(flask_g)]) -> None:
            g.user = await users.get(request.session.get("user_id"))

    A coroutine, so that FastAPI does not take a worker thread to call it; it
    takes an ``HTTPConnection`` so that websocket routes may depend on it too.
    """
    namespace = connection.scope.get(G_SCOPE_KEY)
    if namespace is None:
        namespace = connection.scope[G_SCOPE_KEY] = _AppCtxGlobals()
    assert isinstance(namespace, _AppCtxGlobals)
    return namespace


class FlaskCycle:
    """The pieces of Flask's request cycle a port borrows, for one Flask app.

    The methods that run Flask code are synchronous; the middleware and
    handlers run them in a worker thread.
    """

    def __init__(self, flask_app: Flask) -> None:
        self.flask_app = flask_app
        interface = flask_app.session_interface
        # Flask's own signed cookie does no I/O: cheaper on the loop than a thread hop.
        self.session_on_loop = type(interface) is SecureCookieSessionInterface

    def request_context(self, scope: Scope, session: SessionMixin | None) -> RequestContext:
        """A request context for the ASGI request: *session* if given, else the app's."""
        return RequestContext(self.flask_app, environ_of(scope), session=session)

    def open_session(self, scope: Scope) -> SessionMixin:
        """The session ``session_interface`` opens for the request, or its null session."""
        app = self.flask_app
        request = app.request_class(environ_of(scope))
        session = app.session_interface.open_session(app, request)
        if session is None:
            session = app.session_interface.make_null_session(app)
        return mark_accessed_on_use(session)

    def save_session(self, session: SessionMixin, status: int, headers: Headers) -> Headers:
        """*headers* once ``session_interface`` has saved *session* into them."""
        app = self.flask_app
        if app.session_interface.is_null_session(session):
            return headers
        response = _flask_response(app, status, headers)
        app.session_interface.save_session(app, session, response)
        return _asgi_headers(response.headers.to_wsgi_list())

    def render_error(self, scope: Scope, exc: BaseException) -> Rendered:
        """The Flask app's response to *exc* raised while answering the request."""
        with _PushedContext(self, scope) as app:
            return _rendered(app.make_response(self._handle(app, exc)))

    def process_response(
        self, scope: Scope, status: int, headers: Headers, body: bytes
    ) -> Rendered:
        """The response after the ``after_request`` functions and ``save_session``.

        A streamed response passes an empty *body* and keeps its own: the
        functions may change its headers, not its body.
        """
        with _PushedContext(self, scope) as app:
            return _rendered(app.process_response(_flask_response(app, status, headers, body)))

    @staticmethod
    def _handle(app: Flask, exc: BaseException) -> Any:
        """``handle_user_exception``, then what ``handle_exception`` does without
        re-raising: the app's 500 even when ``PROPAGATE_EXCEPTIONS`` is on."""
        exc = _as_flask_sees(exc)
        try:
            try:
                raise exc  # handle_user_exception re-raises "the exception being handled"
            except BaseException:
                return app.handle_user_exception(exc)  # type: ignore[arg-type]
        except BaseException as unhandled:
            if unhandled is not exc:
                raise
        got_request_exception.send(app, _async_wrapper=app.ensure_sync, exception=exc)
        app.log_exception((type(exc), exc, exc.__traceback__))  # type: ignore[arg-type]
        return app.handle_user_exception(InternalServerError(original_exception=exc))


class _PushedContext:
    """A pushed request context holding the port's session and ``g``."""

    def __init__(self, cycle: FlaskCycle, scope: Scope) -> None:
        session = scope.get("session")
        self.context = cycle.request_context(
            scope, session if isinstance(session, SessionMixin) else None
        )
        self.globals: _AppCtxGlobals | None = scope.get(G_SCOPE_KEY)
        self.app = cycle.flask_app

    def __enter__(self) -> Flask:
        self.context.push()
        if self.globals is not None:
            vars(flask_globals._get_current_object()).update(vars(self.globals))
        return self.app

    def __exit__(self, *exc_info: object) -> None:
        self.context.pop()


class FlaskCycleMiddleware:
    """Opens the Flask session before a port runs; saves it, after the
    ``after_request`` functions if asked, once the port has answered.

    With *after_request*, a response whose body comes in one message is held
    until the functions have run on it; a streamed one has its status and
    headers processed before its first chunk goes out, and its chunks pass
    through untouched.
    """

    def __init__(self, app: ASGIApp, cycle: FlaskCycle, after_request: bool) -> None:
        self.app = app
        self.cycle = cycle
        self.after_request = after_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope["session"] = await self._run(self.cycle.open_session, scope)
        if scope["type"] == "websocket":  # read only: no response to save it in
            await self.app(scope, receive, send)
        elif self.after_request:
            await self.app(scope, receive, self._processing(scope, send))
        else:
            await self.app(scope, receive, self._saving(scope, send))

    def _saving(self, scope: Scope, send: Send) -> Send:
        async def saving(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = await self._run(
                    self.cycle.save_session,
                    scope["session"],
                    message["status"],
                    list(message.get("headers", [])),
                )
                message = {**message, "headers": headers}
            await send(message)

        return saving

    def _processing(self, scope: Scope, send: Send) -> Send:
        start: Message | None = None
        streaming = False

        async def processing(message: Message) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start":
                start = message
                return
            if start is None or streaming or message["type"] != "http.response.body":
                await send(message)
                return
            streaming = message.get("more_body", False)
            body = b"" if streaming else message.get("body", b"")
            status, headers, body = await anyio.to_thread.run_sync(
                self.cycle.process_response,
                scope,
                start["status"],
                list(start.get("headers", [])),
                body,
            )
            if streaming:
                headers = _keep_length(headers, start.get("headers", []))
                body = message.get("body", b"")
            await send({**start, "status": status, "headers": headers})
            await send({**message, "body": body})

        return processing

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self.cycle.session_on_loop:
            return function(*args)
        return await anyio.to_thread.run_sync(function, *args)


def _install_errors(app: FastAPI, cycle: FlaskCycle) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        return await _render(cycle, request.scope, _as_werkzeug(exc))

    async def bad_request(request: Request, _exc: Exception) -> Response:
        return await _render(cycle, request.scope, BadRequest())

    async def page_not_found(request: Request, _exc: Exception) -> Response:
        return await _render(cycle, request.scope, NotFound())

    def unhandled(scope: Scope, exc: Exception) -> ASGIApp:
        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            await (await _render(cycle, scope, exc))(scope, receive, send)

        return respond

    app.exception_handlers.pop(PoolTimeoutError, None)  # the Flask app's handlers decide
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(WerkzeugHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(PageNotFound, page_not_found)
    _drop_middleware(app, ServerErrorEnvelope)
    # The innermost middleware, as install_error_envelope's: a 500 passes through
    # every other one, as Flask's passes through after_request and save_session.
    app.user_middleware.append(Middleware(ServerErrorEnvelope, respond=unhandled))


async def _render(cycle: FlaskCycle, scope: Scope, exc: BaseException) -> Response:
    status, headers, body = await anyio.to_thread.run_sync(cycle.render_error, scope, exc)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


def _as_werkzeug(exc: Exception) -> WerkzeugHTTPException:
    """The Werkzeug exception ``abort()`` raises for *exc*'s status and message."""
    if isinstance(exc, WerkzeugHTTPException):
        return exc
    assert isinstance(exc, HTTPException)
    code, detail, headers = exc.status_code, exc.detail, dict(exc.headers or {})
    description = None if detail in ("", phrase(code)) else detail
    error: WerkzeugHTTPException
    if code == 405:
        allowed = [m.strip() for m in headers.pop("Allow", "").split(",") if m.strip()]
        error = MethodNotAllowed(valid_methods=allowed, description=description)
    elif code in default_exceptions:
        error = default_exceptions[code](description=description)
    else:
        error = WerkzeugHTTPException(description=description)
        error.code = code
    if headers:  # on Werkzeug's page, as abort() with a response would give them
        own = error.get_headers
        error.get_headers = lambda *a, **k: [*own(*a, **k), *headers.items()]  # type: ignore[method-assign]
    return error


def _as_flask_sees(exc: BaseException) -> BaseException:
    """*exc* as the legacy side would have raised it, for the app's handlers to match.

    asyncpg's connection errors (``ConnectionRefusedError``...) reach the port
    unwrapped, where psycopg's reach Flask as SQLAlchemy's ``OperationalError``:
    wrapped so, a handler the app registered for ``OperationalError`` or
    ``DBAPIError`` answers them as it answers the legacy side's.
    """
    if isinstance(exc, DBAPIError) or not is_database_unavailable(exc):
        return exc
    wrapped = OperationalError(None, None, exc)
    wrapped.__cause__ = exc
    wrapped.__traceback__ = exc.__traceback__
    return wrapped


def _drop_middleware(app: FastAPI, kind: type | None) -> None:
    if kind is not None:
        app.user_middleware[:] = [m for m in app.user_middleware if not _is(m, kind)]


def _is(middleware: Middleware, kind: type) -> bool:
    return cast(object, middleware.cls) is kind


def _flask_response(app: Flask, status: int, headers: Headers, body: bytes = b"") -> FlaskResponse:
    response = app.response_class(
        status=status,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
    )
    response.response = [body]  # set_data would replace the port's Content-Length
    return response


def _rendered(response: FlaskResponse) -> Rendered:
    return response.status_code, _asgi_headers(response.headers.to_wsgi_list()), response.get_data()


def _asgi_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _keep_length(headers: Headers, original: Iterable[tuple[bytes, bytes]]) -> Headers:
    """A streamed response's headers with its own Content-Length, if it had one."""
    kept = [(k, v) for k, v in headers if k != b"content-length"]
    return kept + [(k, v) for k, v in original if k == b"content-length"]
