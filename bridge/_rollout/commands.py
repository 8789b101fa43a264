"""What the rollout commands of ``flask2fastapi`` do: status, promote, demote, clear, mismatches.

Each function takes the manifest, the Flask app's routes and the
:class:`~bridge._rollout.store.RolloutStore`, and returns rows or text;
:mod:`bridge._cli` wraps them in click commands. A change goes to the store,
where every worker of every machine reads it at its next poll.

A route's *effective* state is its override's when it has one (an operator's
``promote``, or the server's demotion, which is ``legacy``), else the manifest's.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bridge._exceptions import ConfigurationError
from bridge._rollout.store import Counts, Mismatch, Override, RolloutStore
from bridge._serving.manifest import Manifest, RouteKey, RouteState
from bridge._serving.routing import FlaskRoute, _closest
from bridge._shadow.redact import REDACTED

#: The states ``promote`` moves a route to.
PROMOTE_TARGETS = (RouteState.SHADOW, RouteState.CANARY, RouteState.ASYNC)

# Headers a shadow case leaves out: the client sets them for the request it sends.
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class Outcome:
    """What a command did, to print; ``ok`` is false when it refused."""

    text: str
    ok: bool = True


def open_store(manifest: Manifest) -> RolloutStore:
    """The store the server uses: ``[rollout] database``, else the app's ``DATABASE_URL``.

    A SQLite file that does not exist is refused rather than created: a relative
    path names a file in the current folder, which may not be the server's.
    """
    from bridge._porting.database import DatabaseSettings

    url = manifest.rollout.database or DatabaseSettings.from_env().url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            raise ConfigurationError(
                f"no SQLite database at {path.resolve()}: run the command in the folder the "
                "server runs in, or give --database-url"
            )
    return RolloutStore.from_url(url)


def default_actor() -> str:
    """Who runs the command, as events record it: the OS user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment nor in /etc/passwd
        return "unknown"


def find_route(text: str, routes: Iterable[FlaskRoute]) -> FlaskRoute:
    """The Flask route named ``"METHOD /rule"``, as the manifest names it."""
    key = RouteKey.parse(text)
    known = {route.key: route for route in routes}
    if key not in known:
        raise ConfigurationError(
            f"route {key} matches no rule of the Flask app{_closest(key, known)}"
        )
    return known[key]


# -- status --------------------------------------------------------------------------


def effective_state(
    key: RouteKey, manifest: Manifest, override: Override | None
) -> tuple[RouteState, float | None]:
    """The state every worker serves *key* in, and its canary share if it is a canary."""
    plan = manifest.plan(key.method, key.rule)
    if override is None:
        return plan.state, plan.percent if plan.state is RouteState.CANARY else None
    if override.state is not RouteState.CANARY:
        return override.state, None
    return override.state, override.percent if override.percent is not None else plan.percent


def status_rows(
    routes: Iterable[FlaskRoute],
    manifest: Manifest,
    overrides: Mapping[RouteKey, Override],
    counts: Mapping[RouteKey, Counts],
) -> list[dict[str, Any]]:
    """One row per Flask route, as ``status --json`` prints them.

    ``skipped`` counts every shadow not compared: skipped (sampling aside:
    too many in flight) and timed out.
    """
    rows = []
    for route in sorted(routes, key=lambda r: (r.rule, r.method)):
        override = overrides.get(route.key)
        count = counts.get(route.key, Counts())
        demoted = override is not None and override.demoted
        rows.append(
            {
                "method": route.method,
                "rule": route.rule,
                "state": manifest.state(route.method, route.rule).value,
                "effective_state": effective_state(route.key, manifest, override)[0].value,
                "served": {"legacy": count.served_legacy, "async": count.served_async},
                "shadow": {
                    "compared": count.compared,
                    "same": count.same,
                    "different": count.different,
                    "skipped": count.skipped + count.timed_out,
                },
                "demoted": (
                    {"at": override.at.isoformat(), "reason": override.reason}
                    if demoted and override is not None
                    else None
                ),
            }
        )
    return rows


def status_table(rows: Iterable[Mapping[str, Any]]) -> str:
    from bridge._table import render_table

    headers = [
        *("method", "rule", "state", "effective", "legacy", "async"),
        *("compared", "same", "different", "skipped", "match", "demoted"),
    ]
    cells = []
    for row in rows:
        served, shadow, demoted = row["served"], row["shadow"], row["demoted"]
        cells.append(
            [
                *(row["method"], row["rule"], row["state"], row["effective_state"]),
                *(str(served["legacy"]), str(served["async"])),
                *(str(shadow[k]) for k in ("compared", "same", "different", "skipped")),
                _rate(shadow["same"], shadow["compared"]),
                demoted["reason"] if demoted else "",
            ]
        )
    return render_table([headers, *cells])


def status(
    routes: Iterable[FlaskRoute], manifest: Manifest, store: RolloutStore
) -> list[dict[str, Any]]:
    return status_rows(routes, manifest, store.overrides(), store.counts())


# -- promote, demote, clear ----------------------------------------------------------


def promotion_bar(counts: Counts, manifest: Manifest) -> str | None:
    """Why the port is not yet fit to serve users, or ``None`` when its shadow shows it is.

    The bar is ``[rollout] promote_match_rate`` over at least
    ``promote_min_compared`` compared requests, counted over all time.
    """
    options = manifest.rollout
    bar = f"{_percent(options.promote_match_rate)} over at least {options.promote_min_compared:,}"
    rate = counts.match_rate
    if counts.compared < options.promote_min_compared or rate is None:
        return f"{counts.compared:,} compared requests recorded, the bar is {bar}"
    if rate < options.promote_match_rate:
        compared = f"{counts.compared:,} compared requests"
        return f"match rate {_percent(rate)} over {compared}, the bar is {bar}"
    return None


def promote(
    store: RolloutStore,
    manifest: Manifest,
    route: FlaskRoute,
    *,
    to: RouteState,
    percent: float | None = None,
    force: bool = False,
    actor: str,
) -> Outcome:
    """Move *route* to shadow, canary (*percent* of users) or async, for every worker.

    A move that lets the port answer users (to canary or async from legacy or
    shadow) is refused while the shadow's match rate is below the bar, unless
    *force*. Promoting a demoted route lifts the demotion.
    """
    key = route.key
    _check_target(route, to, percent)
    override = store.overrides().get(key)
    before = effective_state(key, manifest, override)
    demoted = override is not None and override.demoted
    if before == (to, percent) and not demoted:
        return Outcome(f"{key}: already {_describe(before, override)}; nothing changed")
    if to in (RouteState.CANARY, RouteState.ASYNC) and before[0] in (
        RouteState.LEGACY,
        RouteState.SHADOW,
    ):
        short = promotion_bar(store.counts().get(key, Counts()), manifest)
        if short is not None and not force:
            return Outcome(
                f"{key}: not promoted: {short}. See what differs with: flask2fastapi "
                f'mismatches "{key}"; or promote anyway with --force',
                ok=False,
            )
    reason = "forced past the promotion bar" if force else ""
    store.set_state(key, to, percent=percent, actor=actor, reason=reason)
    was = _describe(before, override)
    return Outcome(
        f"{key}: {was} -> {_describe((to, percent), None)}, by {actor}. {_polled(manifest)}"
    )


def demote(
    store: RolloutStore, manifest: Manifest, route: FlaskRoute, *, reason: str, actor: str
) -> Outcome:
    """Send *route* back to legacy on every worker until ``clear`` or ``promote``."""
    key = route.key
    override = store.overrides().get(key)
    if not store.demote(key, reason=reason, actor=actor):
        assert override is not None
        when = override.at.isoformat(timespec="seconds")
        return Outcome(f"{key}: already demoted since {when} ({override.reason})")
    was = _describe(effective_state(key, manifest, override), override)
    return Outcome(
        f"{key}: {was} -> legacy (demoted), by {actor}. {_polled(manifest)} It stays legacy "
        f'until flask2fastapi clear "{key}", or promote.'
    )


def clear(store: RolloutStore, manifest: Manifest, route: FlaskRoute, *, actor: str) -> Outcome:
    """Drop *route*'s override or demotion: the manifest's state applies again."""
    key = route.key
    override = store.overrides().get(key)
    if override is None or not store.clear(key, actor=actor):
        return Outcome(f"{key}: no override nor demotion to clear; it is as the manifest says")
    now = _describe(effective_state(key, manifest, None), None)
    was = _describe(effective_state(key, manifest, override), override)
    return Outcome(f"{key}: {was} -> {now}, as the manifest says, by {actor}. {_polled(manifest)}")


def _check_target(route: FlaskRoute, to: RouteState, percent: float | None) -> None:
    if to not in PROMOTE_TARGETS:
        raise ConfigurationError(
            f"promote moves a route to shadow, canary or async, not {to}: "
            f'to send it back, flask2fastapi demote "{route.key}"'
        )
    if not route.ported:
        raise ConfigurationError(
            f"route {route.key} has no port in the FastAPI app: port it before promoting it"
        )
    if to is RouteState.CANARY and percent is None:
        raise ConfigurationError("a canary serves a share of users: give it, as --percent 10")
    if to is not RouteState.CANARY and percent is not None:
        raise ConfigurationError(f"--percent applies to --to canary, not to {to}")


def _describe(state: tuple[RouteState, float | None], override: Override | None) -> str:
    name, percent = state
    text = (
        f"canary {percent:g}%" if name is RouteState.CANARY and percent is not None else str(name)
    )
    return f"{text} (demoted)" if override is not None and override.demoted else text


def _polled(manifest: Manifest) -> str:
    seconds = manifest.rollout.poll_interval
    return f"Every worker applies it within {seconds:g} s ([rollout] poll_interval)."


def _percent(rate: float) -> str:
    return f"{rate * 100:.3f}".rstrip("0").rstrip(".") + "%"


def _rate(same: int, compared: int) -> str:
    return _percent(same / compared) if compared else ""


# -- mismatches ----------------------------------------------------------------------


def mismatch_text(mismatch: Mismatch) -> str:
    """A recorded mismatch as ``mismatches`` prints it: the request, both answers, the diff."""
    request = mismatch.request
    query = request.get("query") or ""
    target = request["path"] + (f"?{query}" if query else "")
    when = mismatch.at.isoformat(timespec="seconds")
    lines = [f"#{mismatch.id}  {when}  {mismatch.route}", f"request: {request['method']} {target}"]
    lines += _message(request)
    for side, answer in (("legacy", mismatch.legacy), ("port", mismatch.port)):
        lines.append(f"{side}: {answer['status']}")
        lines += _message(answer)
    lines.append("diff:")
    lines += [f"  {line}" for line in mismatch.diff.splitlines()]
    return "\n".join(lines)


def _message(message: Mapping[str, Any]) -> list[str]:
    lines = [f"  {name}: {value}" for name, value in message.get("headers", ())]
    body = message.get("body") or ""
    if body:
        lines += [f"  | {line}" for line in body.splitlines()]
    return lines


def mismatch_case(mismatch: Mismatch) -> tuple[dict[str, Any], list[str]]:
    """A shadow case (a line of a cases file) that sends the mismatch's request again,
    and notes on what redaction left out of it.

    Redacted headers (the cookie, the authorization) are dropped, not sent as
    ``[redacted]``: the case goes out as an anonymous user unless given a
    ``user``, ``session`` or ``cookie``.
    """
    request = mismatch.request
    query = request.get("query") or ""
    case: dict[str, Any] = {
        "method": request["method"],
        "path": request["path"] + (f"?{query}" if query else ""),
    }
    notes = []
    headers, dropped = {}, []
    for name, value in request.get("headers", ()):
        if value == REDACTED:
            dropped.append(name.lower())
        elif name.lower() not in _TRANSPORT_HEADERS:
            headers[name] = value
    body = request.get("body") or ""
    if body:
        decoded = _json_body(body, headers)
        if decoded is not None:
            case["json"] = decoded[0]
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        else:
            case["body"] = body
    if headers:
        case["headers"] = headers
    case["name"] = f"mismatch #{mismatch.id} of {mismatch.route}"
    if dropped:
        notes.append(
            f"redacted headers left out: {', '.join(sorted(set(dropped)))}; to send the "
            'request as its user, add "user", "session" or "cookie" to the case'
        )
    if REDACTED in body or REDACTED in query:
        notes.append(f"some values were redacted and are sent as {REDACTED!r}: edit the case")
    return case, notes


def case_line(case: Mapping[str, Any]) -> str:
    """*case* as one line of a JSON Lines cases file."""
    return json.dumps(case, ensure_ascii=False, separators=(", ", ": "))


def _json_body(body: str, headers: Mapping[str, str]) -> tuple[Any] | None:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media = content_type.partition(";")[0].strip().lower()
    if not (media == "application/json" or media.endswith("+json")):
        return None
    try:
        return (json.loads(body),)
    except ValueError:
        return None


def mismatch_json(mismatch: Mismatch) -> dict[str, Any]:
    """A recorded mismatch as ``mismatches --json`` prints it."""
    return {
        "id": mismatch.id,
        "at": mismatch.at.isoformat(),
        "route": str(mismatch.route),
        "request": mismatch.request,
        "legacy": mismatch.legacy,
        "port": mismatch.port,
        "diff": mismatch.diff,
    }
