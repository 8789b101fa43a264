"""The rollout store, on the suite's database: SQLite by default, PostgreSQL when set."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bridge._rollout.store import (
    BUCKET_SECONDS,
    WINDOW_LIMIT,
    Counts,
    Latencies,
    Mismatch,
    RolloutStore,
)
from bridge._serving.manifest import RouteKey, RouteState
from tests.conftest import ON_POSTGRES

LIST = RouteKey("GET", "/api/products")
ONE = RouteKey("GET", "/api/products/<int:product_id>")
NOW = 1_800_000_000.0


def test_tables_are_created_on_first_use(store: RolloutStore) -> None:
    assert not sa.inspect(store.engine).has_table("flask2fastapi_rollout_overrides")

    assert store.overrides() == {}
    assert store.version() == 0
    assert sa.inspect(store.engine).has_table("flask2fastapi_rollout_overrides")


def test_workers_creating_the_tables_at_once_all_succeed(
    store: RolloutStore, database_url: str
) -> None:
    stores = [RolloutStore.from_url(database_url, worker=f"w{i}") for i in range(4)]
    errors: list[BaseException] = []

    def first_use(each: RolloutStore) -> None:
        try:
            each.version()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(each,)) for each in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in stores:
        each.dispose()
    assert errors == []
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT count(*) FROM flask2fastapi_rollout_meta"))
        assert rows.scalar() == 1


def test_an_override_is_seen_by_another_store_and_raises_the_version(
    store: RolloutStore, database_url: str
) -> None:
    other = RolloutStore.from_url(database_url, worker="w2")
    before = other.version()

    store.set_state(ONE, RouteState.CANARY, percent=10, actor="ops", reason="first users")

    assert other.version() > before
    override = other.overrides()[ONE]
    assert (override.state, override.percent, override.demoted) == (RouteState.CANARY, 10, False)
    assert (override.actor, override.reason) == ("ops", "first users")
    assert override.at.tzinfo is not None
    other.dispose()


def test_a_demotion_is_recorded_once_and_stays_until_cleared(store: RolloutStore) -> None:
    store.set_state(ONE, RouteState.ASYNC, actor="ops")

    assert store.demote(ONE, reason="port 5xx rate 12% over 300 s") is True
    version = store.version()
    assert store.demote(ONE, reason="again") is False
    assert store.version() == version

    override = store.overrides()[ONE]
    assert (override.state, override.demoted) == (RouteState.LEGACY, True)
    assert override.reason == "port 5xx rate 12% over 300 s"
    assert override.actor == "server"

    assert store.clear(ONE, actor="ops") is True
    assert ONE not in store.overrides()
    assert store.clear(ONE, actor="ops") is False
    actions = [(event.action, event.state) for event in store.events(ONE)]
    assert actions == [("clear", None), ("demote", "legacy"), ("set", "async")]


def test_promoting_a_demoted_route_drops_the_demotion(store: RolloutStore) -> None:
    store.demote(LIST, reason="mismatch rate")
    store.set_state(LIST, RouteState.SHADOW, actor="ops")

    assert store.overrides()[LIST].demoted is False
    assert store.demote(LIST, reason="mismatch rate") is True


def test_counts_add_up_across_workers_and_windows(store: RolloutStore, database_url: str) -> None:
    other = RolloutStore.from_url(database_url, worker="w2")
    store.add_counts({LIST: Counts(served_legacy=3, errors_legacy=1)}, now=NOW)
    store.add_counts({LIST: Counts(served_legacy=2), ONE: Counts()}, now=NOW + 1)
    other.add_counts({LIST: Counts(served_async=4, errors_async=2)}, now=NOW + 1)
    store.add_counts({LIST: Counts(compared=5, same=4, different=1)}, now=NOW + 60)

    totals = store.counts()
    assert totals == {
        LIST: Counts(
            served_legacy=5,
            errors_legacy=1,
            served_async=4,
            errors_async=2,
            compared=5,
            same=4,
            different=1,
        )
    }
    assert totals[LIST].error_rate("async") == 0.5
    assert totals[LIST].match_rate == 0.8
    assert store.counts(since=NOW + 60) == {LIST: Counts(compared=5, same=4, different=1)}
    assert store.counts(since=NOW + 60 + BUCKET_SECONDS) == {}
    other.dispose()


def test_old_buckets_fold_into_totals_and_leave_windows(store: RolloutStore) -> None:
    store.add_counts({LIST: Counts(served_async=7)}, now=NOW)
    later = NOW + WINDOW_LIMIT + 2 * BUCKET_SECONDS
    store.add_counts({LIST: Counts(served_async=1)}, now=later)
    store.add_counts({LIST: Counts(served_async=2)}, now=later + 100)

    assert store.counts()[LIST].served_async == 10
    assert store.counts(since=later - WINDOW_LIMIT)[LIST].served_async == 3
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT count(*) FROM flask2fastapi_rollout_counts WHERE bucket = 0")
        )
        assert rows.scalar() == 1


def _mismatch(route: RouteKey, n: int) -> Mismatch:
    return Mismatch(
        route=route,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        request={"method": "GET", "path": f"/api/products/{n}", "query": "", "headers": []},
        legacy={"status": 200, "headers": [["content-type", "application/json"]], "body": "{}"},
        port={"status": 500, "headers": [], "body": ""},
        diff=f"status: 200 vs 500 ({n})",
    )


def test_mismatches_keep_the_newest_per_route(store: RolloutStore) -> None:
    for n in range(5):
        store.add_mismatch(_mismatch(ONE, n), keep=3)
    store.add_mismatch(_mismatch(LIST, 9), keep=3)

    kept = store.mismatches(ONE)
    assert [m.diff for m in kept] == [f"status: 200 vs 500 ({n})" for n in (4, 3, 2)]
    assert kept[0].request["path"] == "/api/products/4"
    assert kept[0].legacy["headers"] == [["content-type", "application/json"]]
    assert [m.route for m in store.mismatches()] == [LIST, ONE, ONE, ONE]
    first = kept[0]
    assert first.id is not None and store.mismatch(first.id) == first
    assert store.mismatch(10_000) is None


def test_an_async_driver_url_is_read_as_its_sync_twin(tmp_path: object) -> None:
    store = RolloutStore.from_url(f"sqlite+aiosqlite:///{tmp_path}/x.sqlite3")
    assert store.engine.dialect.driver == "pysqlite"
    store.dispose()


def test_latencies_add_up_across_workers_and_read_as_bin_bounds(
    store: RolloutStore, database_url: str
) -> None:
    other = RolloutStore.from_url(database_url, worker="w2")
    fast, slow = Latencies(), Latencies()
    for _ in range(90):
        fast.observe("legacy", 0.0015)  # the 2 ms bin
    for _ in range(10):
        slow.observe("legacy", 0.15)  # the 200 ms bin
    slow.observe("async", 30.0)  # beyond the last finite bound
    store.add_latencies({LIST: fast}, now=NOW)
    other.add_latencies({LIST: slow}, now=NOW + 20)

    found = store.latencies(since=NOW)[LIST]
    assert found.count("legacy") == 100
    assert found.quantile("legacy", 0.5) == 0.002
    assert found.quantile("legacy", 0.95) == 0.2
    assert found.quantile("async", 0.5) == math.inf
    assert Latencies().quantile("legacy", 0.5) is None
    series = store.latency_series(LIST, since=NOW)
    assert sorted(series) == [_bucket_start(NOW), _bucket_start(NOW + 20)]
    assert series[_bucket_start(NOW + 20)].count("legacy") == 10
    other.dispose()


def test_latencies_older_than_the_window_limit_go(store: RolloutStore) -> None:
    old = Latencies()
    old.observe("async", 0.01)
    store.add_latencies({LIST: old}, now=NOW)
    store.add_latencies({ONE: old}, now=NOW + WINDOW_LIMIT + 2 * BUCKET_SECONDS)

    assert list(store.latencies(since=0)) == [ONE]


def test_counts_series_is_per_bucket(store: RolloutStore) -> None:
    store.add_counts({LIST: Counts(served_async=1)}, now=NOW)
    store.add_counts({ONE: Counts(served_legacy=2)}, now=NOW + 1)
    store.add_counts({LIST: Counts(served_async=4)}, now=NOW + 30)

    together = store.counts_series(since=NOW)
    assert together == {
        _bucket_start(NOW): Counts(served_async=1, served_legacy=2),
        _bucket_start(NOW + 30): Counts(served_async=4),
    }
    assert store.counts_series(since=NOW, key=ONE) == {_bucket_start(NOW): Counts(served_legacy=2)}


def _bucket_start(epoch: float) -> int:
    return int(epoch // BUCKET_SECONDS * BUCKET_SECONDS)


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")
def test_its_postgresql_connections_carry_a_name_of_their_own(database_url: str) -> None:
    named = sa.make_url(database_url).update_query_dict({"application_name": "shop"})
    for url, expected in ((database_url, "flask2fastapi rollout"), (named, "shop rollout")):
        text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        store = RolloutStore.from_url(text)
        with store.engine.connect() as connection:
            name = connection.scalar(sa.text("SELECT current_setting('application_name')"))
        store.dispose()
        assert name == expected
