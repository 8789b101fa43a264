"""``DATABASE_LAZY_BEGIN``: plain reads before a request's first write skip BEGIN and COMMIT.

On PostgreSQL with both async drivers; on SQLite the option changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge._porting.asyncdb import ROLLBACK_ONLY, AsyncDatabase
from bridge._porting.database import DatabaseSettings
from bridge._porting.direct import PortConnection
from bridge._porting.lazy_begin import may_run_outside
from tests.bridge.apps import Item
from tests.conftest import ON_POSTGRES, checked_out

pytestmark = [pytest.mark.anyio, pytest.mark.async_side]
needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "select pg_sleep(0.01)",
        "  /* a comment */ -- and another\n SELECT items.name FROM items WHERE items.id = $1",
        "SELECT 1;",
        "SELECT nextval('items_id_seq')",
    ],
)
def test_plain_selects_may_run_outside_a_transaction(statement: str) -> None:
    assert may_run_outside(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO items (name) VALUES ($1)",
        "UPDATE items SET name = 'b'",
        "WITH moved AS (DELETE FROM items RETURNING *) SELECT count(*) FROM moved",
        "SELECT * FROM items WHERE id = 1 FOR UPDATE",
        "SELECT * FROM items FOR NO KEY UPDATE SKIP LOCKED",
        "select * from items for share",
        "SELECT pg_advisory_xact_lock(42)",
        "SELECT pg_try_advisory_xact_lock(42)",
        "SELECT pg_advisory_xact_lock_shared(42)",
        "SELECT lo_open(16403, 262144)",
        "SELECT loread(0, 100)",
        "SELECT set_config('app.user_id', '7', true)",
        "SELECT * INTO items_copy FROM items",
        "SELECT 1; DELETE FROM items",
        "SET LOCAL statement_timeout = 100",
        "LOCK TABLE items",
    ],
)
def test_statements_that_need_the_transaction_keep_it(statement: str) -> None:
    assert not may_run_outside(statement)


@pytest.fixture
async def lazy(database_settings: DatabaseSettings, tables: Engine) -> AsyncIterator[AsyncEngine]:
    settings = replace(database_settings, lazy_begin=True)
    engine = settings.create_async_engine(pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


Connect = Callable[[AsyncEngine], AsyncConnection]

# A Core read, which the short way takes (an ORM one, select(Item.name), it leaves).
ITEM_NAME = Item.__table__.c.name


@pytest.fixture(params=[AsyncConnection, PortConnection], ids=["sqlalchemy", "short-way"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """A connection of *engine*: SQLAlchemy's, or DbConnection's, whose reads
    run straight on asyncpg."""
    return request.param  # type: ignore[no-any-return]


async def in_transaction(connection: AsyncConnection) -> bool:
    """Whether the server holds a transaction open on *connection*, as its driver knows."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    if hasattr(driver, "is_in_transaction"):  # asyncpg
        return bool(driver.is_in_transaction())
    from psycopg.pq import TransactionStatus

    return bool(driver.info.transaction_status != TransactionStatus.IDLE)


@needs_postgres
async def test_a_request_that_only_reads_sends_no_begin(
    connect: Connect, lazy: AsyncEngine
) -> None:
    async with connect(lazy) as connection:
        await connection.execute(select(ITEM_NAME))
        await connection.execute(text("SELECT pg_sleep(0)"))
        assert not await in_transaction(connection)
        await connection.commit()
    assert checked_out(lazy.sync_engine) == 0


@needs_postgres
async def test_the_first_write_begins_and_an_error_still_rolls_it_back(
    connect: Connect, lazy: AsyncEngine, tables: Engine
) -> None:
    async with connect(lazy) as connection:
        await connection.execute(select(ITEM_NAME))
        await connection.execute(insert(Item).values(name="rolled back"))
        assert await in_transaction(connection)
        await connection.execute(select(ITEM_NAME))  # a read after a write stays inside
        await connection.rollback()

    async with connect(lazy) as connection:  # the same pooled connection, put back as it was
        await connection.execute(insert(Item).values(name="kept"))
        assert await in_transaction(connection)
        await connection.commit()

    with tables.connect() as check:
        assert check.scalars(select(Item.name)).all() == ["kept"]


@needs_postgres
@pytest.mark.parametrize(
    ("statement", "options"),
    [
        (f"SELECT id FROM {Item.__tablename__} FOR UPDATE", {}),
        ("SELECT set_config('app.user_id', '7', true)", {}),
        ("SELECT pg_advisory_xact_lock(7)", {}),
        ("SELECT 1", {"lazy_begin": False}),
        ("SELECT 1", {"stream_results": True}),
    ],
    ids=["for-update", "set-config-local", "xact-lock", "option", "streamed"],
)
async def test_reads_that_need_the_transaction_begin_it(
    connect: Connect, lazy: AsyncEngine, statement: str, options: dict[str, Any]
) -> None:
    async with connect(lazy) as connection:
        if options.get("stream_results"):
            result = await connection.stream(text(statement))
            await result.close()
        else:
            await connection.execute(text(statement), execution_options=options)
        assert await in_transaction(connection)
        await connection.rollback()


@needs_postgres
async def test_a_transaction_local_setting_is_seen_by_what_follows(
    connect: Connect, lazy: AsyncEngine
) -> None:
    async with connect(lazy) as connection:
        await connection.execute(text("SELECT set_config('app.user_id', '7', true)"))
        seen = await connection.scalar(text("SELECT current_setting('app.user_id', true)"))
        await connection.rollback()
    assert seen == "7"


@needs_postgres
async def test_an_isolation_level_above_read_committed_keeps_every_read_inside(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    settings = replace(database_settings, lazy_begin=True)
    assert await a_read_begins(settings.create_async_engine(isolation_level="REPEATABLE READ"))


@needs_postgres
async def test_a_server_default_above_read_committed_keeps_every_read_inside(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    separator = "&" if "?" in database_settings.url else "?"
    url = (
        f"{database_settings.url}{separator}options=-cdefault_transaction_isolation%3Dserializable"
    )
    assert await a_read_begins(
        replace(database_settings, url=url, lazy_begin=True).create_async_engine()
    )


async def a_read_begins(engine: AsyncEngine) -> bool:
    """Whether a first plain read on *engine* opened a transaction; disposes of *engine*."""
    try:
        async with engine.connect() as connection:
            await connection.execute(select(Item.name))
            began = await in_transaction(connection)
            await connection.rollback()
    finally:
        await engine.dispose()
    return began


@needs_postgres
async def test_an_autocommit_engine_stays_autocommit(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    settings = replace(database_settings, lazy_begin=True)
    engine = settings.create_async_engine(isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        for name in ("first", "second"):  # the second on the connection the first put back
            async with engine.connect() as connection:
                await connection.execute(select(Item.name))
                await connection.execute(insert(Item).values(name=name))
                assert not await in_transaction(connection)
                await connection.rollback()  # nothing to roll back: each statement committed
    finally:
        await engine.dispose()

    with tables.connect() as check:
        assert check.scalars(select(Item.name).order_by(Item.name)).all() == ["first", "second"]


@needs_postgres
async def test_a_connection_given_autocommit_keeps_it_and_the_next_one_gets_a_transaction(
    connect: Connect, lazy: AsyncEngine, tables: Engine
) -> None:
    async with connect(lazy) as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(insert(Item).values(name="autocommitted"))
        assert not await in_transaction(autocommit)
        await autocommit.rollback()
    async with connect(lazy) as connection:  # the same pooled connection, reset
        await connection.execute(insert(Item).values(name="rolled back"))
        assert await in_transaction(connection)
        await connection.rollback()

    with tables.connect() as check:
        assert check.scalars(select(Item.name)).all() == ["autocommitted"]


@needs_postgres
async def test_a_shadow_still_writes_nothing(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(replace(database_settings, lazy_begin=True))
    await db.start()
    token = ROLLBACK_ONLY.set(True)
    try:
        async with db.transaction() as session:
            await session.execute(select(Item.name))
            session.add(Item(name="shadow"))
            await session.commit()  # the port's own commit, inside the shadow's rollback
    finally:
        ROLLBACK_ONLY.reset(token)
        await db.stop()

    with tables.connect() as check:
        assert check.scalars(select(Item.name)).all() == []


async def test_reads_and_writes_commit_as_before_on_every_database(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    # On SQLite the option changes nothing; on PostgreSQL, the session's
    # reads, its write and its commit behave as without it.
    db = AsyncDatabase(replace(database_settings, lazy_begin=True))
    await db.start()
    try:
        async with db.transaction() as session:
            before = (await session.scalars(select(Item.name))).all()
            session.add(Item(name="written"))
        async with db.transaction() as session:  # a Core read: the short way on asyncpg
            after = (await session.scalars(select(ITEM_NAME))).all()
    finally:
        await db.stop()

    assert (before, after) == ([], ["written"])
