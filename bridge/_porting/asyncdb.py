"""The async side's engine and its per-request session.

::

    db = AsyncDatabase(DatabaseSettings.from_env())
    app = FastAPI(lifespan=db.lifespan)
    db.install(app)

    @app.post("/api/orders")
    async def place_order(session: DbSession) -> ...: ...

The engine is created when the app starts and disposed when it stops. Each
request gets its own ``AsyncSession`` (``expire_on_commit=False``) inside
``session.begin()``. The dependency's exit runs when the route function
returns, **before** the response is sent (``Depends(..., scope="function")``):
by default FastAPI runs it after the response has gone out, so a failing commit
would already have answered 2xx. An exception anywhere rolls back.

A route that needs no ORM takes :data:`DbConnection` instead: a Core
``AsyncConnection`` inside ``engine.begin()``, with the same guarantees, for a
fraction of a session's CPU per request (guide 08).

Background work must not use the request's session; it opens its own with
:meth:`AsyncDatabase.transaction`.

A lazy load in a port is refused with an error naming the relationship and the
loader option to add (:mod:`bridge._porting.lazyload`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bridge._exceptions import AsyncDatabaseError
from bridge._porting.database import DatabaseSettings
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
            settings = self.settings or DatabaseSettings.from_env()
            self._engine = settings.create_async_engine(**self.engine_options)
            self._sessions = async_sessionmaker(
                self._engine, expire_on_commit=False, sync_session_class=PortSession
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

    # Both context managers below commit, roll back and close by hand: the
    # same steps as ``async with session, session.begin()``, without the task
    # that AsyncSession.__aexit__ starts to shield its close and the extra
    # greenlet hops: a tenth fewer calls per request.

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        if self._sessions is None:
            self.engine  # noqa: B018 - raises the explanatory error
        assert self._sessions is not None
        if ROLLBACK_ONLY.get():
            async with self._rolled_back() as session:
                yield session
            return
        session = self._sessions()
        try:
            yield session
            await session.commit()
        except BaseException:
            # Also when COMMIT itself fails: SQLite keeps the transaction (and
            # its write lock) open after a deferred constraint refuses it.
            await session.rollback()
            raise
        finally:
            await session.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction: committed on success, rolled back on error."""
        connection = await self.engine.connect()
        try:
            yield connection  # which begins its transaction when it first executes
            await (connection.rollback() if ROLLBACK_ONLY.get() else connection.commit())
        except BaseException:
            await connection.rollback()  # a failed COMMIT too, as above
            raise
        finally:
            await connection.close()

    @asynccontextmanager
    async def _rolled_back(self) -> AsyncIterator[AsyncSession]:
        """A session whose work, commits included, is rolled back at the end."""
        async with self.engine.connect() as connection:
            await connection.begin()
            session = AsyncSession(
                connection, expire_on_commit=False, join_transaction_mode="rollback_only"
            )
            try:
                yield session
            finally:
                await session.close()
                await connection.rollback()

    def install(self, app: FastAPI) -> None:
        """Make this database the one :data:`DbSession` gives to *app*'s routes."""
        app.state.database = self


def installed_database(request: Request) -> AsyncDatabase:
    database = getattr(request.app.state, "database", None)
    if not isinstance(database, AsyncDatabase):
        raise AsyncDatabaseError("no AsyncDatabase on this app: call AsyncDatabase.install(app)")
    return database


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The per-request session of the app's :class:`AsyncDatabase`."""
    async with installed_database(request).transaction() as session:
        yield session


async def request_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """The per-request Core connection of the app's :class:`AsyncDatabase`."""
    async with installed_database(request).connection() as connection:
        yield connection


DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
"""A route parameter type: the request's session, committed before the response is sent."""

DbConnection = Annotated[AsyncConnection, Depends(request_connection, scope="function")]
"""A route parameter type: the request's Core connection, committed before the response
is sent. For routes that need no ORM; it costs less CPU than :data:`DbSession`."""
