"""One worker's view of the rollout, kept in step with every other worker's.

Each worker process holds a :class:`Rollout`: the routes' effective states
(an operator's override or a demotion in the store wins over the manifest),
the counts and answer times of what it served since it last reported, and the shadows'
mismatches waiting to be stored. Every ``[rollout] poll_interval`` seconds its
loop, in a thread so the event loop never waits on the database:

1. adds this worker's counts and mismatches to the store;
2. reads the store's version and, when it moved, the overrides;
3. judges every route in canary, async or shadow over ``[rollout] window``
   (:mod:`bridge._rollout.fallback`) and demotes the ones over the limits;
4. reloads the manifest file when its modification time or size changed.

So a demotion holds at once in the worker that decided it and in the others
at their next poll, and a manifest change within one interval everywhere. A
store that cannot be reached does not stop serving: the worker logs once per
outage, routes by the last states it read, and keeps its counts (one
:class:`~bridge._rollout.store.Counts` per route) and a few mismatches per
route until the store is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.types import Scope

from bridge._exceptions import ManifestError
from bridge._rollout.bucketing import Bucketer, SessionReader, serves_port
from bridge._rollout.fallback import demotion_reason
from bridge._rollout.metrics import NULL_METRICS, Metrics
from bridge._rollout.store import (
    BUCKET_SECONDS,
    Counts,
    Latencies,
    Mismatch,
    Override,
    RolloutStore,
)
from bridge._serving.manifest import Manifest, RouteKey, RoutePlan, RouteState, load_manifest
from bridge._serving.routing import Target

logger = logging.getLogger("flask2fastapi.rollout")

#: Mismatches a worker holds per route while the store cannot be reached.
PENDING_MISMATCHES = 10

#: Opens the store; called once, in a thread, when the worker starts.
StoreFactory = Callable[[], RolloutStore]


@dataclass
class PollResult:
    """What a poll learnt, handed from the poll's thread to the event loop."""

    reached: bool = True  # the store took the counts and mismatches
    overrides: dict[RouteKey, Override] | None = None
    manifest: Manifest | None = None


class Rollout:
    """The rollout state of one worker: decisions per request, counts, and the poll loop.

    Everything but :meth:`poll_once`'s thread runs on the event loop, so the
    per-request calls take no lock.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        store: StoreFactory | None = None,
        metrics: Metrics = NULL_METRICS,
        read_session: SessionReader | None = None,
        on_manifest: Callable[[Manifest], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.read_session = read_session
        self.on_manifest = on_manifest
        self.store: RolloutStore | None = None
        self._store_factory = store
        self.overrides: dict[RouteKey, Override] = {}
        self._version: int | None = None
        self._deltas: dict[RouteKey, Counts] = {}
        self._latencies: dict[RouteKey, Latencies] = {}
        self._mismatches: dict[RouteKey, list[Mismatch]] = {}
        self._outage = False
        self._manifest_stat = _stat(manifest.path)
        self._task: asyncio.Task[None] | None = None
        self.use_manifest(manifest)

    def use_manifest(self, manifest: Manifest) -> None:
        """Decide by *manifest* from now on (overrides still win)."""
        self.manifest = manifest
        self.options = manifest.rollout
        self.bucketer = Bucketer(self.options.bucket_key, self.read_session)

    # Per request, on the event loop.

    def side(self, target: Target, scope: Scope) -> RouteState:
        """Who serves this request: ``LEGACY``, ``ASYNC``, or ``SHADOW`` (legacy answers,
        the port runs beside it). A canary is settled here, by the user's bucket."""
        state = target.state
        override = self.overrides.get(target.key) if self.overrides and target.key else None
        if override is not None:
            state = override.state if target.ported else RouteState.LEGACY
        if state is RouteState.CANARY:
            percent = self._percent(target, override)
            key = self.bucketer.key_for(scope)
            return RouteState.ASYNC if serves_port(key, percent) else RouteState.LEGACY
        return state

    def plan(self, target: Target) -> RoutePlan:
        """The manifest's plan of the route (shadow sampling and timeout, canary share)."""
        plan = self.manifest.plans.get(target.key) if target.key else None
        return plan if plan is not None else RoutePlan(target.state)

    def _percent(self, target: Target, override: Override | None) -> float:
        if override is not None and override.percent is not None:
            return override.percent
        return self.plan(target).percent

    def served(self, target: Target, side: RouteState, status: int, seconds: float) -> None:
        """Count one answer of *side* (``LEGACY`` or ``ASYNC``) to the route."""
        if self.metrics is not NULL_METRICS:
            self.metrics.request(target.label, side.value, status, seconds)
        if target.key is None:
            return
        latencies = self._latencies.get(target.key)
        if latencies is None:
            latencies = self._latencies[target.key] = Latencies()
        latencies.observe(side.value, seconds)
        counts = self._counts(target.key)
        if side is RouteState.ASYNC:
            counts.served_async += 1
            counts.errors_async += status >= 500
        else:
            counts.served_legacy += 1
            counts.errors_legacy += status >= 500

    def shadowed(self, target: Target, outcome: str) -> None:
        """Count one shadow's outcome; an ``error`` (the port raised) is a difference."""
        self.metrics.shadow(target.label, outcome)
        if target.key is None:
            return
        counts = self._counts(target.key)
        if outcome == "same":
            counts.compared += 1
            counts.same += 1
        elif outcome in ("different", "error"):
            counts.compared += 1
            counts.different += 1
        elif outcome == "timed_out":
            counts.timed_out += 1
        else:
            counts.skipped += 1

    def mismatched(self, mismatch: Mismatch) -> None:
        """Keep a shadow's mismatch for the next poll to store (a few per route)."""
        pending = self._mismatches.setdefault(mismatch.route, [])
        if len(pending) < PENDING_MISMATCHES:
            pending.append(mismatch)

    def pending(self, key: RouteKey) -> Counts:
        """What this worker counted for the route and has not reported to the store yet."""
        return self._deltas.get(key, Counts())

    def pending_mismatches(self, key: RouteKey) -> list[Mismatch]:
        """The route's mismatches this worker has not stored yet."""
        return list(self._mismatches.get(key, ()))

    def _counts(self, key: RouteKey) -> Counts:
        counts = self._deltas.get(key)
        if counts is None:
            counts = self._deltas[key] = Counts()
        return counts

    # The poll loop.

    async def start(self) -> None:
        """Open the store, read it once, and poll every ``poll_interval`` from now on."""
        if self._store_factory is not None:
            try:
                self.store = await anyio.to_thread.run_sync(self._store_factory)
            except Exception as exc:  # a bad URL or a missing driver: serve by the manifest
                logger.error("rollout store not available, serving by the manifest: %s", exc)
        await self.poll_once()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop polling, report the last counts, and close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.poll_once(judge=False, reload=False)
        if self.store is not None:
            await anyio.to_thread.run_sync(self.store.dispose)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval)
            try:
                await self.poll_once()
            except Exception:  # never let the loop die: the next poll tries again
                logger.exception("rollout poll failed")

    async def poll_once(self, *, judge: bool = True, reload: bool = True) -> None:
        """One poll (see the module's docstring); the I/O runs in a thread."""
        self.metrics.tick()
        deltas, self._deltas = self._deltas, {}
        latencies, self._latencies = self._latencies, {}
        mismatches, self._mismatches = self._mismatches, {}
        states = self._states() if judge else {}
        result = await anyio.to_thread.run_sync(
            self._poll_store, deltas, latencies, mismatches, states, reload
        )
        if not result.reached:  # keep what the store did not take
            self._keep(deltas, latencies, mismatches)
        if result.overrides is not None:
            self.overrides = result.overrides
        if result.manifest is not None and self.on_manifest is not None:
            self.on_manifest(result.manifest)

    def _states(self) -> dict[RouteKey, RouteState]:
        """The effective state of every route the manifest or an override names."""
        states: dict[RouteKey, RouteState] = dict(self.manifest.routes)
        states.update({key: override.state for key, override in self.overrides.items()})
        return states

    def _keep(
        self,
        deltas: Mapping[RouteKey, Counts],
        latencies: Mapping[RouteKey, Latencies],
        mismatches: Mapping[RouteKey, list[Mismatch]],
    ) -> None:
        for key, counts in deltas.items():
            self._deltas[key] = self._counts(key) + counts
        for key, timed in latencies.items():
            self._latencies[key] = self._latencies.get(key, Latencies()) + timed
        for pending in mismatches.values():
            for mismatch in pending:
                self.mismatched(mismatch)

    # In the poll's thread: no state of the worker is touched here.

    def _poll_store(
        self,
        deltas: Mapping[RouteKey, Counts],
        latencies: Mapping[RouteKey, Latencies],
        mismatches: Mapping[RouteKey, list[Mismatch]],
        states: Mapping[RouteKey, RouteState],
        reload: bool,
    ) -> PollResult:
        result = PollResult(manifest=self._changed_manifest() if reload else None)
        store = self.store
        if store is None:
            return result
        try:
            self._report(store, deltas, latencies, mismatches)
            self._judge(store, states)
            version = store.version()
            if version != self._version:
                result.overrides = dict(store.overrides())
                self._version = version
        except Exception as exc:
            if not self._outage:
                logger.error(
                    "rollout store not reachable, serving by the last known states: %s", exc
                )
                self._outage = True
            result.reached = False
            return result
        if self._outage:
            logger.warning("rollout store reachable again")
            self._outage = False
        return result

    def _report(
        self,
        store: RolloutStore,
        deltas: Mapping[RouteKey, Counts],
        latencies: Mapping[RouteKey, Latencies],
        mismatches: Mapping[RouteKey, list[Mismatch]],
    ) -> None:
        nonzero = {key: counts for key, counts in deltas.items() if counts}
        if nonzero:
            store.add_counts(nonzero)
        if latencies:
            store.add_latencies(latencies)
        for pending in mismatches.values():
            for mismatch in pending:
                store.add_mismatch(mismatch, keep=self.options.keep_mismatches)

    def _judge(self, store: RolloutStore, states: Mapping[RouteKey, RouteState]) -> None:
        judged = {
            key: state
            for key, state in states.items()
            if state in (RouteState.CANARY, RouteState.ASYNC, RouteState.SHADOW)
        }
        if not judged:
            return
        since = time.time() - self.options.window
        counts = store.counts(since=since)
        for key, state in judged.items():
            reason = demotion_reason(state, counts.get(key, Counts()), self.options)
            if reason is not None:  # rare: worth a second look at the route alone
                reason = self._recount(store, key, state, since)
            if reason is not None and store.demote(key, reason=reason):
                logger.warning("route %s demoted to legacy: %s", key, reason)
                self._version = None  # read the overrides again, demotion included

    def _recount(
        self, store: RolloutStore, key: RouteKey, state: RouteState, since: float
    ) -> str | None:
        """The reason to demote, judged only on what came after the route's last
        operator action: errors from before a clear must not demote it again."""
        acted = [e.at.timestamp() for e in store.events(key, limit=20) if e.actor != "server"]
        if acted and max(acted) > since:
            # From the first bucket wholly after it: counts are kept per bucket.
            since = (math.floor(max(acted) / BUCKET_SECONDS) + 1) * BUCKET_SECONDS
        counts = store.counts(since=since).get(key, Counts()) if since < time.time() else Counts()
        return demotion_reason(state, counts, self.options)

    def _changed_manifest(self) -> Manifest | None:
        path = self.manifest.path
        stat = _stat(path)
        if path is None or stat == self._manifest_stat:
            return None
        self._manifest_stat = stat
        try:
            return load_manifest(path)
        except ManifestError as exc:
            logger.error("manifest not reloaded, still serving by the previous one: %s", exc)
            return None


def _stat(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        result = os.stat(Path(path))
    except OSError:
        return None
    return (result.st_mtime_ns, result.st_size)
