"""Shadow runs: each case sent to the legacy route and to its port, and compared.

For every case the runner:

1. sends the request to the legacy side, recording the rows it writes, then
   puts the database back as it was;
2. unless told not to, sends it to the legacy side once more (an A/A run):
   whatever differs between two legacy answers (random tokens, timestamps) is
   *noise*, and the rules that would silence it are proposed;
3. sends it to the port side, recording and undoing its writes the same way.
   In-process, that is the hybrid with every ported route set to async
   (:func:`ported_side`), so a request the port would never see in production
   is answered as in production;
4. compares status, headers, cookies, bodies and row changes under the route's
   rules from the manifest. A difference that the noise explains is counted as
   noise, not as a failure.

The database is left exactly as it was (see :class:`bridge._shadow.changes.ChangeRecorder`).
Nothing else may write to it during a run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import anyio.to_thread
import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from flask import Flask, got_request_exception
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import BaseRoute, Match
from werkzeug.exceptions import HTTPException as RoutingError
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Map, RequestRedirect

from bridge._exceptions import ConfigurationError
from bridge._porting.error_envelope import logger as envelope_logger
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionCookie
from bridge._serving.hybrid import HybridApp
from bridge._serving.loading import import_object
from bridge._serving.manifest import LoginRule, Manifest, RouteKey, RouteState
from bridge._serving.routing import AUTOMATIC_METHODS, RouteTable
from bridge._shadow.cases import Case
from bridge._shadow.changes import ChangeSet, compare_changes
from bridge._shadow.compare import (
    MISSING,
    Comparison,
    Difference,
    Rules,
    Snapshot,
    compare_responses,
    generalize,
)
from bridge._shadow.recorder import ChangeRecorder
from bridge._shadow.redact import REDACTED
from bridge._shadow.variation import KINDS, Window, classify

BASE_URL = "http://localhost"
UNMATCHED = "(no Flask rule matches)"
WRONG_METHOD = "(no Flask rule for the method)"


class Outcome(StrEnum):
    SAME = "same"
    DIFFERENT = "different"
    NOISE = "noise"  # every difference is one the legacy side has with itself


@dataclass(frozen=True)
class CaseResult:
    case: Case
    route: str
    differences: tuple[Difference, ...]
    noise: tuple[Difference, ...]
    proposed: Rules = field(default_factory=Rules)
    ported: bool = True  # the port side sent it to FastAPI, not to the legacy app
    errors: tuple[tuple[str, str], ...] = ()
    """``(side, traceback)`` of each exception an app raised answering the case in-process."""

    @property
    def outcome(self) -> Outcome:
        if self.differences:
            return Outcome.DIFFERENT
        return Outcome.NOISE if self.noise else Outcome.SAME

    def report(self) -> str:
        """The case and each difference on its own line, as a failure message shows it."""
        lines = [f"{self.route}: {self.case.label}"]
        lines += [f"  {difference}" for difference in self.differences]
        lines += [f"  noise: {difference}" for difference in self.noise]
        for side, trace in self.errors:
            lines.append(f"  {side} raised:")
            lines += [f"    {line}" for line in trace.rstrip("\n").splitlines()]
        return "\n".join(lines)


def route_of(url_map: Map, case: Case) -> str:
    """The manifest key (``"GET /api/products/<int:product_id>"``) a case's request matches,
    :data:`WRONG_METHOD` or :data:`UNMATCHED`. ``HEAD`` counts as its rule's ``GET``."""
    adapter = url_map.bind("localhost")
    path = httpx.URL(case.path).path
    try:
        try:
            rule, _ = adapter.match(path, method=case.method, return_rule=True)
        except RequestRedirect as redirect:  # /notes for /notes/: the rule exists
            path = httpx.URL(redirect.new_url).path
            rule, _ = adapter.match(path, method=case.method, return_rule=True)
    except MethodNotAllowed:
        return WRONG_METHOD
    except RoutingError:
        return UNMATCHED
    method = case.method
    if method == "HEAD" and "GET" in (rule.methods or ()):
        method = "GET"
    if method in AUTOMATIC_METHODS and method != "HEAD":
        return f"(Flask's automatic {method})"
    return str(RouteKey(method, rule.rule))


def fastapi_route_of(routes: Iterable[BaseRoute], case: Case) -> str | None:
    """``"GET /notes/{note_id}"`` for the FastAPI route that takes the case's request."""
    scope = {
        "type": "http",
        "method": case.method,
        "path": httpx.URL(case.path).path,
        "root_path": "",
        "headers": [],
    }
    for route in routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] is Match.FULL:
            return f"{case.method} {route.path}"
    return None


def app_tables(flask_app: Flask) -> list[str] | None:
    """The tables of the app's Flask-SQLAlchemy models, or ``None`` when it has none.

    A shadow run records these, not every table of the database: tables of
    other applications sharing it are none of the run's business.
    """
    extension = flask_app.extensions.get("sqlalchemy")
    metadatas = getattr(extension, "metadatas", None)
    if not metadatas:
        return None
    return sorted(
        {table.name for metadata in metadatas.values() for table in metadata.tables.values()}
    )


def dispose_flask_engines(flask_app: Flask) -> None:
    """Close the pooled connections of the app's Flask-SQLAlchemy engines, if any."""
    extension = flask_app.extensions.get("sqlalchemy")
    if extension is None:
        return
    with flask_app.app_context():
        for engine in extension.engines.values():
            engine.dispose()


def ported_side(flask_app: Flask, fastapi_app: FastAPI, manifest: Manifest) -> HybridApp:
    """The hybrid with every ported route set to async: what clients get once flipped.

    A request that the hybrid would not send to FastAPI (an unknown URL, a
    method or path converter the port does not take) gets the legacy answer on
    this side too, as it would in production.
    """
    # Checks the manifest's keys against the apps, as serving it would.
    table = RouteTable(flask_app.url_map, fastapi_app.routes, manifest)
    routes = {route.key: RouteState.ASYNC for route in table.routes if route.ported}
    options = dataclasses.replace(manifest.options, side_header=False)
    return HybridApp(flask_app, fastapi_app, Manifest(routes=routes, options=options))


class Sender:
    """Sends requests to one side and returns what the client saw; close it when done.

    In-process, ``errors`` collects the traceback of each exception the ASGI
    app raised while answering, so a 500 says why; the Flask app's are
    collected by the runner, on either side; a running server's are its own.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.errors: list[str] = []

    async def __call__(self, request: httpx.Request) -> Snapshot:
        return Snapshot.from_httpx(await self.client.send(request))

    async def aclose(self) -> None:
        await self.client.aclose()


class _WSGISender(Sender):
    def __init__(self, app: Flask) -> None:
        self.errors = []
        self.sync_client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL)

    async def __call__(self, request: httpx.Request) -> Snapshot:
        # Flask blocks: it runs in a worker thread, as a WSGI server would run it.
        response = await anyio.to_thread.run_sync(self.sync_client.send, request)
        return Snapshot.from_httpx(response)

    async def aclose(self) -> None:
        self.sync_client.close()


class _URLSender(Sender):
    async def __call__(self, request: httpx.Request) -> Snapshot:
        # The request keeps the case's Host header: an app that builds absolute
        # URLs from it must answer both servers with the same ones.
        request.url = self.client.base_url.join(request.url.raw_path.decode("ascii"))
        return await super().__call__(request)


def wsgi_sender(app: Flask) -> Sender:
    """Send requests to a Flask app in-process."""
    return _WSGISender(app)


class _LoggedErrors(logging.Handler):
    """Collects the exceptions logged with their traceback, once each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.errors = errors
        self.seen: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.add(record.exc_info[1])

    def add(self, exc: BaseException) -> None:
        if id(exc) not in self.seen:
            self.seen.add(id(exc))
            self.errors.append("".join(traceback.format_exception(exc)))


def asgi_sender(app: Any) -> Sender:
    """Send requests to an ASGI app in-process; an error answer is an answer, not a crash."""
    errors: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        # The toolkit's error envelope answers 500 and logs the exception on its
        # logger; Starlette's own answers 500 and raises it again. Keep either.
        collected = _LoggedErrors(errors)
        envelope_logger.addHandler(collected)
        try:
            await app(scope, receive, send)
        except Exception as exc:
            collected.add(exc)
            raise
        finally:
            envelope_logger.removeHandler(collected)
            collected.seen.clear()

    transport = httpx.ASGITransport(app=recording, raise_app_exceptions=False)
    sender = Sender(httpx.AsyncClient(transport=transport, base_url=BASE_URL))
    sender.errors = errors
    return sender


def url_sender(base_url: str, *, timeout: float = 30.0) -> Sender:
    """Send requests to a running server."""
    return _URLSender(httpx.AsyncClient(base_url=base_url, timeout=timeout))


class ShadowRunner:
    """Runs cases against both sides of one Flask app and its port."""

    def __init__(
        self,
        *,
        flask_app: Flask,
        legacy: Sender,
        port: Sender,
        manifest: Manifest,
        recorder: ChangeRecorder | None = None,
        aa: bool = True,
        port_routes: RouteTable | None = None,
        database: Engine | None = None,
    ) -> None:
        """*port_routes* tells which requests reach FastAPI on the port side (the
        table of :func:`ported_side`); *database* looks up the users of cases
        and defaults to the recorder's engine."""
        self.flask_app = flask_app
        self.legacy = legacy
        self.port = port
        self.manifest = manifest
        self.recorder = recorder
        self.aa = aa
        self.port_routes = port_routes
        self.database = database or (recorder.engine if recorder else None)
        self.cookie = FlaskSessionCookie(FlaskSessionConfig.from_flask_config(flask_app.config))
        self.login = manifest.login
        self._user_ids: dict[str, Any] = {}
        self._tokens: dict[str, str] = {}
        self._flask_errors: list[str] = []
        # Flask turns an exception into its 500 page, on either side; the signal still sees it.
        got_request_exception.connect(self._flask_error, flask_app, weak=False)

    def _flask_error(self, _sender: Flask, exception: BaseException, **_extra: Any) -> None:
        self._flask_errors.append("".join(traceback.format_exception(exception)))

    def prepare(self, cases: Iterable[Case]) -> None:
        """Look up every user the cases name (and mint their tokens), so a missing one
        stops the run before it starts."""
        for case in cases:
            if case.user is not None:
                self._user_id(case)
                self._token(case)

    def route_of(self, case: Case) -> str:
        """The manifest key of the Flask rule a case's request matches; with no
        such rule, the label says which FastAPI route answers it, if one does."""
        route = route_of(self.flask_app.url_map, case)
        if route in (UNMATCHED, WRONG_METHOD) and self.port_routes is not None:
            port_route = fastapi_route_of(self.port_routes.async_routes, case)
            if port_route is not None:
                return f"{route[:-1]}; port route {port_route})"
        return route

    def rules_for(self, route: str) -> Rules:
        """The route's rules with the app-wide ones of ``[shadow]``."""
        app_wide = self.manifest.shadow_rules
        if route.startswith("("):  # no route of the manifest: UNMATCHED and the like
            return app_wide
        return self.manifest.rules.get(RouteKey.parse(route), Rules()).merge(app_wide)

    async def aclose(self) -> None:
        """Close both senders."""
        got_request_exception.disconnect(self._flask_error, self.flask_app)
        await self.legacy.aclose()
        await self.port.aclose()

    async def run(self, case: Case) -> CaseResult:
        route = self.route_of(case)
        rules = self.rules_for(route)
        request = self.request(case)
        start = datetime.now(UTC)
        legacy, legacy_rows = await self._send(self.legacy, request)
        errors = [("legacy", trace) for trace in self._errors(self.legacy)]
        noise_rules = Rules()
        if self.aa:
            again, again_rows = await self._send(self.legacy, self.request(case))
            noise_rules = rules_from(self._compare(legacy, again, legacy_rows, again_rows, rules))
        port, port_rows = await self._send(self.port, self.request(case))
        errors += [("async", trace) for trace in self._errors(self.port)]
        window = (start, datetime.now(UTC))
        everything = self._compare(legacy, port, legacy_rows, port_rows, rules, window)
        real = self._compare(legacy, port, legacy_rows, port_rows, rules.merge(noise_rules), window)
        # A place whose variation the noise explains is noise; one whose port
        # value is outside that variation stays in *real*, with why.
        failed = {d.where for d in real}
        noise = tuple(d for d in everything if d.where not in failed)
        ported = self._reaches_port(request)
        return CaseResult(case, route, tuple(real), noise, noise_rules, ported, tuple(errors))

    def _reaches_port(self, request: httpx.Request) -> bool:
        if self.port_routes is None:
            return True
        scope = {
            "type": "http",
            "method": request.method,
            "path": request.url.path,
            "root_path": "",
            "headers": [(b"host", b"localhost")],
        }
        return self.port_routes.side_for(scope) is RouteState.ASYNC

    def request(self, case: Case) -> httpx.Request:
        """The httpx request for a case, with its login as a signed Flask session cookie
        and/or a bearer token. A header redacted when the case was recorded is left out."""
        headers = {name: value for name, value in case.headers.items() if value != REDACTED}
        cookie = self._cookie(case)
        if cookie:
            headers["Cookie"] = cookie
        token = self._token(case)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if case.has_json:
            return httpx.Request(case.method, BASE_URL + case.path, headers=headers, json=case.json)
        content = case.body.encode() if case.body is not None else None
        return httpx.Request(case.method, BASE_URL + case.path, headers=headers, content=content)

    def _cookie(self, case: Case) -> str | None:
        if case.cookie is not None:
            return case.cookie
        session = case.session
        if case.user is not None:
            session_key = self._login(case).session_key
            if session_key is None or case.login == "token":
                return None
            session = {session_key: self._user_id(case)}
        if session is None:
            return None
        return f"{self.cookie.config.cookie_name}={self.cookie.dump(session)}"

    def _token(self, case: Case) -> str | None:
        """The bearer token of the case's user, minted once: every request of a
        run sends the same, as one client would."""
        if case.user is None or case.login == "session" or self._login(case).token is None:
            return None
        if case.user not in self._tokens:
            self._tokens[case.user] = self._mint(case, self._user_id(case))
        return self._tokens[case.user]

    def _mint(self, case: Case, user_id: Any) -> str:
        login = self._login(case)
        assert login.token is not None
        mint = import_object(login.token, self.manifest.path)
        with self.flask_app.app_context():  # JWT helpers read the app's config
            token = mint(user_id)
        if not isinstance(token, str) or not token:
            raise ConfigurationError(
                f"{case.label}: [shadow] login token {login.token!r} returned {token!r}, "
                "not a token: make it return the token as a string"
            )
        return token

    def _login(self, case: Case) -> LoginRule:
        """The manifest's login rule, which must configure the login the case chooses."""
        login = self.login
        if login is None:
            raise ConfigurationError(
                "a case names a user but the manifest has no [shadow] login rule: add login = "
                '{ session_key = "user_id", query = "SELECT id FROM users WHERE email = :user" }'
            )
        if case.login == "token" and login.token is None:
            raise ConfigurationError(
                f'{case.label}: the case logs in with "token" but [shadow] login has no '
                'token: add token = "package.module:mint_token" to it, or drop the case\'s login'
            )
        if case.login == "session" and login.session_key is None:
            raise ConfigurationError(
                f'{case.label}: the case logs in with "session" but [shadow] login has no '
                'session_key: add session_key = "user_id" to it, or drop the case\'s login'
            )
        return login

    def _user_id(self, case: Case) -> Any:
        assert case.user is not None
        login = self._login(case)
        if case.user in self._user_ids:
            return self._user_ids[case.user]
        if self.database is None:
            raise ConfigurationError(
                f"{case.label}: users are looked up in the database, and this run has none: "
                "record rows, or give the runner a database engine"
            )
        try:
            with self.database.connect() as connection:
                value = connection.execute(text(login.query), {"user": case.user}).scalar()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise ConfigurationError(
                f"{case.label}: the [shadow] login query failed ({reason}): "
                "check the query and DATABASE_URL"
            ) from exc
        if value is None:
            raise ConfigurationError(f"{case.label}: no user {case.user!r} in the database")
        self._user_ids[case.user] = value
        return value

    def _errors(self, sender: Sender) -> list[str]:
        """The tracebacks of the last request sent by *sender*."""
        return [*self._flask_errors, *sender.errors]

    async def _send(self, send: Sender, request: httpx.Request) -> tuple[Snapshot, ChangeSet]:
        send.errors.clear()
        self._flask_errors.clear()
        if self.recorder is None:
            return await send(request), {}
        with self.recorder.capture() as capture:
            snapshot = await send(request)
        return snapshot, capture.changes

    @staticmethod
    def _compare(
        legacy: Snapshot,
        port: Snapshot,
        legacy_rows: ChangeSet,
        port_rows: ChangeSet,
        rules: Rules,
        window: Window | None = None,
    ) -> list[Difference]:
        responses: Comparison = compare_responses(legacy, port, rules, window=window)
        rows = compare_changes(legacy_rows, port_rows, ignore_columns=rules.ignore_columns)
        return [*responses.differences, *rows]


_ROW_COLUMN = re.compile(r"^rows (?P<table>[^\[\s]+)\[.*\]\.(?P<column>\w+)$")
_HEADER = re.compile(r"^header (?P<name>\S+)$")


def rules_from(differences: Iterable[Difference]) -> Rules:
    """The rules that accept these differences of legacy with itself, and no more:
    what an A/A run proposes.

    A JSON place gets the kind of variation its two values show (see
    :mod:`bridge._shadow.variation`), a list whose order varies ``unordered``;
    only a place present in one answer and not the other is ignored.
    """
    ignore: list[str] = []
    unordered: list[str] = []
    vary: dict[str, str] = {}
    headers: list[str] = []
    columns: list[str] = []
    for difference in differences:
        where = difference.where
        if where.startswith("$"):
            pattern = generalize(where)
            if difference.note == "list order differs":
                unordered.append(pattern)
            elif MISSING in (difference.legacy, difference.port):
                ignore.append(pattern)
            elif (kind := classify(difference.legacy, difference.port)) is None:
                ignore.append(pattern)  # even the type varies: null, then a string
            else:
                # One pattern, several places: the loosest of their kinds.
                vary[pattern] = max(vary.get(pattern, kind), kind, key=KINDS.index)
        elif match := _HEADER.match(where):
            headers.append(match["name"])
        elif match := _ROW_COLUMN.match(where):
            columns.append(f"{match['table']}.{match['column']}")
    return Rules(
        ignore=tuple(dict.fromkeys(ignore)),
        unordered=tuple(dict.fromkeys(unordered)),
        vary=tuple((p, k) for p, k in vary.items() if p not in ignore),
        ignore_headers=tuple(dict.fromkeys(headers)),
        ignore_columns=tuple(dict.fromkeys(columns)),
    )


@dataclass
class RouteSummary:
    route: str
    ported: bool = False  # some case of the route reached FastAPI
    cases: int = 0
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    first_difference: CaseResult | None = None
    proposed: Rules = field(default_factory=Rules)


def summarize(results: Sequence[CaseResult]) -> list[RouteSummary]:
    """One summary per route, in the order routes first appear."""
    summaries: dict[str, RouteSummary] = {}
    for result in results:
        summary = summaries.setdefault(result.route, RouteSummary(result.route))
        summary.cases += 1
        summary.ported = summary.ported or result.ported
        summary.counts[result.outcome] += 1
        summary.proposed = summary.proposed.merge(result.proposed)
        if result.outcome is Outcome.DIFFERENT and summary.first_difference is None:
            summary.first_difference = result
    return list(summaries.values())


def proposed_toml(summaries: Iterable[RouteSummary], manifest: Manifest) -> str:
    """The route entries the A/A runs propose, ready to replace the routes' lines in
    migration.toml: each keeps the route's state and rules and adds what the noise needs."""
    lines = []
    for summary in summaries:
        if summary.proposed == Rules() or summary.route.startswith("("):
            continue
        key = RouteKey.parse(summary.route)
        rules = manifest.rules.get(key, Rules()).merge(summary.proposed)
        entries = [
            f"state = {_toml(manifest.state(key.method, key.rule).value)}",
            *_rule_entries(rules),
        ]
        lines.append(f"{_toml(summary.route)} = {{ {', '.join(entries)} }}")
    return "\n".join(lines)


def _rule_entries(rules: Rules) -> list[str]:
    defaults = Rules()
    return [
        f"{item.name} = {_toml(getattr(rules, item.name))}"
        for item in dataclasses.fields(rules)
        if getattr(rules, item.name) != getattr(defaults, item.name)
    ]


def _toml(value: Any) -> str:
    """A value as TOML, on one line: the manifest writes a route's entry as one.

    Ours rather than tomli-w's: its ``dumps`` writes a table of tables as
    ``[routes."POST /notes"]`` sections and every array over several lines, and
    the one-line form a route has in ``[routes]`` is only in its private helpers.
    """
    if isinstance(value, tuple) and value and all(isinstance(item, tuple) for item in value):
        pairs = ", ".join(f"{_toml(key)} = {_toml(item)}" for key, item in value)
        return f"{{ {pairs} }}"
    if isinstance(value, str):
        # JSON's escapes are TOML's, but for DEL, which TOML also wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)
