"""The rollout's shared state, kept in the application's own database.

Every worker of every machine reads and writes the same few tables, so that a
demotion, an operator's override, the counts and the recorded mismatches are
one truth with no new infrastructure:

``flask2fastapi_rollout_meta``
    one row, ``version``, raised by every change to the overrides: the one
    value a worker polls.
``flask2fastapi_rollout_overrides``
    a route's state as an operator set it (``promote``) or as the server
    demoted it, over the manifest's.
``flask2fastapi_rollout_events``
    every such change: when, what, why and by whom.
``flask2fastapi_rollout_counts``
    requests served and shadows compared, per route, per worker and per
    10-second bucket; a worker folds its buckets older than an hour into one
    row per route, so windows reach an hour back and totals reach forever.
``flask2fastapi_rollout_latencies``
    answer times per route, side and bin, per worker and bucket, for the
    last hour: what the dashboard's percentiles and charts read.
``flask2fastapi_rollout_mismatches``
    the newest shadows that differed, redacted before they get here.

On PostgreSQL its connections are named ``flask2fastapi rollout`` in
``pg_stat_activity`` (or the URL's ``application_name`` followed by
``rollout``). The tables are created on first use. Each worker writes only its own count
rows, so adding counts is an ``UPDATE`` and, the first time, an ``INSERT`` that
no other worker races; the store works the same on PostgreSQL, SQLite and any
backend SQLAlchemy speaks. Its calls block: the server makes them from a thread.
"""

from __future__ import annotations

import bisect
import json
import math
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from bridge._porting.database import DatabaseSettings
from bridge._serving.manifest import RouteKey, RouteState

BUCKET_SECONDS = 10
"""The resolution of windows: counts are kept per 10 seconds."""

WINDOW_LIMIT = 3600
"""How far back a window reaches; older buckets are folded into totals."""

_TOTAL = 0  # the bucket that folded counts go to

metadata = sa.MetaData()

meta_table = sa.Table(
    "flask2fastapi_rollout_meta",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

overrides_table = sa.Table(
    "flask2fastapi_rollout_overrides",
    metadata,
    sa.Column("route", sa.String(500), primary_key=True),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("percent", sa.Float),
    sa.Column("demoted", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

events_table = sa.Table(
    "flask2fastapi_rollout_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("route", sa.String(500), nullable=False, index=True),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("state", sa.String(10)),
    sa.Column("percent", sa.Float),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

_COUNT_NAMES = (
    "served_legacy",
    "served_async",
    "errors_legacy",
    "errors_async",
    "compared",
    "same",
    "different",
    "skipped",
    "timed_out",
)

counts_table = sa.Table(
    "flask2fastapi_rollout_counts",
    metadata,
    sa.Column("route", sa.String(500), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("worker", sa.String(40), primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False, default=0) for name in _COUNT_NAMES),
)

LATENCY_BOUNDS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    math.inf,
)
"""Upper bounds, in seconds, of the latency bins: a quantile is read as its bin's bound."""

SIDES = ("legacy", "async")

latencies_table = sa.Table(
    "flask2fastapi_rollout_latencies",
    metadata,
    sa.Column("route", sa.String(500), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("worker", sa.String(40), primary_key=True),
    sa.Column("side", sa.String(10), primary_key=True),
    sa.Column("bin", sa.SmallInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

mismatches_table = sa.Table(
    "flask2fastapi_rollout_mismatches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("route", sa.String(500), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("legacy", sa.Text, nullable=False),
    sa.Column("port", sa.Text, nullable=False),
    sa.Column("diff", sa.Text, nullable=False),
)


@dataclass
class Counts:
    """What one route saw: requests by side, 5xx answers by side, shadow outcomes."""

    served_legacy: int = 0
    served_async: int = 0
    errors_legacy: int = 0
    errors_async: int = 0
    compared: int = 0
    same: int = 0
    different: int = 0
    skipped: int = 0
    timed_out: int = 0

    def __add__(self, other: Counts) -> Counts:
        return _counts(a + b for a, b in zip(self._values(), other._values(), strict=True))

    def __bool__(self) -> bool:
        return any(self._values())

    def _values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in _COUNT_NAMES)

    @property
    def match_rate(self) -> float | None:
        """The share of compared shadows that matched; ``None`` before any."""
        return self.same / self.compared if self.compared else None

    def error_rate(self, side: str) -> float | None:
        """The share of *side*'s answers (``"legacy"`` or ``"async"``) that were 5xx."""
        served = getattr(self, f"served_{side}")
        return getattr(self, f"errors_{side}") / served if served else None


@dataclass
class Latencies:
    """How long one route's answers took, per side: counts per bin of :data:`LATENCY_BOUNDS`."""

    bins: dict[str, list[int]] = field(
        default_factory=lambda: {side: [0] * len(LATENCY_BOUNDS) for side in SIDES}
    )

    def observe(self, side: str, seconds: float) -> None:
        self.bins[side][bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def __add__(self, other: Latencies) -> Latencies:
        return Latencies(
            {
                side: [a + b for a, b in zip(self.bins[side], other.bins[side], strict=True)]
                for side in SIDES
            }
        )

    def __bool__(self) -> bool:
        return any(any(counts) for counts in self.bins.values())

    def count(self, side: str) -> int:
        return sum(self.bins[side])

    def quantile(self, side: str, q: float) -> float | None:
        """The upper bound, in seconds, of the bin holding *side*'s *q* quantile;
        ``None`` before any answer, ``inf`` beyond the last finite bound."""
        counts = self.bins[side]
        total = sum(counts)
        if not total:
            return None
        rank = q * total
        seen = 0
        for bound, count in zip(LATENCY_BOUNDS, counts, strict=True):
            seen += count
            if seen >= rank and count:
                return bound
        return LATENCY_BOUNDS[-1]


@dataclass(frozen=True)
class Override:
    """A route's state over the manifest's: set by an operator, or a demotion."""

    state: RouteState
    percent: float | None
    demoted: bool
    reason: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class Mismatch:
    """A shadow that differed: the request, both answers and the difference, redacted.

    ``request`` holds ``method``, ``path``, ``query``, ``headers`` (a list of
    name and value pairs) and ``body`` (text); ``legacy`` and ``port`` hold
    ``status``, ``headers`` and ``body``.
    """

    route: RouteKey
    at: datetime
    request: dict[str, Any]
    legacy: dict[str, Any]
    port: dict[str, Any]
    diff: str
    id: int | None = None


@dataclass(frozen=True)
class Event:
    """A change to a route's override, as the events table keeps it."""

    id: int
    at: datetime
    route: RouteKey
    action: str  # "set", "demote" or "clear"
    state: str | None
    percent: float | None
    reason: str
    actor: str


class RolloutStore:
    """The rollout tables of one database; *worker* names this process's count rows."""

    def __init__(self, engine: sa.Engine, *, worker: str | None = None) -> None:
        self.engine = engine
        self.worker = worker or uuid.uuid4().hex
        self._ready = False
        self._folded_before = 0  # this worker's buckets before this are folded

    @classmethod
    def from_url(cls, url: str, *, worker: str | None = None) -> RolloutStore:
        """A store on the database at *url*; an async driver's URL is read as its sync twin.

        SQLite and PostgreSQL URLs are read as the rest of the toolkit reads them
        (``sqlite:///file``, ``postgresql://``, with or without a driver); any
        other URL goes to SQLAlchemy as it is.
        """
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
        sync_url = DatabaseSettings(url).sync_url if backend in ("sqlite", "postgresql") else url
        options: dict[str, Any] = {}
        if backend == "postgresql":
            # Its own name in pg_stat_activity, apart from the app's connections.
            name = parsed.query.get("application_name")
            label = f"{name} rollout" if isinstance(name, str) else "flask2fastapi rollout"
            options["connect_args"] = {"application_name": label}
        # One connection kept per worker: the poll uses one at a time; the
        # dashboard's reads borrow up to two more and close them. Pre-ping: the
        # store is polled in the background, where a ping's round trip costs
        # nothing and a stale connection after a database restart would cost a poll.
        engine = sa.create_engine(
            sync_url, pool_size=1, max_overflow=2, pool_pre_ping=True, **options
        )
        return cls(engine, worker=worker)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- overrides --------------------------------------------------------------------

    def version(self) -> int:
        """A number raised by every change of an override: poll it, then read them."""
        with self._connect() as connection:
            value = connection.scalar(
                sa.select(meta_table.c.value).where(meta_table.c.name == "version")
            )
        return int(value or 0)

    def overrides(self) -> dict[RouteKey, Override]:
        with self._connect() as connection:
            rows = connection.execute(sa.select(overrides_table)).all()
        return {
            RouteKey.parse(row.route): Override(
                state=RouteState(row.state),
                percent=row.percent,
                demoted=row.demoted,
                reason=row.reason,
                actor=row.actor,
                at=_aware(row.at),
            )
            for row in rows
        }

    def set_state(
        self,
        key: RouteKey,
        state: RouteState,
        *,
        percent: float | None = None,
        actor: str,
        reason: str = "",
    ) -> None:
        """Put *key* in *state* over the manifest's, for every worker; drops a demotion."""
        with self._begin() as connection:
            self._write_override(connection, key, state, percent, False, reason, actor, "set")

    def demote(self, key: RouteKey, *, reason: str, actor: str = "server") -> bool:
        """Send *key* back to legacy until :meth:`clear`; ``False`` when it already was."""
        with self._begin() as connection:
            demoted = connection.scalar(
                sa.select(overrides_table.c.demoted).where(overrides_table.c.route == str(key))
            )
            if demoted:
                return False
            self._write_override(
                connection, key, RouteState.LEGACY, None, True, reason, actor, "demote"
            )
        return True

    def clear(self, key: RouteKey, *, actor: str, reason: str = "") -> bool:
        """Drop *key*'s override or demotion: the manifest's state applies again.

        ``False`` when there was none.
        """
        with self._begin() as connection:
            deleted = connection.execute(
                sa.delete(overrides_table).where(overrides_table.c.route == str(key))
            ).rowcount
            if not deleted:
                return False
            self._event(connection, key, "clear", None, None, reason, actor)
            self._bump_version(connection)
        return True

    def events(self, key: RouteKey | None = None, *, limit: int = 100) -> list[Event]:
        """The newest changes first, of every route or of *key*."""
        query = sa.select(events_table).order_by(events_table.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(events_table.c.route == str(key))
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return [
            Event(
                id=row.id,
                at=_aware(row.at),
                route=RouteKey.parse(row.route),
                action=row.action,
                state=row.state,
                percent=row.percent,
                reason=row.reason,
                actor=row.actor,
            )
            for row in rows
        ]

    def _write_override(
        self,
        connection: sa.Connection,
        key: RouteKey,
        state: RouteState,
        percent: float | None,
        demoted: bool,
        reason: str,
        actor: str,
        action: str,
    ) -> None:
        values = {
            "state": state.value,
            "percent": percent,
            "demoted": demoted,
            "reason": reason,
            "actor": actor,
            "at": _now(),
        }
        table = overrides_table
        updated = connection.execute(
            sa.update(table).where(table.c.route == str(key)).values(values)
        ).rowcount
        if not updated:
            connection.execute(sa.insert(table).values(route=str(key), **values))
        self._event(connection, key, action, state.value, percent, reason, actor)
        self._bump_version(connection)

    @staticmethod
    def _event(
        connection: sa.Connection,
        key: RouteKey,
        action: str,
        state: str | None,
        percent: float | None,
        reason: str,
        actor: str,
    ) -> None:
        connection.execute(
            sa.insert(events_table).values(
                at=_now(),
                route=str(key),
                action=action,
                state=state,
                percent=percent,
                reason=reason,
                actor=actor,
            )
        )

    @staticmethod
    def _bump_version(connection: sa.Connection) -> None:
        # The row exists: _create writes it with the tables.
        connection.execute(
            sa.update(meta_table)
            .where(meta_table.c.name == "version")
            .values(value=meta_table.c.value + 1)
        )

    # -- counts -----------------------------------------------------------------------

    def add_counts(self, deltas: Mapping[RouteKey, Counts], *, now: float | None = None) -> None:
        """Add this worker's counts since its last call, in the bucket of *now*."""
        now = time.time() if now is None else now
        bucket = _bucket(now)
        with self._begin() as connection:
            for key, counts in deltas.items():
                if counts:
                    self._add_row(connection, str(key), bucket, counts)
            self._fold(connection, now)

    def counts(self, *, since: float | None = None) -> dict[RouteKey, Counts]:
        """Every worker's counts per route: of all time, or from *since* (epoch seconds).

        A window reaches at most :data:`WINDOW_LIMIT` seconds back, to a bucket's
        resolution (:data:`BUCKET_SECONDS`).
        """
        table = counts_table
        query = sa.select(
            table.c.route, *(sa.func.sum(table.c[name]) for name in _COUNT_NAMES)
        ).group_by(table.c.route)
        if since is not None:
            query = query.where(table.c.bucket >= _bucket(since))
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return {RouteKey.parse(route): _counts(sums) for route, *sums in rows}

    def _add_row(self, connection: sa.Connection, route: str, bucket: int, counts: Counts) -> None:
        table = counts_table
        where = (table.c.route == route) & (table.c.bucket == bucket)
        where &= table.c.worker == self.worker
        increments = {
            name: table.c[name] + getattr(counts, name)
            for name in _COUNT_NAMES
            if getattr(counts, name)
        }
        if not connection.execute(sa.update(table).where(where).values(increments)).rowcount:
            connection.execute(
                sa.insert(table).values(
                    route=route,
                    bucket=bucket,
                    worker=self.worker,
                    **{name: getattr(counts, name) for name in _COUNT_NAMES},
                )
            )

    def _fold(self, connection: sa.Connection, now: float) -> None:
        """Fold this worker's buckets older than the window limit into its total rows."""
        before = _bucket(now - WINDOW_LIMIT)
        if before <= self._folded_before:
            return
        table = counts_table
        old = (table.c.worker == self.worker) & (table.c.bucket > _TOTAL)
        old &= table.c.bucket < before
        sums = connection.execute(
            sa.select(table.c.route, *(sa.func.sum(table.c[name]) for name in _COUNT_NAMES))
            .where(old)
            .group_by(table.c.route)
        ).all()
        for route, *values in sums:
            self._add_row(connection, route, _TOTAL, _counts(values))
        connection.execute(sa.delete(table).where(old))
        self._folded_before = before

    def counts_series(self, *, since: float, key: RouteKey | None = None) -> dict[int, Counts]:
        """Counts per bucket from *since*, keyed by the bucket's start (epoch seconds),
        of *key* or of every route together."""
        table = counts_table
        query = (
            sa.select(table.c.bucket, *(sa.func.sum(table.c[name]) for name in _COUNT_NAMES))
            .where(table.c.bucket >= _bucket(since))
            .group_by(table.c.bucket)
        )
        if key is not None:
            query = query.where(table.c.route == str(key))
        with self._connect() as connection:
            rows = connection.execute(query).all()
        return {bucket * BUCKET_SECONDS: _counts(sums) for bucket, *sums in rows}

    # -- latencies --------------------------------------------------------------------

    def add_latencies(
        self, deltas: Mapping[RouteKey, Latencies], *, now: float | None = None
    ) -> None:
        """Add this worker's latencies since its last call, in the bucket of *now*;
        its latencies older than :data:`WINDOW_LIMIT` go."""
        now = time.time() if now is None else now
        bucket = _bucket(now)
        table = latencies_table
        with self._begin() as connection:
            for key, latencies in deltas.items():
                for side, counts in latencies.bins.items():
                    for index, count in enumerate(counts):
                        if not count:
                            continue
                        where = (table.c.route == str(key)) & (table.c.bucket == bucket)
                        where &= (table.c.worker == self.worker) & (table.c.side == side)
                        where &= table.c.bin == index
                        update = sa.update(table).where(where).values(count=table.c.count + count)
                        if not connection.execute(update).rowcount:
                            connection.execute(
                                sa.insert(table).values(
                                    route=str(key),
                                    bucket=bucket,
                                    worker=self.worker,
                                    side=side,
                                    bin=index,
                                    count=count,
                                )
                            )
            old = (table.c.worker == self.worker) & (table.c.bucket < _bucket(now - WINDOW_LIMIT))
            connection.execute(sa.delete(table).where(old))

    def latencies(self, *, since: float) -> dict[RouteKey, Latencies]:
        """Every worker's latencies per route from *since* (at most an hour back)."""
        table = latencies_table
        query = (
            sa.select(table.c.route, table.c.side, table.c.bin, sa.func.sum(table.c.count))
            .where(table.c.bucket >= _bucket(since))
            .group_by(table.c.route, table.c.side, table.c.bin)
        )
        with self._connect() as connection:
            rows = connection.execute(query).all()
        found: dict[RouteKey, Latencies] = {}
        for route, side, index, count in rows:
            found.setdefault(RouteKey.parse(route), Latencies()).bins[side][index] += int(count)
        return found

    def latency_series(self, key: RouteKey, *, since: float) -> dict[int, Latencies]:
        """*key*'s latencies per bucket from *since*, keyed by the bucket's start."""
        table = latencies_table
        query = (
            sa.select(table.c.bucket, table.c.side, table.c.bin, sa.func.sum(table.c.count))
            .where((table.c.bucket >= _bucket(since)) & (table.c.route == str(key)))
            .group_by(table.c.bucket, table.c.side, table.c.bin)
        )
        with self._connect() as connection:
            rows = connection.execute(query).all()
        series: dict[int, Latencies] = {}
        for bucket, side, index, count in rows:
            series.setdefault(bucket * BUCKET_SECONDS, Latencies()).bins[side][index] += int(count)
        return series

    # -- mismatches -------------------------------------------------------------------

    def add_mismatch(self, mismatch: Mismatch, *, keep: int = 100) -> None:
        """Record a shadow that differed; the route keeps its newest *keep*."""
        table = mismatches_table
        route = str(mismatch.route)
        with self._begin() as connection:
            connection.execute(
                sa.insert(table).values(
                    route=route,
                    at=mismatch.at,
                    request=json.dumps(mismatch.request),
                    legacy=json.dumps(mismatch.legacy),
                    port=json.dumps(mismatch.port),
                    diff=mismatch.diff,
                )
            )
            oldest_kept = connection.scalar(
                sa.select(table.c.id)
                .where(table.c.route == route)
                .order_by(table.c.id.desc())
                .offset(keep - 1)
                .limit(1)
            )
            if oldest_kept is not None:
                connection.execute(
                    sa.delete(table).where((table.c.route == route) & (table.c.id < oldest_kept))
                )

    def mismatches(self, key: RouteKey | None = None, *, limit: int = 50) -> list[Mismatch]:
        """The newest recorded mismatches first, of every route or of *key*."""
        table = mismatches_table
        query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(table.c.route == str(key))
        with self._connect() as connection:
            return [_mismatch(row) for row in connection.execute(query)]

    def mismatch(self, id: int) -> Mismatch | None:
        table = mismatches_table
        with self._connect() as connection:
            row = connection.execute(sa.select(table).where(table.c.id == id)).first()
        return None if row is None else _mismatch(row)

    # -- connections ------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        self._create()
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        self._create()
        with self.engine.begin() as connection:
            yield connection

    def _create(self) -> None:
        """Create the tables and the version row unless they exist."""
        if self._ready:
            return
        # A CREATE that fails because another worker made the table since the check
        # means that worker got further: with one more try than tables, every
        # table and the version row exist by the last one.
        attempts = len(metadata.tables) + 1
        for attempt in range(attempts):
            try:
                with self.engine.begin() as connection:
                    metadata.create_all(connection, checkfirst=True)
                    if connection.scalar(sa.select(sa.func.count()).select_from(meta_table)):
                        break
                    connection.execute(sa.insert(meta_table).values(name="version", value=0))
                break
            except (IntegrityError, DBAPIError):
                if attempt == attempts - 1:
                    raise
        self._ready = True


def _counts(values: Iterable[Any]) -> Counts:
    return Counts(**{name: int(value) for name, value in zip(_COUNT_NAMES, values, strict=True)})


def _bucket(epoch: float) -> int:
    return math.floor(epoch / BUCKET_SECONDS)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite gives back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _mismatch(row: sa.Row[Any]) -> Mismatch:
    return Mismatch(
        route=RouteKey.parse(row.route),
        at=_aware(row.at),
        request=json.loads(row.request),
        legacy=json.loads(row.legacy),
        port=json.loads(row.port),
        diff=row.diff,
        id=row.id,
    )
