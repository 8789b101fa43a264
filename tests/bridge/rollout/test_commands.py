"""The rollout commands' bodies, on a real store: SQLite by default, PostgreSQL when set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bridge._exceptions import ConfigurationError, ManifestError
from bridge._rollout import commands
from bridge._rollout.store import Counts, Mismatch, RolloutStore, metadata
from bridge._serving.manifest import Manifest, RouteKey, RouteState, parse_manifest
from bridge._serving.routing import FlaskRoute
from bridge._shadow.cases import Case

MANIFEST = """
[apps]
flask = "app:create_app"
fastapi = "app:create_port"

[routes]
"GET /api/items" = { state = "shadow", sample = 0.5 }
"GET /api/items/<int:item_id>" = { state = "canary", percent = 10 }
"POST /api/items" = "async"

[rollout]
poll_interval = 3
promote_match_rate = 0.99
promote_min_compared = 100
"""

LIST = FlaskRoute("GET", "/api/items", "list_items", RouteState.SHADOW, ported=True)
ONE = FlaskRoute("GET", "/api/items/<int:item_id>", "get_item", RouteState.CANARY, ported=True)
CREATE = FlaskRoute("POST", "/api/items", "create_item", RouteState.ASYNC, ported=True)
HEALTH = FlaskRoute("GET", "/health", "health", RouteState.LEGACY, ported=False)
ROUTES = [LIST, ONE, CREATE, HEALTH]


@pytest.fixture
def manifest() -> Manifest:
    return parse_manifest(MANIFEST)


@pytest.fixture
def store(database_url: str) -> Iterator[RolloutStore]:
    store = RolloutStore.from_url(database_url, worker="w1")
    yield store
    metadata.drop_all(store.engine)
    store.dispose()


def shadowed(store: RolloutStore, key: RouteKey, *, same: int, different: int) -> None:
    counts = Counts(compared=same + different, same=same, different=different)
    store.add_counts({key: counts})


def test_find_route_names_the_route_as_the_manifest_does() -> None:
    assert commands.find_route("get  /api/items/<int:item_id>", ROUTES) is ONE


def test_find_route_refuses_an_unknown_route_naming_the_closest() -> None:
    with pytest.raises(ConfigurationError) as error:
        commands.find_route("GET /api/item/<int:item_id>", ROUTES)
    assert "route GET /api/item/<int:item_id> matches no rule of the Flask app" in str(error.value)
    assert "closest: GET /api/items/<int:item_id>" in str(error.value)


def test_find_route_refuses_a_key_that_is_no_route_key() -> None:
    with pytest.raises(ManifestError, match="must be an HTTP method and a Flask rule"):
        commands.find_route("/api/items", ROUTES)


def test_status_lists_every_route_with_its_counts_and_states(
    store: RolloutStore, manifest: Manifest
) -> None:
    store.add_counts(
        {
            LIST.key: Counts(served_legacy=40, compared=20, same=18, different=2, skipped=3),
            ONE.key: Counts(served_legacy=9, served_async=1),
        }
    )
    store.add_counts({LIST.key: Counts(served_legacy=2, timed_out=1)})  # another poll
    store.demote(ONE.key, reason="error rate 20% over 100 requests")

    rows = commands.status(ROUTES, manifest, store)

    by_rule = {(row["method"], row["rule"]): row for row in rows}
    assert [(row["method"], row["rule"]) for row in rows] == [
        ("GET", "/api/items"),
        ("POST", "/api/items"),
        ("GET", "/api/items/<int:item_id>"),
        ("GET", "/health"),
    ]
    listing = by_rule[("GET", "/api/items")]
    assert listing == {
        "method": "GET",
        "rule": "/api/items",
        "state": "shadow",
        "effective_state": "shadow",
        "served": {"legacy": 42, "async": 0},
        "shadow": {"compared": 20, "same": 18, "different": 2, "skipped": 4},
        "demoted": None,
    }
    one = by_rule[("GET", "/api/items/<int:item_id>")]
    assert (one["state"], one["effective_state"]) == ("canary", "legacy")
    assert one["served"] == {"legacy": 9, "async": 1}
    assert one["demoted"]["reason"] == "error rate 20% over 100 requests"
    assert datetime.fromisoformat(one["demoted"]["at"]).tzinfo is not None
    assert by_rule[("GET", "/health")]["effective_state"] == "legacy"
    json.dumps(rows)  # what --json prints

    table = commands.status_table(rows)
    assert "90%" in table.splitlines()[1]  # 18 of 20 compared were the same
    assert "error rate 20% over 100 requests" in table


def test_an_operators_override_is_the_effective_state(
    store: RolloutStore, manifest: Manifest
) -> None:
    store.set_state(LIST.key, RouteState.CANARY, percent=25, actor="ana")

    row = next(r for r in commands.status(ROUTES, manifest, store) if r["rule"] == "/api/items")

    assert (row["state"], row["effective_state"], row["demoted"]) == ("shadow", "canary", None)
    override = store.overrides()[LIST.key]
    assert commands.effective_state(LIST.key, manifest, override) == (RouteState.CANARY, 25)
    # A canary override without its own share keeps the manifest's.
    assert commands.effective_state(ONE.key, manifest, None) == (RouteState.CANARY, 10)


def test_promote_is_refused_below_the_match_rate_bar(
    store: RolloutStore, manifest: Manifest
) -> None:
    shadowed(store, LIST.key, same=197, different=3)  # 98.5 %, the bar is 99 %

    outcome = commands.promote(store, manifest, LIST, to=RouteState.CANARY, percent=10, actor="ana")

    assert not outcome.ok
    assert "match rate 98.5% over 200 compared requests" in outcome.text
    assert "the bar is 99% over at least 100" in outcome.text
    assert "--force" in outcome.text and 'mismatches "GET /api/items"' in outcome.text
    assert store.overrides() == {}


def test_promote_is_refused_with_too_few_comparisons(
    store: RolloutStore, manifest: Manifest
) -> None:
    shadowed(store, LIST.key, same=99, different=0)

    outcome = commands.promote(store, manifest, LIST, to=RouteState.ASYNC, actor="ana")

    assert not outcome.ok
    assert "99 compared requests recorded" in outcome.text
    assert store.overrides() == {}


def test_promote_past_the_bar_writes_the_override_every_worker_reads(
    store: RolloutStore, manifest: Manifest
) -> None:
    shadowed(store, LIST.key, same=99, different=1)  # exactly 99 % over 100
    version = store.version()

    outcome = commands.promote(store, manifest, LIST, to=RouteState.CANARY, percent=10, actor="ana")

    assert outcome.ok
    assert outcome.text.startswith("GET /api/items: shadow -> canary 10%, by ana.")
    assert "within 3 s ([rollout] poll_interval)" in outcome.text
    override = store.overrides()[LIST.key]
    assert (override.state, override.percent, override.actor) == (RouteState.CANARY, 10, "ana")
    assert store.version() > version
    event = store.events(LIST.key)[0]
    assert (event.action, event.state, event.actor) == ("set", "canary", "ana")


def test_force_promotes_below_the_bar_and_says_so_in_the_event(
    store: RolloutStore, manifest: Manifest
) -> None:
    outcome = commands.promote(store, manifest, LIST, to=RouteState.ASYNC, force=True, actor="ana")

    assert outcome.ok
    assert store.overrides()[LIST.key].state is RouteState.ASYNC
    assert "forced" in store.events(LIST.key)[0].reason


def test_from_canary_to_async_needs_no_shadow(store: RolloutStore, manifest: Manifest) -> None:
    outcome = commands.promote(store, manifest, ONE, to=RouteState.ASYNC, actor="ana")

    assert outcome.ok, outcome.text
    assert outcome.text.startswith("GET /api/items/<int:item_id>: canary 10% -> async")


def test_to_shadow_needs_no_bar(store: RolloutStore, manifest: Manifest) -> None:
    legacy = FlaskRoute("GET", "/api/other", "other", RouteState.LEGACY, ported=True)

    outcome = commands.promote(store, manifest, legacy, to=RouteState.SHADOW, actor="ana")

    assert outcome.ok
    assert store.overrides()[legacy.key].state is RouteState.SHADOW


@pytest.mark.parametrize(
    ("route", "to", "percent", "message"),
    [
        (LIST, RouteState.CANARY, None, "give it, as --percent 10"),
        (LIST, RouteState.ASYNC, 10.0, "--percent applies to --to canary, not to async"),
        (LIST, RouteState.LEGACY, None, "not legacy: to send it back, flask2fastapi demote"),
        (HEALTH, RouteState.SHADOW, None, "has no port in the FastAPI app"),
    ],
)
def test_promote_refuses_what_cannot_work(
    store: RolloutStore,
    manifest: Manifest,
    route: FlaskRoute,
    to: RouteState,
    percent: float | None,
    message: str,
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        commands.promote(store, manifest, route, to=to, percent=percent, force=True, actor="a")
    assert store.overrides() == {}


def test_demote_sends_the_route_back_to_legacy_until_cleared(
    store: RolloutStore, manifest: Manifest
) -> None:
    outcome = commands.demote(store, manifest, ONE, reason="pager at 3 am", actor="ana")

    assert outcome.ok
    assert outcome.text.startswith("GET /api/items/<int:item_id>: canary 10% -> legacy (demoted)")
    assert 'flask2fastapi clear "GET /api/items/<int:item_id>"' in outcome.text
    override = store.overrides()[ONE.key]
    assert (override.state, override.demoted, override.reason) == (
        RouteState.LEGACY,
        True,
        "pager at 3 am",
    )

    again = commands.demote(store, manifest, ONE, reason="again", actor="bo")
    assert again.ok and "already demoted since" in again.text and "pager at 3 am" in again.text
    assert store.overrides()[ONE.key].reason == "pager at 3 am"

    cleared = commands.clear(store, manifest, ONE, actor="ana")
    assert cleared.text.startswith(
        "GET /api/items/<int:item_id>: legacy (demoted) -> canary 10%, as the manifest says"
    )
    assert store.overrides() == {}


def test_promote_lifts_a_servers_demotion(store: RolloutStore, manifest: Manifest) -> None:
    shadowed(store, LIST.key, same=100, different=0)
    store.demote(LIST.key, reason="mismatch rate 5%")

    outcome = commands.promote(store, manifest, LIST, to=RouteState.CANARY, percent=5, actor="ana")

    assert outcome.ok
    assert outcome.text.startswith("GET /api/items: legacy (demoted) -> canary 5%")
    override = store.overrides()[LIST.key]
    assert (override.state, override.demoted) == (RouteState.CANARY, False)


def test_promote_to_the_state_it_is_in_changes_nothing(
    store: RolloutStore, manifest: Manifest
) -> None:
    same = commands.promote(store, manifest, ONE, to=RouteState.CANARY, percent=10, actor="a")
    other = commands.promote(store, manifest, ONE, to=RouteState.CANARY, percent=20, actor="a")

    assert same.text == "GET /api/items/<int:item_id>: already canary 10%; nothing changed"
    assert other.text.startswith("GET /api/items/<int:item_id>: canary 10% -> canary 20%")
    assert [event.percent for event in store.events()] == [20]


def test_clear_with_nothing_to_clear(store: RolloutStore, manifest: Manifest) -> None:
    outcome = commands.clear(store, manifest, LIST, actor="ana")
    assert outcome.ok and "no override nor demotion to clear" in outcome.text
    assert store.events() == []


def mismatch(**request: object) -> Mismatch:
    base = {
        "method": "POST",
        "path": "/api/items",
        "query": "",
        "headers": [
            ["host", "shop.example"],
            ["content-type", "application/json"],
            ["content-length", "52"],
            ["cookie", "[redacted]"],
            ["authorization", "[redacted]"],
            ["x-request-id", "abc"],
        ],
        "body": '{"name": "lamp", "password": "[redacted]"}',
    }
    return Mismatch(
        route=CREATE.key,
        at=datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
        request={**base, **request},
        legacy={
            "status": 201,
            "headers": [["content-type", "application/json"]],
            "body": '{"id": 1}',
        },
        port={
            "status": 200,
            "headers": [["content-type", "application/json"]],
            "body": '{"id": 1}',
        },
        diff="status: 201 != 200",
        id=7,
    )


def test_a_mismatch_becomes_a_case_the_shadow_command_runs() -> None:
    case, notes = commands.mismatch_case(mismatch(query="page=2"))

    assert case == {
        "method": "POST",
        "path": "/api/items?page=2",
        "json": {"name": "lamp", "password": "[redacted]"},
        "headers": {"x-request-id": "abc"},
        "name": "mismatch #7 of POST /api/items",
    }
    parsed = Case.from_mapping(json.loads(commands.case_line(case)))
    assert (parsed.method, parsed.path, parsed.json) == ("POST", "/api/items?page=2", case["json"])
    assert "redacted headers left out: authorization, cookie" in notes[0]
    assert "sent as '[redacted]'" in notes[1]


def test_a_body_that_is_not_json_stays_text() -> None:
    headers = [["content-type", "text/plain"], ["x-api-key", "[redacted]"]]
    case, notes = commands.mismatch_case(mismatch(headers=headers, body="hello"))

    assert case["body"] == "hello" and "json" not in case
    assert case["headers"] == {"content-type": "text/plain"}
    assert notes == [
        "redacted headers left out: x-api-key; to send the request as its user, "
        'add "user", "session" or "cookie" to the case'
    ]
    Case.from_mapping(json.loads(commands.case_line(case)))


def test_mismatch_text_shows_the_request_both_answers_and_the_diff() -> None:
    text = commands.mismatch_text(mismatch())

    assert text.splitlines()[:2] == [
        "#7  2026-12-01T17:00:00+00:00  POST /api/items",
        "request: POST /api/items",
    ]
    assert "  cookie: [redacted]" in text
    assert '  | {"name": "lamp", "password": "[redacted]"}' in text
    assert "legacy: 201" in text and "port: 200" in text
    assert text.endswith("diff:\n  status: 201 != 200")
