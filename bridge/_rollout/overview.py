"""Where the migration stands, read from the manifest and the shared store.

What the dashboard shows, gathered in one place and free of HTML: one
:class:`RouteRow` per Flask route, the :class:`Overview` above them, and the
time series of one route's charts. Everything comes from the store, so every
worker and machine shows the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from bridge._rollout.commands import effective_state
from bridge._rollout.store import (
    Counts,
    Event,
    Latencies,
    Override,
    RolloutStore,
)
from bridge._serving.manifest import Manifest, RouteKey, RouteState
from bridge._serving.routing import FlaskRoute

HOUR = 3600.0


@dataclass(frozen=True)
class RouteRow:
    route: FlaskRoute
    configured: RouteState
    effective: RouteState
    percent: float | None
    """The canary's share of users, as it applies (the override's, else the manifest's)."""
    hour: Counts
    """The last hour's counts."""
    total: Counts
    latencies: Latencies
    """The last hour's answer times."""
    override: Override | None
    last_demotion: Event | None

    @property
    def key(self) -> RouteKey:
        return self.route.key

    @property
    def endpoint(self) -> str:
        return self.route.endpoint

    @property
    def ported(self) -> bool:
        return self.route.ported

    @property
    def demoted(self) -> bool:
        return self.override is not None and self.override.demoted


@dataclass(frozen=True)
class Overview:
    rows: list[RouteRow]
    at: float

    @property
    def ported(self) -> int:
        """Routes the port serves to everyone."""
        return sum(row.effective is RouteState.ASYNC for row in self.rows)

    @property
    def async_share(self) -> float | None:
        """The async side's share of the last hour's requests."""
        hour = sum((row.hour for row in self.rows), Counts())
        served = hour.served_legacy + hour.served_async
        return hour.served_async / served if served else None

    @property
    def demoted(self) -> int:
        return sum(row.demoted for row in self.rows)


def overview(
    manifest: Manifest,
    routes: Iterable[FlaskRoute],
    store: RolloutStore,
    *,
    now: float | None = None,
) -> Overview:
    """Every route's row, from one read of each of the store's tables."""
    now = time.time() if now is None else now
    overrides = store.overrides()
    hour = store.counts(since=now - HOUR)
    total = store.counts()
    latencies = store.latencies(since=now - HOUR)
    demotions: dict[RouteKey, Event] = {}
    for event in store.events(limit=1000):
        if event.action == "demote":
            demotions.setdefault(event.route, event)  # newest first
    rows = []
    for route in routes:
        key = route.key
        effective, effective_percent = effective_state(key, manifest, overrides.get(key))
        rows.append(
            RouteRow(
                route=route,
                configured=manifest.state(key.method, key.rule),
                effective=effective,
                percent=effective_percent,
                hour=hour.get(key, Counts()),
                total=total.get(key, Counts()),
                latencies=latencies.get(key, Latencies()),
                override=overrides.get(key),
                last_demotion=demotions.get(key),
            )
        )
    return Overview(rows=rows, at=now)


@dataclass(frozen=True)
class Series:
    """One route's last hour, a point per minute: what its charts draw."""

    starts: list[float]
    share_async: list[float | None]
    p50: dict[str, list[float | None]] = field(default_factory=dict)
    p95: dict[str, list[float | None]] = field(default_factory=dict)


MINUTE = 60  # whole buckets: BUCKET_SECONDS divides it


def series(store: RolloutStore, key: RouteKey | None, *, now: float | None = None) -> Series:
    """*key*'s traffic share and latency per minute over the last hour; the share of
    every route together when *key* is ``None`` (then without latencies)."""
    now = time.time() if now is None else now
    since = now - HOUR
    first = int(since // MINUTE) * MINUTE
    starts = [float(first + MINUTE * i) for i in range(int(HOUR // MINUTE) + 1)]
    counts = {start: Counts() for start in starts}
    for start, counted in store.counts_series(since=since, key=key).items():
        minute = float(start // MINUTE * MINUTE)
        if minute in counts:
            counts[minute] = counts[minute] + counted
    shares = [_share(counts[start]) for start in starts]
    result = Series(starts=starts, share_async=shares)
    if key is None:
        return result
    latencies = {start: Latencies() for start in starts}
    for start, timed in store.latency_series(key, since=since).items():
        minute = float(start // MINUTE * MINUTE)
        if minute in latencies:
            latencies[minute] = latencies[minute] + timed
    for side in ("legacy", "async"):
        result.p50[side] = [latencies[s].quantile(side, 0.5) for s in starts]
        result.p95[side] = [latencies[s].quantile(side, 0.95) for s in starts]
    return result


def _share(counts: Counts) -> float | None:
    served = counts.served_legacy + counts.served_async
    return counts.served_async / served if served else None
