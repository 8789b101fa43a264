"""The hybrid server: FastAPI for ported routes, the Flask app for the rest.

:class:`HybridApp` is the ASGI app uvicorn serves. Per request it:

1. drops headers spelled with underscores (a2wsgi and Werkzeug fold ``_`` and
   ``-`` together, so ``X-Auth_User`` would arrive as ``X-Auth-User``);
2. asks the :class:`~bridge._serving.routing.RouteTable` which route it is, with the
   URL map bound by the Flask app itself (:meth:`HybridApp.url_adapter`), and the
   :class:`~bridge._rollout.runtime.Rollout` which side answers: the manifest's
   state unless the rollout store overrides it, a canary by the user's bucket;
3. reads the body, up to ``max_body_size`` (413 in the legacy shape beyond it,
   before any worker thread is taken), and hands it on with a Content-Length,
   so chunked bodies reach Flask intact;
4. tags the response with ``x-bridge-side`` unless told not to (a shadowed
   request is answered by legacy, and tagged so);
5. counts the answer for the rollout and its metrics, and for a route in
   shadow starts the port beside it (:mod:`bridge._rollout.live_shadow`).

``[rollout] metrics_path``, when set, is answered here before any app sees it,
and so is ``[rollout] dashboard_path`` once an admin token is set
(:mod:`bridge._rollout.dashboard`); neither is counted as the app's traffic.

Lifespan events go to the FastAPI app, which owns the async engine. At startup
the worker opens the rollout store and starts its poll loop; at shutdown it
stops both and cancels the shadows still running. When the FastAPI app's
shutdown is over, :meth:`HybridApp.close` stops the legacy side's threads and
closes the Flask app's connections, so that a stopped server leaves no
connection behind and SQLite folds its write-ahead log into the database file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
from a2wsgi.wsgi import build_environ
from fastapi import FastAPI
from flask import Flask
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import MapAdapter

from bridge._exceptions import ManifestError
from bridge._porting.error_envelope import flask_error_response
from bridge._porting.flask_cycle import install_from_options
from bridge._rollout.live_shadow import TEE_LIMIT, Recorder, Shadows
from bridge._rollout.metrics import NULL_METRICS, Metrics
from bridge._rollout.runtime import Rollout, StoreFactory
from bridge._serving.loading import load_fastapi_app, load_flask_app
from bridge._serving.manifest import Manifest, RouteState, load_manifest
from bridge._serving.routing import RouteTable, Target
from bridge._serving.wsgi import BodyTooLarge, LegacyWSGI, read_body, replay_body

if TYPE_CHECKING:
    from bridge._rollout.dashboard import Dashboard
    from bridge._rollout.store import RolloutStore

SIDE_HEADER = b"x-bridge-side"
MANIFEST_ENV = "FLASK2FASTAPI_MANIFEST"
DEFAULT_MANIFEST = "migration.toml"
METRICS_TOKEN_ENV = "FLASK2FASTAPI_METRICS_TOKEN"
ADMIN_TOKEN_ENV = "FLASK2FASTAPI_ADMIN_TOKEN"

logger = logging.getLogger("flask2fastapi.rollout")


class HybridApp:
    """One ASGI app in front of a Flask app and a FastAPI app.

    *store* opens the rollout store when the server starts (see
    :func:`rollout_store`); without it the routes stand where the manifest
    puts them and nothing is shared with other workers. *metrics* receives
    every answer and shadow outcome.
    """

    def __init__(
        self,
        flask_app: Flask,
        fastapi_app: FastAPI,
        manifest: Manifest,
        *,
        store: StoreFactory | None = None,
        metrics: Metrics = NULL_METRICS,
        metrics_app: ASGIApp | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.flask_app = flask_app
        self.fastapi_app = fastapi_app
        self.manifest = manifest
        self.options = manifest.options
        # The side header each answer leaves with, or none ([bridge] side_header).
        self._side_headers: dict[RouteState, tuple[bytes, bytes]] = (
            {side: (SIDE_HEADER, side.value.encode()) for side in RouteState}
            if self.options.side_header
            else {}
        )
        fastapi_app.state.flask_app = flask_app  # for the port's Flask adapters (flask_context.py)
        install_from_options(fastapi_app, flask_app, self.options)
        self.routes = RouteTable(
            flask_app.url_map, fastapi_app.routes, manifest, bind=self.url_adapter
        )
        self.legacy = LegacyWSGI(flask_app, threads=self.options.wsgi_threads)
        self.rollout = Rollout(
            manifest,
            store=store,
            metrics=metrics,
            read_session=self.read_session,
            on_manifest=self.reload,
        )
        self.shadows = Shadows(fastapi_app, self.rollout)
        self.metrics_path = manifest.rollout.metrics_path if metrics_app else None
        self.metrics_app = metrics_app
        self.dashboard = self._dashboard(admin_token) if admin_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.fastapi_app(scope, self._on_rollout(receive), self._on_lifespan(send))
            return
        if scope["type"] != "http":
            await self.fastapi_app(scope, receive, send)
            return
        if scope["path"] == self.metrics_path:
            assert self.metrics_app is not None
            await self.metrics_app(scope, receive, send)
            return
        if self.dashboard is not None and self.dashboard.serves(scope["path"]):
            await self.dashboard(scope, receive, send)  # not the application's traffic
            return
        headers, declared, chunked = _scan_headers(scope["headers"])
        scope = {**scope, "headers": headers}
        target = self.routes.target_for(scope)
        side = self.rollout.side(target, scope)
        try:
            body = await self._read_body(declared, receive)
        except BodyTooLarge:
            started = time.perf_counter()
            await self._too_large(
                scope, Recorder(send, 0, self._side_headers.get(RouteState.LEGACY))
            )
            self.rollout.served(target, RouteState.LEGACY, 413, time.perf_counter() - started)
            return
        if body is None:
            return  # the client left mid-body: no side sees half a body
        if chunked or (body and declared is None):
            scope["headers"] = _with_content_length(headers, body)
        await self._serve(target, side, scope, body, receive, send)

    async def _serve(
        self,
        target: Target,
        side: RouteState,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
    ) -> None:
        """Answer from *side*, count the answer, and start the shadow of a route in shadow."""
        plan = self.rollout.plan(target) if side is RouteState.SHADOW else None
        shadowed = plan is not None and self.shadows.wanted(scope, plan)
        served = RouteState.ASYNC if side is RouteState.ASYNC else RouteState.LEGACY
        recorder = Recorder(send, TEE_LIMIT if shadowed else 0, self._side_headers.get(served))
        started = time.perf_counter()
        try:
            if served is RouteState.LEGACY:
                await self.legacy.respond(scope, body, receive, recorder)
            else:
                await self.fastapi_app(scope, replay_body(body, receive), recorder)
        finally:  # an app that raised answers 500, from the server
            status = 500 if recorder.status is None else recorder.status
            self.rollout.served(target, served, status, time.perf_counter() - started)
        if shadowed:
            assert plan is not None
            self.shadows.start(target, plan, scope, body, recorder)

    def _dashboard(self, token: str) -> Dashboard:
        from bridge._rollout.dashboard import Dashboard  # Jinja is loaded only when it is on

        path = self.manifest.rollout.dashboard_path
        taken = [
            rule.rule
            for rule in self.flask_app.url_map.iter_rules()
            if rule.rule.startswith(path) or rule.rule == path.rstrip("/")
        ]
        if taken:
            raise ManifestError(
                f"[rollout] dashboard_path {path} is also a path of the Flask app "
                f"({taken[0]}): choose another dashboard_path",
                path=self.manifest.path,
            )
        return Dashboard(
            token=token,
            path=path,
            store=lambda: self.rollout.store,
            manifest=lambda: self.manifest,
            routes=lambda: self.routes.routes,
        )

    def url_adapter(self, scope: Scope) -> MapAdapter | None:
        """The Flask app's URL adapter for this request, as it builds it to dispatch.

        The environ is the one the legacy side gets, so ``SERVER_NAME``,
        subdomain and host matching, ``TRUSTED_HOSTS`` (raising its 400) and any
        override of ``create_url_adapter`` decide the rule exactly as in Flask.
        """
        return self.flask_app.create_url_adapter(self._flask_request(scope))

    def read_session(self, scope: Scope) -> Mapping[str, Any] | None:
        """The Flask session of this request, opened by the app's own session
        interface; ``None`` when it has none or cannot open it."""
        try:
            interface = self.flask_app.session_interface
            return interface.open_session(self.flask_app, self._flask_request(scope))
        except Exception:  # a tampered cookie: the user is bucketed by address
            return None

    def _flask_request(self, scope: Scope) -> Any:
        full_scope = {**_SCOPE_DEFAULTS, **scope}
        environ = build_environ(full_scope, None)  # type: ignore[arg-type]
        return self.flask_app.request_class(cast("dict[str, Any]", environ))

    def reload(self, manifest: Manifest) -> None:
        """Route by *manifest* from now on, unless it does not fit the apps.

        Routes, their rules and ``[rollout]`` take effect at once; ``[apps]``
        and ``[bridge]`` need a restart.
        """
        try:
            self.routes.reload(manifest)
        except ManifestError as exc:
            logger.error("manifest not reloaded, still serving by the previous one: %s", exc)
            return
        old, self.manifest = self.manifest, manifest
        self.rollout.use_manifest(manifest)
        logger.info("manifest reloaded from %s", manifest.path)
        apps = (old.flask_app, old.fastapi_app) != (manifest.flask_app, manifest.fastapi_app)
        if apps or old.options != manifest.options:
            logger.warning("manifest: changes to [apps] and [bridge] apply at the next restart")

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

    def close(self) -> None:
        """Stop the legacy side's threads and close the Flask app's pooled connections.

        The server calls it when it shuts down; call it yourself when you built
        the hybrid only to inspect it. A request that comes later opens new
        connections, so closing twice is harmless.
        """
        self.legacy.shutdown()
        dispose_flask_engines(self.flask_app)

    def _on_rollout(self, receive: Receive) -> Receive:
        """Start the rollout before the FastAPI app starts; stop it, and the shadows
        still running, before the FastAPI app shuts its engine down."""

        async def on_rollout() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.rollout.start()
            elif message["type"] == "lifespan.shutdown":
                await self.shadows.aclose()
                await self.rollout.stop()
            return message

        return on_rollout

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
    metrics, metrics_app = metrics_for(manifest, flask_app, fastapi_app)
    store = rollout_store(manifest) if manifest.fastapi_app is not None else None
    return HybridApp(
        flask_app,
        fastapi_app,
        manifest,
        store=store,
        metrics=metrics,
        metrics_app=metrics_app,
        admin_token=manifest.rollout.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None,
    )


def metrics_for(
    manifest: Manifest, flask_app: Flask, fastapi_app: FastAPI
) -> tuple[Metrics, ASGIApp | None]:
    """The metrics of ``[rollout] metrics_path`` and the app that answers there, or none."""
    if manifest.rollout.metrics_path is None:
        return NULL_METRICS, None
    token = manifest.rollout.metrics_token or os.environ.get(METRICS_TOKEN_ENV)
    if not token:
        raise ManifestError(
            f"[rollout] metrics_path is set but no token protects it: set metrics_token "
            f"or the environment variable {METRICS_TOKEN_ENV}",
            path=manifest.path,
        )
    # The Prometheus implementation is imported only when metrics are on.
    from bridge._rollout.metrics import PrometheusMetrics, metrics_app

    metrics = PrometheusMetrics(flask_app, fastapi_app)
    return metrics, metrics_app(metrics, token)


def rollout_store(manifest: Manifest) -> StoreFactory:
    """Opens the store of ``[rollout] database``, else of the app's ``DATABASE_URL``.

    A hybrid with no FastAPI app has nothing to roll out and opens none.
    """

    def open_store() -> RolloutStore:
        from bridge._porting.database import DatabaseSettings
        from bridge._rollout.store import RolloutStore

        url = manifest.rollout.database or DatabaseSettings.from_env().url
        return RolloutStore.from_url(url)

    return open_store


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
