"""Flask's signed session cookie, read and written on the async side.

Flask and Starlette both call their session cookie ``session`` and cannot read
each other's, so a user logged in on a legacy route would look anonymous on a
ported one. :class:`FlaskSessionMiddleware` speaks Flask's format instead,
with Flask's own ``SecureCookieSessionInterface``: the same signer, the same
tagged JSON, and the same rules for when the cookie is set, refreshed or
deleted and when ``Vary: Cookie`` is added. A login or logout on either side
is seen by the other.

Routes read and write ``request.session`` as they would Flask's ``session``.

This middleware needs no Flask app, and knows Flask's signed cookie alone.
With the Flask app at hand, :func:`~bridge.install_flask_behaviour` (or the
manifest's ``[bridge] flask_session``) opens and saves the session with the
app's own ``session_interface`` instead, whatever it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.datastructures import HeaderSet
from werkzeug.http import parse_set_header
from werkzeug.sansio.http import parse_cookie

from bridge._exceptions import ConfigurationError


def _marks_accessed(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: SecureCookieSession, *args: Any, **kwargs: Any) -> Any:
        self.accessed = True
        return method(self, *args, **kwargs)

    return wrapper


class FlaskSession(SecureCookieSession):
    """Flask's cookie session, marked *accessed* by any read or write.

    Flask marks the session accessed whenever a view touches the ``session``
    proxy, and then answers with ``Vary: Cookie``; a port that reads
    ``request.session`` must do the same.
    """

    _accessed_on_use = True
    __getitem__ = _marks_accessed(SecureCookieSession.__getitem__)
    __contains__ = _marks_accessed(SecureCookieSession.__contains__)
    __iter__ = _marks_accessed(SecureCookieSession.__iter__)
    __len__ = _marks_accessed(SecureCookieSession.__len__)
    get = _marks_accessed(SecureCookieSession.get)
    keys = _marks_accessed(SecureCookieSession.keys)
    values = _marks_accessed(SecureCookieSession.values)
    items = _marks_accessed(SecureCookieSession.items)
    __setitem__ = _marks_accessed(SecureCookieSession.__setitem__)
    __delitem__ = _marks_accessed(SecureCookieSession.__delitem__)
    clear = _marks_accessed(SecureCookieSession.clear)
    pop = _marks_accessed(SecureCookieSession.pop)
    popitem = _marks_accessed(SecureCookieSession.popitem)
    setdefault = _marks_accessed(SecureCookieSession.setdefault)
    update = _marks_accessed(SecureCookieSession.update)


_USES = tuple(name for name, value in vars(FlaskSession).items() if hasattr(value, "__wrapped__"))


@functools.cache
def _marking(cls: type[Any]) -> type[Any]:
    uses = {name: _marks_accessed(getattr(cls, name)) for name in _USES if hasattr(cls, name)}
    namespace = {"__slots__": (), "__module__": cls.__module__, "_accessed_on_use": True}
    return type(cls.__name__, (cls,), {**namespace, **uses})


def mark_accessed_on_use(session: SessionMixin) -> SessionMixin:
    """*session*, now marked *accessed* by any read or write, as :class:`FlaskSession` is.

    For a session some ``session_interface`` opened: its class becomes a
    subclass of its own, so ``isinstance`` checks and ``save_session`` see the
    class they expect. A session that is not a dict is left as it is.
    """
    if isinstance(session, dict) and not getattr(type(session), "_accessed_on_use", False):
        # A dict subclass is unhashable; its class is not, whatever mypy infers.
        session.__class__ = _marking(type(session))  # type: ignore[arg-type]
    return session


@dataclass(frozen=True)
class FlaskSessionConfig:
    """The Flask settings that decide how the session cookie looks."""

    secret_key: str | bytes
    secret_key_fallbacks: Sequence[str | bytes] = ()
    cookie_name: str = "session"
    domain: str | None = None
    path: str = "/"
    httponly: bool = True
    secure: bool = False
    samesite: str | None = None
    partitioned: bool = False
    lifetime: timedelta = field(default_factory=lambda: timedelta(days=31))
    refresh_each_request: bool = True

    @classmethod
    def from_flask_config(cls, config: Mapping[str, Any]) -> FlaskSessionConfig:
        """Read the keys Flask reads: ``SECRET_KEY``, ``SESSION_COOKIE_*`` and the rest."""
        secret_key = config.get("SECRET_KEY")
        if not secret_key:
            raise ConfigurationError(
                "SECRET_KEY is not set: the async side needs the Flask app's key "
                "to read its session cookie"
            )
        lifetime = config.get("PERMANENT_SESSION_LIFETIME", timedelta(days=31))
        if isinstance(lifetime, int | float):  # Flask takes seconds as any number
            lifetime = timedelta(seconds=lifetime)
        return cls(
            secret_key=secret_key,
            secret_key_fallbacks=tuple(config.get("SECRET_KEY_FALLBACKS") or ()),
            cookie_name=config.get("SESSION_COOKIE_NAME", "session"),
            domain=config.get("SESSION_COOKIE_DOMAIN") or None,
            path=config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
            httponly=config.get("SESSION_COOKIE_HTTPONLY", True),
            secure=config.get("SESSION_COOKIE_SECURE", False),
            samesite=config.get("SESSION_COOKIE_SAMESITE"),
            partitioned=config.get("SESSION_COOKIE_PARTITIONED", False),
            lifetime=lifetime,
            refresh_each_request=config.get("SESSION_REFRESH_EACH_REQUEST", True),
        )


class FlaskSessionCookie:
    """Load and dump Flask session cookies with one app's settings.

    The signing, the cookie's attributes and the decision to set, refresh or
    delete it are Flask's own ``SecureCookieSessionInterface``, run on a bare
    Flask app holding these settings alone.
    """

    def __init__(self, config: FlaskSessionConfig) -> None:
        self.config = config
        self.app = _settings_app(config)
        self.interface = SecureCookieSessionInterface()
        serializer = self.interface.get_signing_serializer(self.app)
        assert serializer is not None  # the config holds a secret key
        self.serializer = serializer

    def load(self, value: str | None) -> FlaskSession:
        """The session in a cookie value; an empty session if it is missing, forged or expired."""
        if not value:
            return FlaskSession()
        try:
            data = self.serializer.loads(value, max_age=int(self.config.lifetime.total_seconds()))
        except BadSignature:
            return FlaskSession()
        return FlaskSession(data)

    def dump(self, data: Mapping[str, Any]) -> str:
        """A signed cookie value holding *data*."""
        return str(self.serializer.dumps(dict(data)))

    def set_cookie_headers(self, session: SecureCookieSession) -> tuple[list[str], bool]:
        """The ``Set-Cookie`` values to send, and whether to add ``Vary: Cookie``:
        what Flask's ``save_session`` puts in a response."""
        response = self.app.response_class()
        self.interface.save_session(self.app, session, response)
        return response.headers.getlist("Set-Cookie"), "Cookie" in response.vary


def _settings_app(config: FlaskSessionConfig) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SECRET_KEY_FALLBACKS=list(config.secret_key_fallbacks),
        SESSION_COOKIE_NAME=config.cookie_name,
        SESSION_COOKIE_DOMAIN=config.domain,
        SESSION_COOKIE_PATH=config.path,
        SESSION_COOKIE_HTTPONLY=config.httponly,
        SESSION_COOKIE_SECURE=config.secure,
        SESSION_COOKIE_SAMESITE=config.samesite,
        SESSION_COOKIE_PARTITIONED=config.partitioned,
        PERMANENT_SESSION_LIFETIME=config.lifetime,
        SESSION_REFRESH_EACH_REQUEST=config.refresh_each_request,
    )
    return app


class FlaskSessionMiddleware:
    """Puts the Flask session in ``scope["session"]`` and saves it as Flask would."""

    def __init__(self, app: ASGIApp, config: FlaskSessionConfig) -> None:
        self.app = app
        self.cookie = FlaskSessionCookie(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session = self.cookie.load(_cookie_value(scope, self.cookie.config.cookie_name))
        scope["session"] = session

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._save(session, MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_session)

    def _save(self, session: SecureCookieSession, headers: MutableHeaders) -> None:
        cookies, vary = self.cookie.set_cookie_headers(session)
        if vary:
            values = HeaderSet()
            for value in headers.getlist("vary"):  # every Vary header, merged into one
                values.update(parse_set_header(value))
            values.add("Cookie")
            del headers["vary"]
            headers["vary"] = values.to_header()
        for cookie in cookies:
            headers.append("set-cookie", cookie)


def _cookie_value(scope: Scope, name: str) -> str | None:
    """The cookie *name* exactly as Flask reads it on the legacy side of the hybrid.

    a2wsgi joins repeated ``Cookie`` headers into ``HTTP_COOKIE`` with ``,``,
    as WSGI servers do, and Werkzeug parses that without decoding it further:
    with two headers, ``session=...,theme=dark`` is one cookie whose value no
    signature matches. Reading the headers any other way would log in, on the
    ported routes only, a client that the legacy routes see as anonymous.
    """
    raw = ",".join(
        value.decode("latin-1") for key, value in scope.get("headers", ()) if key == b"cookie"
    )
    return parse_cookie(raw).get(name) if raw else None
