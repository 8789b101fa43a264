"""The hybrid server: FastAPI for ported routes, the Flask app for the rest.

:class:`HybridApp` is the ASGI app uvicorn serves. Per request it:

1. drops headers spelled with underscores (a2wsgi and Werkzeug fold ``_`` and
   ``-`` together, so ``X-Auth_User`` would arrive as ``X-Auth-User``);
2. asks the :class:`~bridge._serving.routing.RouteTable` which side answers, with the
   URL map bound by the Flask app itself (:meth:`HybridApp.url_adapter`);
3. reads the body, up to ``max_body_size`` (413 in the legacy shape beyond it,
   before any worker thread is taken), and hands it on with a Content-Length,
   so chunked bodies reach Flask intact;
4. tags the response with ``x-bridge-side`` unless told not to.

Lifespan events go to the FastAPI app, which owns the async engine. When its
shutdown is over, :meth:`HybridApp.close` stops the legacy side's threads and
closes the Flask app's connections, so that a stopped server leaves no
connection behind and SQLite folds its write-ahead log into the database file.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio.to_thread
from a2wsgi.wsgi import build_environ
from fastapi import FastAPI
from flask import Flask
from starlette.types import Message, Receive, Scope, Send
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import MapAdapter

from bridge._porting.error_envelope import flask_error_response
from bridge._serving.loading import load_fastapi_app, load_flask_app
from bridge._serving.manifest import Manifest, RouteState, load_manifest
from bridge._serving.routing import RouteTable
from bridge._serving.wsgi import BodyTooLarge, LegacyWSGI, read_body

SIDE_HEADER = b"x-bridge-side"
MANIFEST_ENV = "FLASK2FASTAPI_MANIFEST"
DEFAULT_MANIFEST = "migration.toml"


class HybridApp:
    """One ASGI app in front of a Flask app and a FastAPI app."""

    def __init__(self, flask_app: Flask, fastapi_app: FastAPI, manifest: Manifest) -> None:
        self.flask_app = flask_app
        self.fastapi_app = fastapi_app
        self.manifest = manifest
        self.options = manifest.options
        fastapi_app.state.flask_app = flask_app  # for the port's Flask adapters (flask_context.py)
        self.routes = RouteTable(
            flask_app.url_map, fastapi_app.routes, manifest, bind=self.url_adapter
        )
        self.legacy = LegacyWSGI(flask_app, threads=self.options.wsgi_threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.fastapi_app(scope, receive, self._on_lifespan(send))
            return
        if scope["type"] != "http":
            await self.fastapi_app(scope, receive, send)
            return
        headers, declared, chunked = _scan_headers(scope["headers"])
        scope = {**scope, "headers": headers}
        side = self.routes.side_for(scope)
        try:
            body = await self._read_body(declared, receive)
        except BodyTooLarge:
            await self._too_large(scope, self._tag(send, RouteState.LEGACY))
            return
        if body is None:
            return  # the client left mid-body: no side sees half a body
        if chunked or (body and declared is None):
            scope["headers"] = _with_content_length(headers, body)
        if side is RouteState.LEGACY:
            await self.legacy.respond(scope, body, receive, self._tag(send, side))
        else:
            await self.fastapi_app(scope, _replay(body, receive), self._tag(send, side))

    def url_adapter(self, scope: Scope) -> MapAdapter | None:
        """The Flask app's URL adapter for this request, as it builds it to dispatch.

        The environ is the one the legacy side gets, so ``SERVER_NAME``,
        subdomain and host matching, ``TRUSTED_HOSTS`` (raising its 400) and any
        override of ``create_url_adapter`` decide the rule exactly as in Flask.
        """
        full_scope = {**_SCOPE_DEFAULTS, **scope}
        environ = build_environ(full_scope, None)  # type: ignore[arg-type]
        request = self.flask_app.request_class(cast("dict[str, Any]", environ))
        return self.flask_app.create_url_adapter(request)

    async def _read_body(self, declared: bytes | None, receive: Receive) -> bytes | None:
        """:func:`read_body` up to ``max_body_size``; a declared size over it reads nothing."""
        limit = self.options.max_body_size
        if declared is not None:
            size = declared.decode("latin-1").strip()
            if size.isdigit() and int(size) > limit:
                raise BodyTooLarge
        return await read_body(receive, limit=limit)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        scope = {
            **scope,
            "headers": [(k, v) for k, v in scope["headers"] if k != b"content-length"],
        }
        environ = build_environ(scope, None)  # type: ignore[arg-type]
        limit = self.options.max_body_size
        error = RequestEntityTooLarge(
            f"The request body is larger than the limit of {limit} bytes."
        )
        # Off the event loop, in case the app's error handler does I/O; not in the
        # legacy side's own pool, whose threads this answer is meant to spare.
        status, headers, body = await anyio.to_thread.run_sync(
            flask_error_response, self.flask_app, error, dict(environ)
        )
        headers = [(k, v) for k, v in headers if k not in (b"content-length", b"connection")]
        headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _tag(self, send: Send, side: RouteState) -> Send:
        if not self.options.side_header:
            return send
        value = side.value.encode()

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (SIDE_HEADER, value)],
                }
            await send(message)

        return tagged

    def close(self) -> None:
        """Stop the legacy side's threads and close the Flask app's pooled connections.

        The server calls it when it shuts down; call it yourself when you built
        the hybrid only to inspect it. A request that comes later opens new
        connections, so closing twice is harmless.
        """
        self.legacy.shutdown()
        dispose_flask_engines(self.flask_app)

    def _on_lifespan(self, send: Send) -> Send:
        async def on_lifespan(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                # Closing a connection may wait on the network: off the event loop.
                await anyio.to_thread.run_sync(self.close)
            await send(message)

        return on_lifespan


def build_hybrid(manifest: Manifest) -> HybridApp:
    """Import the apps the manifest names and put them behind one ASGI app.

    A manifest that names no FastAPI app serves every route from Flask.
    """
    manifest.check_apps()
    flask_app = load_flask_app(manifest.flask_app, manifest.path)
    fastapi_app = load_fastapi_app(manifest.fastapi_app, manifest.path)
    return HybridApp(flask_app, fastapi_app, manifest)


def dispose_flask_engines(flask_app: Flask) -> None:
    """Close the pooled connections of every Flask-SQLAlchemy engine of *flask_app*.

    Flask-SQLAlchemy never disposes its engines: a process that ends without this
    leaves PostgreSQL to notice the dropped connections, and leaves SQLite's
    committed rows in the ``-wal`` file instead of the database file.
    """
    extension = flask_app.extensions.get("sqlalchemy")
    if extension is None:
        return
    with flask_app.app_context():
        for engine in extension.engines.values():
            engine.dispose()


def hybrid_from_env() -> HybridApp:
    """The hybrid of the manifest ``FLASK2FASTAPI_MANIFEST`` names, ``./migration.toml``
    by default: the factory for servers that import the app in each worker.

    ::

        gunicorn -k uvicorn_worker.UvicornWorker -w 4 'bridge:hybrid_from_env()'
        uvicorn --factory bridge:hybrid_from_env --workers 4
    """
    return build_hybrid(load_manifest(os.environ.get(MANIFEST_ENV, DEFAULT_MANIFEST)))


# Keys a2wsgi needs that callers asking only "which side?" may leave out.
_SCOPE_DEFAULTS: dict[str, Any] = {"http_version": "1.1", "query_string": b""}


Headers = list[tuple[bytes, bytes]]


def _scan_headers(headers: Headers) -> tuple[Headers, bytes | None, bool]:
    """In one pass, as every request pays for it: the headers without the names
    spelled with an underscore, the declared Content-Length, and whether the body
    is chunked."""
    declared: bytes | None = None
    chunked = underscored = False
    for name, value in headers:
        if name == b"content-length":
            declared = value if declared is None else declared
        elif name == b"transfer-encoding":
            chunked = True
        elif b"_" in name:
            underscored = True
    if underscored:
        headers = [(name, value) for name, value in headers if b"_" not in name]
    return headers, declared, chunked


def _with_content_length(headers: Headers, body: bytes) -> Headers:
    kept = [(k, v) for k, v in headers if k not in (b"transfer-encoding", b"content-length")]
    return [*kept, (b"content-length", str(len(body)).encode())]


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives the buffered body once, then waits for the disconnect."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
