"""``migration.toml``: which app is which, and where each route stands.

::

    [apps]
    flask = "legacy_flask_app:create_app"
    fastapi = "async_app:create_app"   # optional until a route is async

    [bridge]                  # optional; every key has a default
    side_header = true
    wsgi_threads = 8
    max_body_size = 16777216
    header_timeout = 60       # seconds
    allow_development_key = false
    flask_errors = false      # ports' errors answered by the Flask app's handlers
    flask_session = false     # ports' session opened and saved by its session_interface
    after_request = false     # ports' responses through its after_request functions

    [routes]
    "GET /api/products" = "async"
    "GET /api/products/<int:product_id>" = "legacy"
    "POST /api/orders" = { state = "async", ignore_columns = ["orders.created_at"] }

    [shadow]                  # optional; how shadow cases log in a "user"
    login = { session_key = "user_id", query = "SELECT id FROM users WHERE email = :user" }
    # or, for a JWT app: login = { token = "app.auth:mint_token", query = "..." }
    ignore_headers = ["x-trace-id"]  # rules for every route

Routes are keyed by HTTP method and Flask rule; unlisted routes are legacy. A
route given as a table may carry shadow-comparison rules besides its state
(see :class:`bridge._shadow.compare.Rules`); ``[shadow]`` may carry rules
for every route.
Parsing does no I/O beyond reading the file and knows nothing of the apps;
:mod:`bridge._serving.routing` checks the keys against them.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from bridge._exceptions import ManifestError
from bridge._shadow.rules import Rules

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteState(StrEnum):
    """Where a route stands in the migration, and so which side answers its requests."""

    LEGACY = "legacy"  # Flask answers
    ASYNC = "async"  # the FastAPI port answers


@dataclass(frozen=True)
class RouteKey:
    method: str
    rule: str

    @classmethod
    def parse(cls, key: str) -> RouteKey:
        method, _, rule = key.strip().partition(" ")
        method, rule = method.upper(), rule.strip()
        if method not in HTTP_METHODS or not rule.startswith("/"):
            raise ManifestError(
                f"route key {key!r} must be an HTTP method and a Flask rule, "
                'such as "GET /api/products/<int:product_id>"'
            )
        return cls(method, rule)

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"


@dataclass(frozen=True)
class BridgeOptions:
    """How the hybrid server behaves; the ``[bridge]`` table of the manifest."""

    side_header: bool = True
    # As many threads as a common gunicorn gthread worker: more let CPU-bound
    # views fight over the GIL (a p99 twice gunicorn's with 40); an I/O-bound
    # app sets what it ran under gunicorn (guide 04 and 08).
    wsgi_threads: int = 8
    max_body_size: int = 16 * 1024 * 1024
    # Seconds a client has to send a request's line and headers, as nginx's
    # client_header_timeout; then 408 and the connection closes.
    header_timeout: float = 60.0
    # Serve a Flask app whose SECRET_KEY is a published development key, on a
    # loopback address only and with a warning: the demo's manifest sets it.
    allow_development_key: bool = False
    # The Flask app's own error handlers, session interface and after_request
    # functions around the ports (bridge._porting.flask_context); after_request
    # implies flask_session, since Flask saves the session after the hooks.
    flask_errors: bool = False
    flask_session: bool = False
    after_request: bool = False


@dataclass(frozen=True)
class LoginRule:
    """How a shadow case's ``user`` logs in: ``[shadow] login``.

    The query runs with ``:user`` bound to the case's user. Its first column
    is stored in the Flask session under ``session_key``, and/or given to the
    function ``token`` names (``"package.module:function"``, called in the Flask
    app's context), whose string is sent as ``Authorization: Bearer <token>``.
    """

    query: str
    session_key: str | None = None
    token: str | None = None

    @classmethod
    def from_mapping(cls, data: object) -> LoginRule:
        if (
            not isinstance(data, Mapping)
            or not set(data) <= {"session_key", "query", "token"}
            or "query" not in data
            or not ({"session_key", "token"} & set(data))
            or not all(isinstance(v, str) and v for v in data.values())
        ):
            raise ManifestError(
                '[shadow] login must be { session_key = "user_id", '
                'query = "SELECT id FROM users WHERE email = :user" }, '
                'or give token = "package.module:mint_token" instead of or with session_key'
            )
        return cls(
            query=data["query"], session_key=data.get("session_key"), token=data.get("token")
        )


@dataclass(frozen=True)
class Manifest:
    flask_app: str | None = None
    fastapi_app: str | None = None
    routes: Mapping[RouteKey, RouteState] = field(default_factory=dict)
    options: BridgeOptions = field(default_factory=BridgeOptions)
    rules: Mapping[RouteKey, Rules] = field(default_factory=dict)
    login: LoginRule | None = None
    path: str | None = None
    shadow_rules: Rules = field(default_factory=Rules)
    """``[shadow]``'s rules: they apply to every route, with the route's own."""

    def state(self, method: str, rule: str) -> RouteState:
        """The state of a route; unlisted routes are legacy."""
        return self.routes.get(RouteKey(method, rule), RouteState.LEGACY)

    @property
    def async_routes(self) -> list[RouteKey]:
        """The routes FastAPI answers, in the manifest's order."""
        return [key for key, state in self.routes.items() if state is RouteState.ASYNC]

    def check_apps(self) -> None:
        """Refuse an async route when ``[apps]`` names no FastAPI app to serve it.

        Without ``fastapi`` the hybrid serves every route from Flask, which is
        how an app goes behind it before its first port.
        """
        if self.fastapi_app is None and self.async_routes:
            raise ManifestError(
                f"route {self.async_routes[0]} is async but [apps] names no fastapi app: "
                'add fastapi = "package:create_app", or set the route to legacy',
                path=self.path,
            )


def load_manifest(path: str | Path) -> Manifest:
    """Read and parse a manifest file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:  # "No such file or directory" is all the OS would add
        raise ManifestError(
            "no such file: give the path of a migration.toml", path=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the file: {exc}", path=str(path)) from exc
    return parse_manifest(text, path=str(path))


def parse_manifest(text: str, *, path: str | None = None) -> Manifest:
    """Parse the TOML text of a manifest; *path* is only used in messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"not valid TOML: {exc}", path=path) from exc
    try:
        _check_keys(data, {"apps", "bridge", "routes", "shadow"}, "the top level")
        apps = _table(data, "apps")
        _check_keys(apps, {"flask", "fastapi"}, "[apps]")
        routes, rules = _routes(_table(data, "routes"))
        shadow = _table(data, "shadow")
        shadow_rules = Rules.from_mapping(shadow, where="[shadow]", other_keys=("login",))
        login = LoginRule.from_mapping(shadow["login"]) if "login" in shadow else None
        return Manifest(
            flask_app=_optional_str(apps, "flask", "[apps]"),
            fastapi_app=_optional_str(apps, "fastapi", "[apps]"),
            routes=routes,
            options=_options(_table(data, "bridge")),
            rules=rules,
            login=login,
            path=path,
            shadow_rules=shadow_rules,
        )
    except ManifestError as exc:  # the same error, now naming the file
        raise ManifestError(str(exc), path=path) from None


def _routes(table: Mapping[str, Any]) -> tuple[dict[RouteKey, RouteState], dict[RouteKey, Rules]]:
    routes: dict[RouteKey, RouteState] = {}
    rules: dict[RouteKey, Rules] = {}
    for raw_key, value in table.items():
        key = RouteKey.parse(raw_key)
        if key in routes:
            raise ManifestError(f"route {key} is listed twice")
        if isinstance(value, Mapping):
            options = {k: v for k, v in value.items() if k != "state"}
            where = f'[routes."{raw_key}"]'
            rules[key] = Rules.from_mapping(options, where=where, other_keys=("state",))
            value = value.get("state", RouteState.LEGACY.value)
        routes[key] = _state(raw_key, value)
    return routes, rules


def _state(key: str, value: object) -> RouteState:
    for state in RouteState:
        if value == state.value:
            return state
    choices = ", ".join(state.value for state in RouteState)
    raise ManifestError(f"route {key!r} has state {value!r}: use one of {choices}")


_BRIDGE_KEYS = {
    "side_header",
    "wsgi_threads",
    "max_body_size",
    "header_timeout",
    "allow_development_key",
    "flask_errors",
    "flask_session",
    "after_request",
}


def _options(table: Mapping[str, Any]) -> BridgeOptions:
    _check_keys(table, _BRIDGE_KEYS, "[bridge]")
    return BridgeOptions(
        side_header=_bool(table, "side_header", BridgeOptions.side_header),
        wsgi_threads=_positive_int(table, "wsgi_threads", BridgeOptions.wsgi_threads),
        max_body_size=_positive_int(table, "max_body_size", BridgeOptions.max_body_size),
        header_timeout=_positive_number(table, "header_timeout", BridgeOptions.header_timeout),
        allow_development_key=_bool(
            table, "allow_development_key", BridgeOptions.allow_development_key
        ),
        flask_errors=_bool(table, "flask_errors", BridgeOptions.flask_errors),
        flask_session=_bool(table, "flask_session", BridgeOptions.flask_session),
        after_request=_bool(table, "after_request", BridgeOptions.after_request),
    )


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ManifestError(f"[bridge] {key} must be true or false, got {value!r}")
    return value


def _positive_int(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(f"[bridge] {key} must be a whole number above 0, got {value!r}")
    return value


def _positive_number(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ManifestError(f"[bridge] {key} must be a number of seconds above 0, got {value!r}")
    return float(value)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ManifestError(f"[{key}] must be a table")
    return value


def _optional_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ManifestError(f'{where} {key} must be an import string such as "package:create_app"')
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ManifestError(
            f"unknown key {unknown[0]!r} in {where}: expected one of {', '.join(sorted(allowed))}"
        )
