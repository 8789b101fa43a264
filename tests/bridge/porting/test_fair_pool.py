"""The async pool serves waiting requests in the order they came, on every driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge._porting.database import DatabaseSettings
from bridge._porting.fair_pool import FairAsyncPool
from tests.conftest import checked_out

pytestmark = [pytest.mark.anyio, pytest.mark.async_side]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the pool's waiters are asyncio futures, as under uvicorn


@pytest.fixture
async def one_connection(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    engine = database_settings.create_async_engine(pool_size=1, max_overflow=0, pool_timeout=5)
    try:
        yield engine
    finally:
        await engine.dispose()


async def take_turn(engine: AsyncEngine, name: str, order: list[str]) -> None:
    async with engine.connect() as connection:
        order.append(name)
        await connection.execute(text("SELECT 1"))


async def until_waiting(engine: AsyncEngine, waiters: int) -> None:
    queue = engine.sync_engine.pool._pool  # type: ignore[attr-defined]
    for _ in range(1000):
        if sum(not waiter.done() for waiter in queue._waiters) == waiters:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{waiters} requests never waited for the pool")


async def test_the_engine_uses_the_fair_pool(one_connection: AsyncEngine) -> None:
    assert isinstance(one_connection.sync_engine.pool, FairAsyncPool)


async def test_a_returned_connection_goes_to_the_oldest_waiter_not_to_a_newcomer(
    one_connection: AsyncEngine,
) -> None:
    order: list[str] = []
    held = await one_connection.connect()
    waiting = [
        asyncio.create_task(take_turn(one_connection, name, order)) for name in ("a", "b", "c")
    ]
    await until_waiting(one_connection, 3)

    # A request that arrives as the connection comes back: its first step is
    # due before the oldest waiter's wake-up, as a new request's is on a busy
    # server.
    newcomer = asyncio.create_task(take_turn(one_connection, "newcomer", order))
    await held.close()
    await asyncio.wait_for(asyncio.gather(*waiting, newcomer), 10)

    assert order == ["a", "b", "c", "newcomer"]
    assert checked_out(one_connection.sync_engine) == 0


async def test_a_waiter_gives_up_after_the_pool_timeout(
    database_settings: DatabaseSettings,
) -> None:
    engine = database_settings.create_async_engine(pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(exc.TimeoutError, match="QueuePool limit"):
                await asyncio.wait_for(engine.connect(), 10)
        async with engine.connect() as again:  # the timed-out waiter took nothing
            assert await again.scalar(text("SELECT 1")) == 1
        assert checked_out(engine.sync_engine) == 0
    finally:
        await engine.dispose()


async def test_a_waiter_cancelled_after_it_was_handed_a_connection_passes_it_on(
    one_connection: AsyncEngine,
) -> None:
    order: list[str] = []
    held = await one_connection.connect()
    await held.execute(text("SELECT 1"))
    cancelled = asyncio.create_task(take_turn(one_connection, "cancelled", order))
    await until_waiting(one_connection, 1)
    after = asyncio.create_task(take_turn(one_connection, "after", order))
    await until_waiting(one_connection, 2)

    await held.close()  # handed to the first waiter, which has not run yet...
    cancelled.cancel()  # ...and is cancelled (the client went away) before it does
    await asyncio.wait_for(after, 10)

    assert cancelled.cancelled()
    assert order == ["after"]
    assert checked_out(one_connection.sync_engine) == 0


async def test_a_cancelled_waiter_leaves_the_line(one_connection: AsyncEngine) -> None:
    order: list[str] = []
    held = await one_connection.connect()
    await held.execute(text("SELECT 1"))
    gone = asyncio.create_task(take_turn(one_connection, "gone", order))
    await until_waiting(one_connection, 1)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    staying = asyncio.create_task(take_turn(one_connection, "staying", order))
    await until_waiting(one_connection, 1)

    await held.close()
    await asyncio.wait_for(staying, 10)

    assert order == ["staying"]
    assert checked_out(one_connection.sync_engine) == 0
