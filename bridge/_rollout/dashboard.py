"""The migration dashboard: where every route stands, served by the hybrid.

Off unless an admin token is set (``FLASK2FASTAPI_ADMIN_TOKEN``, or ``[rollout]
admin_token``); then the hybrid answers ``[rollout] dashboard_path`` (default
``/_bridge/``) itself, before the legacy app sees it, and counts none of its
requests as the application's.

Every page and every data URL wants the token: as ``Authorization: Bearer
TOKEN``, or through the login form, which sets a signed cookie (``HttpOnly``,
``SameSite=Strict``, ``Secure`` over HTTPS, for 12 hours). The cookie is named
``flask2fastapi_admin``, not ``session``, so it never meets the Flask app's.
Changes (promote, demote, clear, a canary's percentage) are posted forms that
carry a CSRF token bound to the login; they are written to the store as the
CLI's are, with the actor ``dashboard``, and every worker applies them at its
next poll.

The pages read the shared store, never one worker's memory, so every worker
and machine shows the same thing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio.to_thread
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from bridge._exceptions import ConfigurationError
from bridge._rollout import commands
from bridge._rollout import overview as views
from bridge._rollout.pages import chart, environment, ms, percent, when
from bridge._rollout.store import RolloutStore
from bridge._serving.manifest import Manifest, RouteState
from bridge._serving.routing import FlaskRoute

COOKIE = "flask2fastapi_admin"
COOKIE_AGE = 12 * 3600
ACTOR = "dashboard"
_BEARER = "bearer"  # the login nonce of a request that sent the token itself

_COLUMNS = (
    ("route", "Route"),
    ("configured", "Configured"),
    ("effective", "Served"),
    ("legacy", "Legacy requests"),
    ("async", "Async requests"),
    ("p_legacy", "Legacy p50 / p95"),
    ("p_async", "Async p50 / p95"),
    ("errors", "5xx legacy / async"),
    ("match", "Shadow match"),
    ("demotion", "Last demotion"),
)

_SORT_KEYS: dict[str, Callable[[views.RouteRow], Any]] = {
    "route": lambda row: (row.key.rule, row.key.method),
    "configured": lambda row: list(RouteState).index(row.configured),
    "effective": lambda row: list(RouteState).index(row.effective),
    "legacy": lambda row: row.hour.served_legacy,
    "async": lambda row: row.hour.served_async,
    "p_legacy": lambda row: row.latencies.quantile("legacy", 0.95) or 0.0,
    "p_async": lambda row: row.latencies.quantile("async", 0.95) or 0.0,
    "errors": lambda row: row.hour.error_rate("async") or 0.0,
    "match": lambda row: -1.0 if row.total.match_rate is None else row.total.match_rate,
    "demotion": lambda row: row.last_demotion.id if row.last_demotion else 0,
}


class Dashboard:
    """The dashboard's ASGI app, answering the paths under *path*.

    *store*, *manifest* and *routes* are called per request, so that a
    reloaded manifest shows at once, and the store once the server opened it.
    """

    def __init__(
        self,
        *,
        token: str,
        path: str,
        store: Callable[[], RolloutStore | None],
        manifest: Callable[[], Manifest],
        routes: Callable[[], Iterable[FlaskRoute]],
    ) -> None:
        self.path = path.rstrip("/") + "/"
        self._store = store
        self.manifest = manifest
        self.routes = routes
        self._token = token.encode()
        key = hashlib.sha256(b"flask2fastapi dashboard\0" + self._token).digest()
        self._key = key
        self._cookies = URLSafeTimedSerializer(key, salt="login")

    @property
    def store(self) -> RolloutStore:
        store = self._store()
        assert store is not None  # _respond answered 503 otherwise
        return store

    def serves(self, path: str) -> bool:
        return path == self.path.rstrip("/") or path.startswith(self.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._respond(request)
        response.headers.setdefault("cache-control", "no-store")
        response.headers.setdefault("x-frame-options", "DENY")
        response.headers.setdefault("referrer-policy", "same-origin")
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        page = request.url.path[len(self.path) :] if request.url.path != self.path[:-1] else None
        if page is None:
            return RedirectResponse(self.path, status_code=308)
        method = request.method
        if page == "login":
            if method == "POST":
                return await self._login(request)
            return self._login_page(request, status=200)
        login = self._login_of(request)
        if login is None:
            if page == "data.json":
                return JSONResponse({"error": "the admin token is required"}, status_code=401)
            if page in ("", "route") and method == "GET":
                return self._login_page(request, status=401)
            return Response("the admin token is required\n", status_code=401)
        csrf = self._csrf(login)
        if self._store() is None:
            return Response(
                "the rollout store is not open: the server opens it at start-up when the "
                "manifest names a FastAPI app; see the server's log\n",
                status_code=503,
            )
        if method == "POST":
            form = dict(parse_qsl((await request.body()).decode("latin-1")))
            if not hmac.compare_digest(form.get("csrf", ""), csrf):
                return Response(
                    "the form's CSRF token is missing or stale: reload the page and try again\n",
                    status_code=403,
                )
            if page == "logout":
                response = RedirectResponse(f"{self.path}login", status_code=303)
                response.delete_cookie(COOKIE, path=self.path)
                return response
            if page == "action":
                return await self._action(form)
            return Response("not found\n", status_code=404)
        if method not in ("GET", "HEAD"):
            return Response("method not allowed\n", status_code=405)
        if page == "":
            return await self._overview(request, csrf)
        if page == "route":
            return await self._route(request, csrf)
        if page == "data.json":
            return await self._data()
        return Response("not found\n", status_code=404)

    # -- login ------------------------------------------------------------------------

    def _login_of(self, request: Request) -> str | None:
        """The request's login nonce, or ``None`` without a valid token or cookie."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            return _BEARER if hmac.compare_digest(given.strip().encode(), self._token) else None
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            nonce = self._cookies.loads(cookie, max_age=COOKIE_AGE)
        except BadSignature:
            return None
        return nonce if isinstance(nonce, str) and nonce != _BEARER else None

    def _csrf(self, login: str) -> str:
        return hmac.new(self._key, b"csrf\0" + login.encode(), hashlib.sha256).hexdigest()

    async def _login(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if not hmac.compare_digest(form.get("token", "").encode(), self._token):
            return self._login_page(request, status=401, error="That is not the admin token.")
        response = RedirectResponse(self.path, status_code=303)
        response.set_cookie(
            COOKIE,
            self._cookies.dumps(secrets.token_urlsafe(16)),
            max_age=COOKIE_AGE,
            path=self.path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def _login_page(self, request: Request, *, status: int, error: str | None = None) -> Response:
        html = environment.get_template("login").render(base=self.path, csrf=None, error=error)
        return HTMLResponse(html, status_code=status)

    # -- pages ------------------------------------------------------------------------

    async def _read(self) -> tuple[Manifest, views.Overview]:
        manifest = self.manifest()
        routes = list(self.routes())
        found = await anyio.to_thread.run_sync(views.overview, manifest, routes, self.store)
        return manifest, found

    async def _overview(self, request: Request, csrf: str) -> Response:
        _, overview = await self._read()
        query = request.query_params
        state = query.get("state") if query.get("state") in set(RouteState) else None
        sort = query.get("sort", "route")
        sort = sort if sort in _SORT_KEYS else "route"
        order = "desc" if query.get("order") == "desc" else "asc"
        rows = [row for row in overview.rows if state is None or row.effective == state]
        rows.sort(key=_SORT_KEYS[sort], reverse=order == "desc")
        share = await anyio.to_thread.run_sync(lambda: views.series(self.store, None))

        def link(**changes: str | None) -> str:
            values = {"state": state, "sort": sort, "order": order, **changes}
            kept = {name: value for name, value in values.items() if value}
            return f"{self.path}?{urlencode(kept)}" if kept else self.path

        return self._render(
            "overview",
            request,
            csrf,
            overview=overview,
            rows=rows,
            state=state,
            states=[each.value for each in RouteState],
            sort=sort,
            order=order,
            columns=_COLUMNS,
            link=link,
            share=[("var(--async)", "", _percentages(share.share_async))],
        )

    async def _route(self, request: Request, csrf: str) -> Response:
        _, overview = await self._read()
        row = _find(overview, request.query_params.get("key", ""))
        if row is None:
            return Response("no such route\n", status_code=404)

        def read() -> tuple[views.Series, list[Any]]:
            return views.series(self.store, row.key), self.store.mismatches(row.key, limit=20)

        series, mismatches = await anyio.to_thread.run_sync(read)
        latency = [
            (f"var(--{side})", dash, _milliseconds(values[side]))
            for side in ("legacy", "async")
            for dash, values in (("", series.p50), ("4 3", series.p95))
        ]
        return self._render(
            "route",
            request,
            csrf,
            row=row,
            mismatches=mismatches,
            latency=latency,
            share=[("var(--async)", "", _percentages(series.share_async))],
        )

    def _render(self, template: str, request: Request, csrf: str, **context: Any) -> Response:
        html = environment.get_template(template).render(
            base=self.path,
            csrf=csrf,
            chart=chart,
            show=_show,
            ms=ms,
            percent=percent,
            when=when,
            message=request.query_params.get("done"),
            error=request.query_params.get("error"),
            **context,
        )
        return HTMLResponse(html)

    async def _data(self) -> Response:
        _, overview = await self._read()
        return JSONResponse(
            {
                "ported": overview.ported,
                "routes": len(overview.rows),
                "async_share": overview.async_share,
                "demoted": overview.demoted,
                "rows": [_row_data(row) for row in overview.rows],
            }
        )

    # -- changes ----------------------------------------------------------------------

    async def _action(self, form: dict[str, str]) -> Response:
        manifest, overview = await self._read()
        row = _find(overview, form.get("key", ""))
        if row is None:
            return Response("no such route\n", status_code=404)
        back = f"{self.path}route?key={_quote(str(row.key))}"
        try:
            outcome = await anyio.to_thread.run_sync(self._change, manifest, row, form)
        except ConfigurationError as exc:
            outcome = commands.Outcome(str(exc), ok=False)
        said = {"done" if outcome.ok else "error": outcome.text}
        return RedirectResponse(f"{back}&{urlencode(said)}", status_code=303)

    def _change(
        self, manifest: Manifest, row: views.RouteRow, form: dict[str, str]
    ) -> commands.Outcome:
        """The change the form asks for, made as the CLI's command makes it."""
        action, route = form.get("action"), row.route
        if action == "demote":
            reason = "demoted from the dashboard"
            return commands.demote(self.store, manifest, route, reason=reason, actor=ACTOR)
        if action == "clear":
            return commands.clear(self.store, manifest, route, actor=ACTOR)
        if action != "promote":
            raise ConfigurationError(f"unknown action {action!r}: promote, demote or clear")
        target = form.get("state", "")
        if target not in commands.PROMOTE_TARGETS:
            raise ConfigurationError(f"cannot promote to {target!r}: shadow, canary or async")
        state = RouteState(target)
        return commands.promote(
            self.store,
            manifest,
            route,
            to=state,
            percent=_percent(form.get("percent", "")) if state is RouteState.CANARY else None,
            force=bool(form.get("force")),
            actor=ACTOR,
        )


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 100:
        raise ConfigurationError(
            f"a canary's percent must be a number above 0 to 100, got {text!r}"
        )
    return value


def _find(overview: views.Overview, key: str) -> views.RouteRow | None:
    return next((row for row in overview.rows if str(row.key) == key), None)


def _quote(text: str) -> str:
    return urlencode({"": text})[1:]


def _percentages(values: list[float | None]) -> list[float | None]:
    return [None if v is None else v * 100 for v in values]


def _milliseconds(values: list[float | None]) -> list[float | None]:
    return [None if v is None else v * 1000 for v in values]


def _show(part: dict[str, Any]) -> str:
    return json.dumps(part, indent=2, ensure_ascii=False)


def _row_data(row: views.RouteRow) -> dict[str, Any]:
    return {
        "method": row.key.method,
        "rule": row.key.rule,
        "state": row.configured.value,
        "effective_state": row.effective.value,
        "percent": row.percent,
        "last_hour": {
            "served": {"legacy": row.hour.served_legacy, "async": row.hour.served_async},
            "errors": {"legacy": row.hour.errors_legacy, "async": row.hour.errors_async},
            "p50": {side: row.latencies.quantile(side, 0.5) for side in ("legacy", "async")},
            "p95": {side: row.latencies.quantile(side, 0.95) for side in ("legacy", "async")},
        },
        "shadow": {
            "compared": row.total.compared,
            "same": row.total.same,
            "different": row.total.different,
            "skipped": row.total.skipped,
        },
        "demoted": (
            {"at": row.override.at.isoformat(), "reason": row.override.reason}
            if row.override is not None and row.override.demoted
            else None
        ),
    }
