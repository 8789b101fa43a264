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
    "GET /api/products/<int:product_id>" = { state = "canary", percent = 10 }
    "GET /api/categories" = { state = "shadow", sample = 0.1, timeout = 2 }
    "POST /api/orders" = { state = "async", ignore_columns = ["orders.created_at"] }

    [shadow]                  # optional; how shadow cases log in a "user"
    login = { session_key = "user_id", query = "SELECT id FROM users WHERE email = :user" }
    # or, for a JWT app: login = { token = "app.auth:mint_token", query = "..." }
    ignore_headers = ["x-trace-id"]  # rules for every route
    redact_fields = ["ssn"]   # hidden from recorded requests, besides password, token, ...

    [rollout]                 # optional; see RolloutOptions for every key and default
    bucket_key = "session:user_id"
    error_rate = 0.05

Routes are keyed by HTTP method and Flask rule; unlisted routes are legacy. A
route is ``legacy``, ``shadow`` (Flask answers, the port runs beside it and is
compared), ``canary`` (``percent`` of users get the port) or ``async``. A
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
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from bridge._exceptions import ManifestError
from bridge._shadow.redact import Redactor
from bridge._shadow.rules import Rules

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteState(StrEnum):
    """Where a route stands in the migration, and so which side answers its requests."""

    LEGACY = "legacy"  # Flask answers
    SHADOW = "shadow"  # Flask answers; the port runs beside it and is compared
    CANARY = "canary"  # a sticky share of users gets the port, the rest Flask
    ASYNC = "async"  # the FastAPI port answers

    @property
    def needs_port(self) -> bool:
        """Whether requests in this state run the FastAPI port, for some users or beside Flask."""
        return self is not RouteState.LEGACY


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    # functions around the ports (bridge._porting.flask_cycle); after_request
    # implies flask_session, since Flask saves the session after the hooks.
    flask_errors: bool = False
    flask_session: bool = False
    after_request: bool = False


@dataclass(frozen=True)
class RoutePlan:
    """A route's state and how it is rolled out: its entry in ``[routes]``."""

    state: RouteState = RouteState.LEGACY
    percent: float = 0.0
    """canary: the share of users, 0 to 100, that the port serves."""
    sample: float | None = None
    """shadow: the share of requests also run by the port; ``None`` is ``[rollout] sample``."""
    timeout: float | None = None
    """shadow: seconds the port may take; ``None`` is ``[rollout] shadow_timeout``."""
    shadow_writes: bool = False
    """shadow, for a method that writes: run the port too, its transaction always rolled back."""


@dataclass(frozen=True)
class RolloutOptions:
    """How routes in shadow and canary are run and judged: the ``[rollout]`` table."""

    bucket_key: str = "client"
    """Who a canary user is: ``client`` (address), ``session:KEY``, ``header:NAME`` or
    ``cookie:NAME``; the client address when the named value is absent."""
    sample: float = 1.0
    shadow_timeout: float = 5.0
    max_shadows_in_flight: int = 16
    poll_interval: float = 2.0
    """Seconds between a worker's visits to the rollout store and the manifest file."""
    error_rate: float = 0.05
    """The port's share of 5xx answers, in canary or async, that demotes a route."""
    mismatch_rate: float = 0.01
    """The share of differing shadows that demotes a route in shadow."""
    window: float = 300.0
    min_requests: int = 100
    """Requests a route needs in the window before either rate is judged."""
    promote_match_rate: float = 0.999
    promote_min_compared: int = 1000
    keep_mismatches: int = 100
    """Recorded mismatches kept per route; the oldest go first."""
    metrics_path: str | None = None
    metrics_token: str | None = None
    dashboard_path: str = "/_bridge/"
    """Where the dashboard is served, once an admin token is set."""
    admin_token: str | None = None
    """The dashboard's token; else ``FLASK2FASTAPI_ADMIN_TOKEN``. Without either it is off."""
    database: str | None = None
    """The rollout store's database URL; ``None`` is the app's ``DATABASE_URL``."""


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
    plans: Mapping[RouteKey, RoutePlan] = field(default_factory=dict)
    """Every listed route's state and rollout options."""
    rollout: RolloutOptions = field(default_factory=RolloutOptions)
    redactor: Redactor = field(default_factory=Redactor)
    """What is hidden from recorded requests and responses: ``[shadow] redact_*``."""

    def state(self, method: str, rule: str) -> RouteState:
        """The state of a route; unlisted routes are legacy."""
        return self.routes.get(RouteKey(method, rule), RouteState.LEGACY)

    def plan(self, method: str, rule: str) -> RoutePlan:
        """A route's state and rollout options; unlisted routes are legacy."""
        return self.plans.get(RouteKey(method, rule), _LEGACY_PLAN)

    @property
    def async_routes(self) -> list[RouteKey]:
        """The routes whose port runs, for some or all requests, in the manifest's order."""
        return [key for key, state in self.routes.items() if state.needs_port]

    def check_apps(self) -> None:
        """Refuse an async route when ``[apps]`` names no FastAPI app to serve it.

        Without ``fastapi`` the hybrid serves every route from Flask, which is
        how an app goes behind it before its first port.
        """
        if self.fastapi_app is None and self.async_routes:
            key = self.async_routes[0]
            raise ManifestError(
                f"route {key} is {self.routes[key]} but [apps] names no fastapi app: "
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
        _check_keys(data, {"apps", "bridge", "routes", "shadow", "rollout"}, "the top level")
        apps = _table(data, "apps")
        _check_keys(apps, {"flask", "fastapi"}, "[apps]")
        plans, rules = _routes(_table(data, "routes"))
        shadow = _table(data, "shadow")
        shadow_rules = Rules.from_mapping(
            shadow, where="[shadow]", other_keys=("login", *_REDACT_KEYS)
        )
        login = LoginRule.from_mapping(shadow["login"]) if "login" in shadow else None
        return Manifest(
            flask_app=_optional_str(apps, "flask", "[apps]"),
            fastapi_app=_optional_str(apps, "fastapi", "[apps]"),
            routes={key: plan.state for key, plan in plans.items()},
            options=_options(_table(data, "bridge")),
            rules=rules,
            login=login,
            path=path,
            shadow_rules=shadow_rules,
            plans=plans,
            rollout=_rollout(_table(data, "rollout")),
            redactor=_redactor(shadow),
        )
    except ManifestError as exc:  # the same error, now naming the file
        raise ManifestError(str(exc), path=path) from None


_PLAN_KEYS = ("state", "percent", "sample", "timeout", "shadow_writes")


def _routes(table: Mapping[str, Any]) -> tuple[dict[RouteKey, RoutePlan], dict[RouteKey, Rules]]:
    plans: dict[RouteKey, RoutePlan] = {}
    rules: dict[RouteKey, Rules] = {}
    for raw_key, value in table.items():
        key = RouteKey.parse(raw_key)
        if key in plans:
            raise ManifestError(f"route {key} is listed twice")
        if isinstance(value, Mapping):
            options = {k: v for k, v in value.items() if k not in _PLAN_KEYS}
            where = f'[routes."{raw_key}"]'
            rules[key] = Rules.from_mapping(options, where=where, other_keys=_PLAN_KEYS)
            plans[key] = _plan(key, value, where)
        else:
            plans[key] = _plan(key, {"state": value}, f'[routes."{raw_key}"]')
    return plans, rules


def _plan(key: RouteKey, table: Mapping[str, Any], where: str) -> RoutePlan:
    state = _state(str(key), table.get("state", RouteState.LEGACY.value))
    given = set(table) & set(_PLAN_KEYS[1:])
    allowed = {
        RouteState.CANARY: {"percent"},
        RouteState.SHADOW: {"sample", "timeout", "shadow_writes"},
    }.get(state, set())
    if given - allowed:
        extra = sorted(given - allowed)[0]
        raise ManifestError(f"{where} {extra} does not apply to a route in state {state}")
    if state is RouteState.CANARY:
        if "percent" not in table:
            raise ManifestError(
                f'{where} is a canary: give the share of users it serves, {{ state = "canary", '
                "percent = 10 }"
            )
        percent = _number(table, "percent", where, 0, 100, low_open=True)
        return RoutePlan(state, percent=percent)
    if state is RouteState.SHADOW:
        writes = _bool(table, "shadow_writes", False, where)
        if writes and key.method in SAFE_METHODS:
            raise ManifestError(
                f"{where} shadow_writes applies to methods that write; {key.method} is "
                "shadowed without it"
            )
        return RoutePlan(
            state,
            sample=_number(table, "sample", where, 0, 1) if "sample" in table else None,
            timeout=_seconds(table, "timeout", 1.0, where) if "timeout" in table else None,
            shadow_writes=writes,
        )
    return RoutePlan(state)


_LEGACY_PLAN = RoutePlan()


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
    where, default = "[bridge]", BridgeOptions
    return BridgeOptions(
        side_header=_bool(table, "side_header", default.side_header, where),
        wsgi_threads=_positive_int(table, "wsgi_threads", default.wsgi_threads, where),
        max_body_size=_positive_int(table, "max_body_size", default.max_body_size, where),
        header_timeout=_seconds(table, "header_timeout", default.header_timeout, where),
        allow_development_key=_bool(
            table, "allow_development_key", default.allow_development_key, where
        ),
        flask_errors=_bool(table, "flask_errors", default.flask_errors, where),
        flask_session=_bool(table, "flask_session", default.flask_session, where),
        after_request=_bool(table, "after_request", default.after_request, where),
    )


_BUCKET_KEY_KINDS = ("session", "header", "cookie")


def _rollout(table: Mapping[str, Any]) -> RolloutOptions:
    where, default = "[rollout]", RolloutOptions
    _check_keys(table, {f.name for f in fields(RolloutOptions)}, where)
    bucket_key = table.get("bucket_key", default.bucket_key)
    kind, _, name = str(bucket_key).partition(":")
    if not isinstance(bucket_key, str) or not (
        bucket_key == "client" or (kind in _BUCKET_KEY_KINDS and name.strip())
    ):
        raise ManifestError(
            f'{where} bucket_key must be "client", "session:KEY", "header:NAME" or '
            f'"cookie:NAME", got {bucket_key!r}'
        )
    metrics_path = _optional_str(table, "metrics_path", where, example='"/_bridge/metrics"')
    if metrics_path is not None and not metrics_path.startswith("/"):
        raise ManifestError(f'{where} metrics_path must start with "/", got {metrics_path!r}')
    dashboard_path = table.get("dashboard_path", default.dashboard_path)
    if not isinstance(dashboard_path, str) or not dashboard_path.startswith("/"):
        raise ManifestError(f'{where} dashboard_path must start with "/", got {dashboard_path!r}')
    return RolloutOptions(
        bucket_key=bucket_key,
        sample=_number(table, "sample", where, 0, 1, default=default.sample),
        shadow_timeout=_seconds(table, "shadow_timeout", default.shadow_timeout, where),
        max_shadows_in_flight=_positive_int(
            table, "max_shadows_in_flight", default.max_shadows_in_flight, where
        ),
        poll_interval=_seconds(table, "poll_interval", default.poll_interval, where),
        error_rate=_number(table, "error_rate", where, 0, 1, default=default.error_rate),
        mismatch_rate=_number(table, "mismatch_rate", where, 0, 1, default=default.mismatch_rate),
        window=_seconds(table, "window", default.window, where),
        min_requests=_positive_int(table, "min_requests", default.min_requests, where),
        promote_match_rate=_number(
            table, "promote_match_rate", where, 0, 1, default=default.promote_match_rate
        ),
        promote_min_compared=_positive_int(
            table, "promote_min_compared", default.promote_min_compared, where
        ),
        keep_mismatches=_positive_int(table, "keep_mismatches", default.keep_mismatches, where),
        metrics_path=metrics_path,
        metrics_token=_optional_str(table, "metrics_token", where, example="a long random text"),
        dashboard_path=dashboard_path.rstrip("/") + "/",
        admin_token=_optional_str(table, "admin_token", where, example="a long random text"),
        database=_optional_str(table, "database", where, example='"postgresql://app@db/shop"'),
    )


_REDACT_KEYS = ("redact_fields", "redact_headers")


def _redactor(shadow: Mapping[str, Any]) -> Redactor:
    names: dict[str, frozenset[str]] = {}
    for key in _REDACT_KEYS:
        value = shadow.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ManifestError(
                f'[shadow] {key} must be a list of names, such as ["password", "ssn"]'
            )
        names[key] = frozenset(v.lower() for v in value)
    default = Redactor()
    return Redactor(
        fields=default.fields | names["redact_fields"],
        headers=default.headers | names["redact_headers"],
    )


def _bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ManifestError(f"{where} {key} must be true or false, got {value!r}")
    return value


def _positive_int(table: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(f"{where} {key} must be a whole number above 0, got {value!r}")
    return value


def _seconds(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ManifestError(f"{where} {key} must be a number of seconds above 0, got {value!r}")
    return float(value)


def _number(
    table: Mapping[str, Any],
    key: str,
    where: str,
    low: float,
    high: float,
    *,
    default: float | None = None,
    low_open: bool = False,
) -> float:
    value = table.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high
        or (low_open and value == low)
    ):
        above = f"above {low:g}" if low_open else f"from {low:g}"
        raise ManifestError(f"{where} {key} must be a number {above} to {high:g}, got {value!r}")
    return float(value)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ManifestError(f"[{key}] must be a table")
    return value


def _optional_str(
    table: Mapping[str, Any], key: str, where: str, *, example: str = '"package:create_app"'
) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        what = "an import string" if where == "[apps]" else "a text"
        raise ManifestError(f"{where} {key} must be {what} such as {example}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ManifestError(
            f"unknown key {unknown[0]!r} in {where}: expected one of {', '.join(sorted(allowed))}"
        )
