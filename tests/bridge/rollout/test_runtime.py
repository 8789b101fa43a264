"""A worker's rollout: overrides from the store, automatic fallback, manifest reloads."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from bridge._rollout.bucketing import serves_port
from bridge._rollout.store import RolloutStore
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import RouteKey, RouteState, load_manifest, parse_manifest
from tests.bridge.rollout.apps import Apps, RecordedMetrics, serving

pytestmark = pytest.mark.anyio

ITEMS = RouteKey("GET", "/items")

MANIFEST = """
[rollout]
poll_interval = 3600  # the tests poll by hand
min_requests = 10
error_rate = 0.2
window = 600
{extra}
[routes]
"GET /items" = {state}
"""


def write_manifest(path: Path, state: str = '"async"', extra: str = "") -> Path:
    path.write_text(MANIFEST.format(state=state, extra=extra), encoding="utf-8")
    return path


def hybrid_on(apps: Apps, path: Path, url: str) -> tuple[HybridApp, RecordedMetrics]:
    metrics = RecordedMetrics()
    hybrid = HybridApp(
        apps.flask,
        apps.fastapi,
        load_manifest(path),
        store=lambda: RolloutStore.from_url(url),
        metrics=metrics,
    )
    return hybrid, metrics


async def sides(client: httpx.AsyncClient, count: int = 1) -> list[str]:
    return [(await client.get("/items")).headers["x-bridge-side"] for _ in range(count)]


async def test_fallback_demotes_a_failing_port_until_an_operator_clears_it(
    tmp_path: Path, database_url: str, store: RolloutStore
) -> None:
    apps = Apps()
    path = write_manifest(tmp_path / "migration.toml")
    hybrid, metrics = hybrid_on(apps, path, database_url)

    async with serving(hybrid) as client:
        assert await sides(client, 10) == ["async"] * 10
        await hybrid.rollout.poll_once()
        assert store.overrides() == {}  # a healthy port stays

        apps.mode = "error"
        assert await sides(client, 10) == ["async"] * 10
        await hybrid.rollout.poll_once()
        assert await sides(client, 3) == ["legacy"] * 3  # at once in this worker

        override = store.overrides()[ITEMS]
        assert override.demoted
        assert override.state is RouteState.LEGACY
        assert "5xx rate 50.0% (10 of 20 requests)" in override.reason
        assert [event.action for event in store.events(ITEMS)][:1] == ["demote"]

        # A new manifest keeps the route where the server put it.
        write_manifest(path, extra="keep_mismatches = 5\n")
        await hybrid.rollout.poll_once()
        assert hybrid.manifest.rollout.keep_mismatches == 5
        assert await sides(client, 3) == ["legacy"] * 3

        apps.mode = "same"
        store.clear(ITEMS, actor="operator")
        await hybrid.rollout.poll_once()
        assert await sides(client, 3) == ["async"] * 3
        await hybrid.rollout.poll_once()  # the old errors no longer count
        assert ITEMS not in store.overrides()
    assert ("GET /items", "async", 500) in metrics.requests
    assert metrics.ticks >= 5


async def test_a_quiet_route_is_not_demoted_by_a_few_errors(
    tmp_path: Path, database_url: str, store: RolloutStore
) -> None:
    apps = Apps()
    apps.mode = "error"
    hybrid, _ = hybrid_on(apps, write_manifest(tmp_path / "migration.toml"), database_url)

    async with serving(hybrid) as client:
        assert await sides(client, 9) == ["async"] * 9
        await hybrid.rollout.poll_once()
        assert await sides(client) == ["async"]

    assert store.overrides() == {}
    assert store.counts()[ITEMS].errors_async == 10  # the last one reported at shutdown


async def test_a_shadow_that_differs_too_often_is_demoted_and_its_mismatches_stored(
    tmp_path: Path, database_url: str, store: RolloutStore
) -> None:
    apps = Apps()
    apps.mode = "different"
    path = write_manifest(
        tmp_path / "migration.toml", '"shadow"', "mismatch_rate = 0.5\nkeep_mismatches = 3\n"
    )
    hybrid, metrics = hybrid_on(apps, path, database_url)

    async with serving(hybrid) as client:
        for _ in range(10):
            await client.get("/items", headers={"authorization": "Bearer s3cret"})
        await metrics.outcomes(10)
        await hybrid.rollout.poll_once()

    assert store.overrides()[ITEMS].demoted
    assert "mismatch rate 100.0%" in store.overrides()[ITEMS].reason
    mismatches = store.mismatches(ITEMS)
    assert len(mismatches) == 3  # the newest, of ten
    assert ["authorization", "[redacted]"] in mismatches[0].request["headers"]
    assert "s3cret" not in str(mismatches[0])
    assert '"a"' in mismatches[0].legacy["body"]
    assert "$.items" in mismatches[0].diff


async def test_an_operator_override_wins_over_the_manifest(
    tmp_path: Path, database_url: str, store: RolloutStore
) -> None:
    apps = Apps()
    hybrid, _ = hybrid_on(
        apps, write_manifest(tmp_path / "migration.toml", '"legacy"'), database_url
    )

    async with serving(hybrid) as client:
        assert await sides(client) == ["legacy"]
        store.set_state(ITEMS, RouteState.ASYNC, actor="operator")
        assert await sides(client) == ["legacy"]  # until the next poll
        await hybrid.rollout.poll_once()
        assert await sides(client) == ["async"]


async def test_a_bad_manifest_is_logged_once_and_the_old_one_kept(
    tmp_path: Path, database_url: str, store: RolloutStore, caplog: pytest.LogCaptureFixture
) -> None:
    apps = Apps()
    path = write_manifest(tmp_path / "migration.toml")
    hybrid, _ = hybrid_on(apps, path, database_url)

    async with serving(hybrid) as client:
        path.write_text('[routes]\n"GET /items" = "sideways"\n', encoding="utf-8")
        with caplog.at_level(logging.ERROR, "flask2fastapi.rollout"):
            await hybrid.rollout.poll_once()
            await hybrid.rollout.poll_once()
        assert await sides(client) == ["async"]
        # A manifest that parses but does not fit the apps is refused as well.
        path.write_text('[routes]\n"GET /nowhere" = "legacy"\n', encoding="utf-8")
        with caplog.at_level(logging.ERROR, "flask2fastapi.rollout"):
            await hybrid.rollout.poll_once()
        assert await sides(client) == ["async"]

    messages = [r.getMessage() for r in caplog.records if r.name == "flask2fastapi.rollout"]
    assert len(messages) == 2, messages
    assert "sideways" in messages[0]
    assert "GET /nowhere matches no rule" in messages[1]


async def test_serving_goes_on_when_the_store_cannot_be_reached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    apps = Apps()
    path = write_manifest(tmp_path / "migration.toml")
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing"

    with caplog.at_level(logging.ERROR, "flask2fastapi.rollout"):
        hybrid, _ = hybrid_on(apps, path, unreachable)
        async with serving(hybrid) as client:
            assert await sides(client, 3) == ["async"] * 3
            await hybrid.rollout.poll_once()
            await hybrid.rollout.poll_once()
            assert await sides(client) == ["async"]
            write_manifest(path, '"legacy"')  # the manifest still reloads
            await hybrid.rollout.poll_once()
            assert await sides(client) == ["legacy"]

    outage = [r for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(outage) == 1
    assert hybrid.rollout.pending(ITEMS).served_async == 4  # kept for when it is back


CANARY = """
[rollout]
bucket_key = "{key}"

[routes]
"GET /items" = {{ state = "canary", percent = {percent} }}
"""


def canary(apps: Apps, percent: float, key: str = "header:x-user") -> HybridApp:
    manifest = parse_manifest(CANARY.format(key=key, percent=percent))
    return HybridApp(apps.flask, apps.fastapi, manifest)


async def test_a_canary_serves_its_share_of_users_each_always_on_one_side() -> None:
    users = [f"user-{n}" for n in range(200)]
    async with serving(canary(Apps(), 30)) as client:
        sides = {}
        for user in users:
            answers = {
                (await client.get("/items", headers={"x-user": user})).headers["x-bridge-side"]
                for _ in range(3)
            }
            assert len(answers) == 1, f"{user} was served by both sides"
            sides[user] = answers.pop()

    assert sides == {u: "async" if serves_port(f"header:{u}", 30) else "legacy" for u in users}
    assert 30 < list(sides.values()).count("async") < 90


async def test_raising_a_canary_by_override_keeps_every_user_already_on_the_port(
    database_url: str, store: RolloutStore
) -> None:
    apps = Apps()
    manifest = parse_manifest(CANARY.format(key="header:x-user", percent=20))
    hybrid = HybridApp(
        apps.flask, apps.fastapi, manifest, store=lambda: RolloutStore.from_url(database_url)
    )
    users = [f"user-{n}" for n in range(100)]

    async def port_users(client: httpx.AsyncClient) -> set[str]:
        served = set()
        for user in users:
            response = await client.get("/items", headers={"x-user": user})
            if response.headers["x-bridge-side"] == "async":
                served.add(user)
        return served

    async with serving(hybrid) as client:
        before = await port_users(client)
        store.set_state(ITEMS, RouteState.CANARY, percent=60, actor="operator")
        await hybrid.rollout.poll_once()
        after = await port_users(client)

    assert before < after
    assert len(after) > len(before) + 20


async def test_a_canary_bucketed_by_session_follows_the_logged_in_user() -> None:
    apps = Apps()
    hybrid = canary(apps, 50, key="session:user_id")
    async with serving(hybrid) as client:
        for user in [f"u-{n}" for n in range(12)]:
            client.cookies.clear()
            await client.get(f"/login/{user}")  # legacy: Flask signs the session
            expected = "async" if serves_port(f"session:{user}", 50) else "legacy"
            for _ in range(2):
                assert (await client.get("/items")).headers["x-bridge-side"] == expected


async def test_a_canary_answer_of_the_port_that_fails_is_counted_not_retried() -> None:
    apps = Apps()
    apps.mode = "error"
    hybrid = canary(apps, 100)
    async with serving(hybrid) as client:
        response = await client.get("/items", headers={"x-user": "anyone"})
        assert response.status_code == 500
        assert response.headers["x-bridge-side"] == "async"
        assert hybrid.rollout.pending(ITEMS).errors_async == 1
        assert hybrid.rollout.pending(ITEMS).served_legacy == 0
    assert apps.port_calls == 1


async def test_a_change_to_apps_or_bridge_says_it_needs_a_restart(
    tmp_path: Path, database_url: str, store: RolloutStore, caplog: pytest.LogCaptureFixture
) -> None:
    apps = Apps()
    path = write_manifest(tmp_path / "migration.toml")
    hybrid, _ = hybrid_on(apps, path, database_url)

    async with serving(hybrid) as client:
        write_manifest(path, '"legacy"', extra="[bridge]\nwsgi_threads = 3\n")
        with caplog.at_level(logging.WARNING, "flask2fastapi.rollout"):
            await hybrid.rollout.poll_once()
        assert await sides(client) == ["legacy"]  # the routes apply at once

    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "manifest: changes to [apps] and [bridge] apply at the next restart"
    ]
    assert hybrid.legacy.threads == 8
