"""Which side answers a request: the Flask URL map plus the manifest.

A request is matched against the legacy app's URL map to find its Flask rule;
the rule's state in the manifest picks the side. The map is bound to the
request by a :data:`Binder`: the hybrid passes one that lets the Flask app bind
it (host and subdomain matching, ``SERVER_NAME``, ``TRUSTED_HOSTS``), so the
rule found is the one Flask itself would dispatch to. A request that matches no
Flask rule goes to FastAPI when FastAPI has a route for it, and to Flask
otherwise, so that unknown URLs keep the legacy 404.

Nothing here does I/O: the table is built once at start-up from the two apps'
route lists and consulted per request. Binding a request costs tens of
microseconds (Flask builds a request object and a URL adapter), so the table
remembers its answers per method, scheme, host, path and root path, the whole
of what Flask's binding and Starlette's matching read.

What it remembers is a :class:`Target`: the route and whether the port can
serve the request. A legacy or async route is settled by that alone; a route
in shadow or canary, or one an operator has overridden, is decided per request
from the target by :mod:`bridge._rollout.runtime`.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, MapAdapter, Rule
from werkzeug.sansio.utils import get_host

from bridge._exceptions import ManifestError
from bridge._serving.manifest import Manifest, RouteKey, RouteState

# Flask adds these to every rule by itself; they follow the route's GET or
# are answered by Flask's own automatic OPTIONS.
AUTOMATIC_METHODS = frozenset({"HEAD", "OPTIONS"})

_FLASK_VARIABLE = re.compile(r"<(?:[^<>:]+:)?(?P<name>[^<>:]+)>")

#: Binds the Flask URL map to one ASGI request, with its path and method as the
#: adapter's defaults. ``None``, or an :class:`~werkzeug.exceptions.HTTPException`
#: (an untrusted host), means the legacy app answers the request itself.
Binder = Callable[[Scope], MapAdapter | None]

#: How many answers a :class:`RouteTable` remembers. Paths carry ids, so the
#: memo is bounded: past this size the oldest answer is forgotten.
MEMO_SIZE = 4096

# What decides the side of a request: method, scheme, Host header(s), server
# address (read when there is no Host header), path and root path.
_MemoKey = tuple[str, str, tuple[bytes, ...], Any, str, str]


@dataclass(frozen=True, slots=True)
class Target:
    """What routing settles for every request alike: which route, and whether the port has it.

    *key* is the route's manifest key (a HEAD request without a HEAD rule of
    its own follows its GET), ``None`` when no Flask rule of the app's own
    matches or Flask answers the routing itself (404, 405, redirects). *state*
    is the manifest's state, ``LEGACY`` when the port cannot serve this request;
    *ported* is whether the FastAPI app fully matches it.
    """

    key: RouteKey | None
    state: RouteState
    ported: bool

    @property
    def label(self) -> str:
        """The route as metrics name it: ``GET /rule``, or ``(unmatched)``."""
        return "(unmatched)" if self.key is None else str(self.key)


_LEGACY_ANSWER = Target(None, RouteState.LEGACY, ported=False)
_ASYNC_ANSWER = Target(None, RouteState.ASYNC, ported=True)


@dataclass(frozen=True)
class FlaskRoute:
    """One method of one Flask rule, as ``flask2fastapi routes`` lists it."""

    method: str
    rule: str
    endpoint: str
    state: RouteState
    ported: bool

    @property
    def key(self) -> RouteKey:
        return RouteKey(self.method, self.rule)


# Values tried for each variable of a Flask rule, to make a concrete path that
# the rule matches: int, float, uuid, string and path converters accept one.
_SAMPLE_VALUES = ("1", "1.5", "00000000-0000-0000-0000-000000000000", "x", "x/y")


def sample_path(rule: Rule) -> str | None:
    """A concrete path that *rule* matches, such as ``/api/products/1``; ``None`` if
    no sample value fits one of its converters (a custom converter)."""
    values: dict[str, str] = {}
    for name, converter in rule._converters.items():
        fitting = [v for v in _candidates(converter) if re.fullmatch(converter.regex, v)]
        if not fitting:
            return None
        values[name] = fitting[0]
    return _FLASK_VARIABLE.sub(lambda m: values[m.group("name")], rule.rule)


def _candidates(converter: Any) -> Iterator[str]:
    yield from _SAMPLE_VALUES
    yield from sorted(getattr(converter, "items", ()))  # any(a, b)
    length = re.search(r"\{(\d+)", converter.regex)  # string(length=n), string(minlength=n)
    if length:
        yield "x" * max(1, int(length.group(1)))


def async_serves(routes: Iterable[BaseRoute], method: str, path: str) -> bool:
    """Whether a FastAPI or Starlette route list fully matches ``method path``."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def flask_routes(url_map: Map) -> Iterator[tuple[str, Rule]]:
    """Every ``(method, rule)`` of a Flask URL map, without the automatic methods."""
    for rule in url_map.iter_rules():
        methods = set(rule.methods or ())
        explicit = methods - AUTOMATIC_METHODS or methods
        for method in sorted(explicit):
            yield method, rule


class RouteTable:
    """The manifest checked against both apps, ready to answer "which side?".

    *bind* binds *url_map* to a request; without it the map is bound from the
    request's path, method, scheme and host alone, which is what a Flask app
    with no ``SERVER_NAME``, subdomain matching or ``TRUSTED_HOSTS`` does. A
    *bind* must decide from what the memo key holds (see :data:`MEMO_SIZE`):
    Flask's own binding does.
    """

    def __init__(
        self,
        url_map: Map,
        async_routes: Iterable[BaseRoute],
        manifest: Manifest,
        *,
        bind: Binder | None = None,
        memo_size: int = MEMO_SIZE,
    ) -> None:
        self.url_map = url_map
        self.bind: Binder = bind or functools.partial(bind_request, url_map)
        self.async_routes = list(async_routes)
        self.memo_size = memo_size
        self._memo: dict[_MemoKey, Target] = {}
        self.reload(manifest)

    def reload(self, manifest: Manifest) -> None:
        """Route by *manifest* from now on; the remembered answers are forgotten.

        Checked first: a manifest that does not fit the apps raises
        :class:`~bridge.ManifestError` and the table keeps routing by the old one.
        """
        routes = [
            FlaskRoute(
                method=method,
                rule=rule.rule,
                endpoint=rule.endpoint,
                state=manifest.state(method, rule.rule),
                ported=_is_ported(self.async_routes, method, rule),
            )
            for method, rule in flask_routes(self.url_map)
        ]
        _check(manifest, routes)
        self.manifest, self.routes = manifest, routes
        self._states = {route.key: route.state for route in routes}
        self._memo = {}

    def side_for(self, scope: Scope) -> RouteState:
        """The manifest's side for this HTTP request: ``LEGACY`` or ``ASYNC``, or
        ``SHADOW`` or ``CANARY``, which the rollout decides per request."""
        return self.target_for(scope).state

    def target_for(self, scope: Scope) -> Target:
        """The route of this HTTP request and whether the port serves it, remembered."""
        key = _memo_key(scope)
        target = self._memo.get(key)
        if target is None:
            target = self._decide(scope)
            memo = self._memo
            if len(memo) >= self.memo_size:
                del memo[next(iter(memo))]  # the oldest: dicts keep insertion order
            memo[key] = target
        return target

    def _decide(self, scope: Scope) -> Target:
        rule = self.match_rule(scope)
        if rule is _PASS_TO_LEGACY:
            return _LEGACY_ANSWER
        if rule is None:
            return _ASYNC_ANSWER if self._async_matches(scope) else _LEGACY_ANSWER
        method = scope["method"]
        key = RouteKey(method, rule.rule)
        if key not in self._states and method == "HEAD":
            key = RouteKey("GET", rule.rule)
        if key not in self._states:  # Flask's automatic OPTIONS
            return _LEGACY_ANSWER
        ported = self._async_matches(scope)
        state = self._states[key] if ported else RouteState.LEGACY
        return Target(key, state, ported)

    def match_rule(self, scope: Scope) -> Rule | None:
        """The Flask rule the request matches, or ``None``.

        Every other routing answer Flask would give (a 405, the redirect for a
        missing trailing slash, the 400 for a host it does not trust) is the
        legacy side's to give.
        """
        try:
            adapter = self.bind(scope)
        except HTTPException:  # Flask keeps it as the request's routing error
            return _PASS_TO_LEGACY
        if adapter is None:
            return _PASS_TO_LEGACY
        try:
            rule, _ = adapter.match(return_rule=True)
        except NotFound:
            return None
        except HTTPException:  # 405, the 308 redirects, a websocket mismatch
            return _PASS_TO_LEGACY
        return rule

    def _async_matches(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.async_routes)


def _check(manifest: Manifest, routes: list[FlaskRoute]) -> None:
    known = {route.key: route for route in routes}
    for key, state in manifest.routes.items():
        if key not in known:
            raise ManifestError(
                f"route {key} matches no rule of the Flask app{_closest(key, known)}",
                path=manifest.path,
            )
        if state.needs_port and not known[key].ported:
            raise ManifestError(
                f"route {key} is {state} but the FastAPI app has no {key.method} route "
                f"for {key.rule}: port it first or set it to legacy",
                path=manifest.path,
            )


def _memo_key(scope: Scope) -> _MemoKey:
    hosts = tuple(value for name, value in scope.get("headers", ()) if name == b"host")
    server = scope.get("server")
    return (
        scope["method"],
        scope.get("scheme", "http"),
        hosts,
        None if hosts or server is None else tuple(server),  # a list is allowed too
        scope["path"],
        scope.get("root_path", ""),
    )


def _is_ported(routes: list[BaseRoute], method: str, rule: Rule) -> bool:
    path = sample_path(rule)
    return path is not None and async_serves(routes, method, path)


# A rule that no manifest key names: its requests always go to the legacy side.
_PASS_TO_LEGACY = Rule("/<path:__bridge_unmatched__>", endpoint="__bridge_unmatched__")


def bind_request(url_map: Map, scope: Scope) -> MapAdapter:
    """*url_map* bound to the request of *scope*, without any Flask configuration."""
    scheme = scope.get("scheme", "http")
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return url_map.bind(
        _host(scope, scheme),
        script_name=root_path or "/",
        url_scheme=scheme,
        default_method=scope["method"],
        path_info=path or "/",
    )


def _host(scope: Scope, scheme: str) -> str:
    # As Werkzeug reads it: the Host header, else the server; no default port.
    header = None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            header = str(value.decode("latin-1"))
            break
    return get_host(scheme, header, scope.get("server"))


def _closest(key: RouteKey, known: Mapping[RouteKey, FlaskRoute]) -> str:
    names = [str(k) for k in known]
    matches = difflib.get_close_matches(str(key), names, n=3, cutoff=0.5)
    return f"; closest: {', '.join(matches)}" if matches else ""
