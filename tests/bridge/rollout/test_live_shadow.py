"""A route in shadow: legacy answers, the port runs after it and never reaches the user."""

from __future__ import annotations

import anyio
import httpx
import pytest

from bridge._porting.database import DatabaseSettings
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import RouteKey, parse_manifest
from tests.bridge.rollout.apps import ITEMS, Apps, RecordedMetrics, serving

pytestmark = pytest.mark.anyio

ITEMS_ROUTE = RouteKey("GET", "/items")

SHADOW = """
[rollout]
shadow_timeout = 0.5
max_shadows_in_flight = 3

[routes]
"GET /items" = "shadow"
"""


def shadowed(apps: Apps, manifest: str = SHADOW) -> tuple[HybridApp, RecordedMetrics]:
    metrics = RecordedMetrics()
    return HybridApp(apps.flask, apps.fastapi, parse_manifest(manifest), metrics=metrics), metrics


def seen(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, response.headers.multi_items(), response.content


async def legacy_answer() -> tuple[int, list[tuple[str, str]], bytes]:
    """What the user gets from ``GET /items`` with the route plainly legacy."""
    apps = Apps()
    hybrid = HybridApp(apps.flask, apps.fastapi, parse_manifest(""))
    async with serving(hybrid) as client:
        return seen(await client.get("/items"))


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("same", "same"),
        ("different", "different"),
        ("raise", "error"),
        ("hang", "timed_out"),
        ("garbage", "different"),
        ("error", "different"),
    ],
)
async def test_the_user_gets_the_legacy_answer_whatever_the_port_does(
    mode: str, outcome: str
) -> None:
    expected = await legacy_answer()
    apps = Apps()
    apps.mode = mode
    hybrid, metrics = shadowed(apps)

    async with serving(hybrid) as client:
        response = await client.get("/items")
        assert seen(response) == expected
        assert response.json() == ITEMS
        assert response.headers["x-bridge-side"] == "legacy"
        assert await metrics.outcomes(1) == [outcome]
    assert apps.port_calls == 1
    assert metrics.requests == [("GET /items", "legacy", 200)]


async def test_a_port_that_raises_is_recorded_with_the_error_line() -> None:
    apps = Apps()
    apps.mode = "raise"
    hybrid, metrics = shadowed(apps)

    async with serving(hybrid) as client:
        await client.get("/items")
        await metrics.outcomes(1)
        [mismatch] = hybrid.rollout.pending_mismatches(ITEMS_ROUTE)

    assert "RuntimeError: the port exploded" in mismatch.diff
    assert mismatch.legacy["status"] == 200


async def test_the_cap_on_shadows_in_flight_holds_under_a_burst() -> None:
    apps = Apps()
    apps.mode = "block"
    apps.release = anyio.Event()
    hybrid, metrics = shadowed(apps, SHADOW.replace("shadow_timeout = 0.5", "shadow_timeout = 30"))

    async with serving(hybrid) as client:
        responses: list[httpx.Response] = []

        async def one() -> None:
            responses.append(await client.get("/items"))

        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(one)
        # Every user has an answer while three shadows still wait.
        assert [r.json() for r in responses] == [ITEMS] * 12
        with anyio.fail_after(10):
            while apps.waiting < 3:
                await anyio.sleep(0.01)
        assert hybrid.shadows.in_flight == 3
        assert await metrics.outcomes(9) == ["skipped"] * 9
        apps.release.set()
        outcomes = await metrics.outcomes(12)

    assert apps.most_waiting == 3
    assert sorted(outcomes) == ["same"] * 3 + ["skipped"] * 9
    assert hybrid.shadows.in_flight == 0


async def test_sampling_zero_runs_no_shadow() -> None:
    apps = Apps()
    hybrid, metrics = shadowed(apps, SHADOW.replace('"shadow"', '{ state = "shadow", sample = 0 }'))

    async with serving(hybrid) as client:
        for _ in range(5):
            assert (await client.get("/items")).json() == ITEMS

    assert apps.port_calls == 0
    assert metrics.shadows == []


async def test_shadows_still_running_are_cancelled_when_the_server_stops() -> None:
    apps = Apps()
    apps.mode = "hang"
    hybrid, _ = shadowed(apps, SHADOW.replace("shadow_timeout = 0.5", "shadow_timeout = 60"))

    with anyio.fail_after(10):
        async with serving(hybrid) as client:
            await client.get("/items")
            while apps.port_calls == 0:
                await anyio.sleep(0.01)

    assert hybrid.shadows.tasks == set()


WRITES = """
[routes]
"POST {path}" = {{ state = "shadow"{options} }}
"""


@pytest.mark.async_side
@pytest.mark.parametrize("path", ["/notes", "/notes/committed", "/notes/core"])
async def test_a_shadowed_write_in_rollback_mode_is_written_once(
    database_settings: DatabaseSettings, path: str
) -> None:
    apps = Apps(database_settings)
    hybrid, metrics = shadowed(apps, WRITES.format(path=path, options=", shadow_writes = true"))

    async with serving(hybrid) as client:
        response = await client.post(path)
        # The port saw legacy's row and its own, then rolled back.
        assert await metrics.outcomes(1) == ["different"]
        [mismatch] = hybrid.rollout.pending_mismatches(RouteKey("POST", path))

    assert response.json() == {"notes": 1}
    assert apps.port_calls == 1
    assert apps.notes() == ["legacy"]
    assert mismatch.legacy["body"].replace(" ", "").strip() == '{"notes":1}'
    assert mismatch.port["body"].replace(" ", "").strip() == '{"notes":2}'


@pytest.mark.async_side
async def test_a_write_is_not_shadowed_without_opting_in(
    database_settings: DatabaseSettings,
) -> None:
    apps = Apps(database_settings)
    hybrid, metrics = shadowed(apps, WRITES.format(path="/notes", options=""))

    async with serving(hybrid) as client:
        response = await client.post("/notes")
        # A shadow starts as legacy's answer completes, before the client has it.
        assert hybrid.shadows.in_flight == 0

    assert response.json() == {"notes": 1}
    assert apps.port_calls == 0
    assert metrics.shadows == []
    assert apps.notes() == ["legacy"]


@pytest.mark.async_side
async def test_the_port_commits_as_usual_outside_a_shadow(
    database_settings: DatabaseSettings,
) -> None:
    apps = Apps(database_settings)
    hybrid, _ = shadowed(apps, '[routes]\n"POST /notes/committed" = "async"\n')

    async with serving(hybrid) as client:
        assert (await client.post("/notes/committed")).json() == {"notes": 1}
        assert (await client.post("/notes/core")).json() == {"notes": 2}  # legacy

    assert sorted(apps.notes()) == ["legacy", "port"]
