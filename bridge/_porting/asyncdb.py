"""The async side's engine and its per-request session.

::

    db = AsyncDatabase(DatabaseSettings.from_env())
    app = FastAPI(lifespan=db.lifespan)
    db.install(app)

    @app.post("/api/orders")
    async def place_order(session: DbSession) -> ...: ...

The engine is created when the app starts and disposed when it stops; starting
it also makes the garbage collector's youngest generation larger
(:func:`spare_young_objects`), which cuts a port's CPU per request. Each
request gets its own ``AsyncSession`` (``expire_on_commit=False``) inside
``session.begin()``. The dependency's exit runs when the route function
returns, **before** the response is sent (``Depends(..., scope="function")``):
by default FastAPI runs it after the response has gone out, so a failing commit
would already have answered 2xx. An exception anywhere rolls back.

A route that needs no ORM takes :data:`DbConnection` instead: a Core
``AsyncConnection`` inside ``engine.begin()``, with the same guarantees, for a
fraction of a session's CPU per request (guide 08); on asyncpg its reads run
straight on the driver (:mod:`bridge._porting.direct`).

Background work must not use the request's session; it opens its own with
:meth:`AsyncDatabase.transaction`.

A lazy load in a port is refused with an error naming the relationship and the
loader option to add (:mod:`bridge._porting.lazyload`).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util import greenlet_spawn

from bridge._exceptions import AsyncDatabaseError
from bridge._porting.database import DatabaseSettings
from bridge._porting.direct import PortAsyncSession, PortConnection
from bridge._porting.lazyload import PortSession

#: Set where the port runs as a shadow of legacy on live traffic: every
#: transaction below rolls back where it would commit, so legacy's write is
#: the only one. A route's own ``session.commit()`` commits nothing either (the
#: session joins an outer transaction that rolls back); a ``commit()`` on a
#: :data:`DbConnection`, or an engine of the route's own, is beyond its reach.
ROLLBACK_ONLY: ContextVar[bool] = ContextVar("flask2fastapi_rollback_only", default=False)


class AsyncDatabase:
    """Owns the async engine for the lifetime of one FastAPI app."""

    def __init__(self, settings: DatabaseSettings | None = None, **engine_options: Any) -> None:
        self.settings = settings
        self.engine_options = engine_options
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise AsyncDatabaseError(
                "the async engine is not started: serve the app with its lifespan "
                "(FastAPI(lifespan=db.lifespan)) or call await db.start()"
            )
        return self._engine

    async def start(self) -> None:
        if self._engine is None:
            spare_young_objects()
            settings = self.settings or DatabaseSettings.from_env()
            self._engine = settings.create_async_engine(**self.engine_options)
            self._sessions = async_sessionmaker(
                self._engine,
                class_=PortAsyncSession,
                expire_on_commit=False,
                sync_session_class=PortSession,
            )

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """A FastAPI ``lifespan``: the engine lives as long as the app."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def _new_session(self, **options: Any) -> AsyncSession:
        if self._sessions is None:
            self.engine  # noqa: B018 - raises the explanatory error
        assert self._sessions is not None
        return self._sessions(**options)

    async def _new_connection(self) -> AsyncConnection:
        """A started Core connection whose reads take the short way (``PortConnection``)."""
        return await PortConnection(self.engine).start()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        if ROLLBACK_ONLY.get():
            async with self._rolled_back() as session:
                yield session
            return
        session = self._new_session()
        async with _Finishing(session.sync_session):
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction: committed on success, rolled back on error."""
        connection = await self._new_connection()
        async with _Finishing(_sync(connection), commit=not ROLLBACK_ONLY.get()):
            yield connection  # which begins its transaction when it first executes

    @asynccontextmanager
    async def _rolled_back(self) -> AsyncIterator[AsyncSession]:
        """A session whose work, commits included, is rolled back at the end."""
        async with self.engine.connect() as connection:
            await connection.begin()
            session = self._new_session(bind=connection, join_transaction_mode="rollback_only")
            try:
                yield session
            finally:
                await session.close()
                await connection.rollback()

    def install(self, app: FastAPI) -> None:
        """Make this database the one :data:`DbSession` gives to *app*'s routes."""
        app.state.database = self


# The collector's youngest generation holds up to 700 new objects by default.
# A port keeps every request in flight alive across its awaits (its frames,
# greenlet, session and result objects), so at that size each collection walks
# the requests in flight and promotes them, and the older generations, up to a
# full collection of every module and class loaded, fill with objects that die
# a moment later. At 10,000 most of them are freed before a collection sees
# them: in a port's /io request, time in the collector fell from about a sixth
# of the CPU to about a hundredth (guide 08).
YOUNG_GENERATION_THRESHOLD = 10_000


def spare_young_objects() -> None:
    """Raise the collector's youngest threshold to :data:`YOUNG_GENERATION_THRESHOLD`.

    Never lowers it: an app that set its own higher threshold keeps it.
    """
    young, *older = gc.get_threshold()
    if 0 < young < YOUNG_GENERATION_THRESHOLD:
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *older)


def installed_database(request: Request) -> AsyncDatabase:
    database = getattr(request.app.state, "database", None)
    if not isinstance(database, AsyncDatabase):
        raise AsyncDatabaseError("no AsyncDatabase on this app: call AsyncDatabase.install(app)")
    return database


# The two dependencies below finish their transaction as the context managers
# above do, rather than entering them: FastAPI already wraps each dependency in
# a generator-based context manager of its own, and a second one per request
# costs CPU, which a port on one core pays in requests per second (guide 08).


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The per-request session of the app's :class:`AsyncDatabase`."""
    database = installed_database(request)
    if ROLLBACK_ONLY.get():
        async with database._rolled_back() as session:
            yield session
        return
    session = database._new_session()
    async with _Finishing(session.sync_session):
        yield session


async def request_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """The per-request Core connection of the app's :class:`AsyncDatabase`."""
    connection = await installed_database(request)._new_connection()
    async with _Finishing(_sync(connection), commit=not ROLLBACK_ONLY.get()):
        yield connection  # which begins its transaction when it first executes


def _sync(connection: AsyncConnection) -> Connection:
    sync_connection = connection.sync_connection
    assert sync_connection is not None  # set once engine.connect() has returned
    return sync_connection


class _Transactional(Protocol):
    """What a sync ``Session`` and a sync ``Connection`` have in common here."""

    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


class _Finishing:
    """Commit and close on success (roll back instead when not *commit*), roll
    back and close on error.

    A class rather than ``@asynccontextmanager``: three calls per request
    instead of a generator and its wrapper. Commit (or roll back) and close run
    in one greenlet, not one each as ``AsyncSession.commit()`` and ``close()``
    would: the same steps on the sync object, one switch into SQLAlchemy's sync
    world instead of two.
    """

    __slots__ = ("_commit", "_transactional")

    def __init__(self, transactional: _Transactional, *, commit: bool = True) -> None:
        self._transactional = transactional
        self._commit = commit

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        finish = _commit_and_close if kind is None and self._commit else _roll_back_and_close
        await greenlet_spawn(finish, self._transactional)


def _commit_and_close(transactional: _Transactional) -> None:
    try:
        transactional.commit()
    except BaseException:
        # Also when COMMIT itself fails: SQLite keeps the transaction (and
        # its write lock) open after a deferred constraint refuses it.
        transactional.rollback()
        raise
    finally:
        transactional.close()


def _roll_back_and_close(transactional: _Transactional) -> None:
    try:
        transactional.rollback()
    finally:
        transactional.close()


DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
"""A route parameter type: the request's session, committed before the response is sent."""

DbConnection = Annotated[AsyncConnection, Depends(request_connection, scope="function")]
"""A route parameter type: the request's Core connection, committed before the response
is sent. For routes that need no ORM; it costs less CPU than :data:`DbSession`."""
