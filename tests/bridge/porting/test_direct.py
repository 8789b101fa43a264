"""Reads on DbConnection's PortConnection give what AsyncConnection gives, on every driver.

On asyncpg they run straight on the driver (a DirectResult); everywhere else,
and for every statement the short way does not take, through SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Enum,
    Executable,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    bindparam,
    delete,
    event,
    exc,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from bridge._porting.asyncdb import ROLLBACK_ONLY, AsyncDatabase
from bridge._porting.database import DatabaseSettings
from bridge._porting.direct import DirectResult, PortAsyncSession, PortConnection
from tests.bridge.apps import TABLE_SUFFIX
from tests.conftest import ON_POSTGRES

pytestmark = [pytest.mark.anyio, pytest.mark.async_side]


class Status(enum.Enum):
    open = "o"
    paid = "p"


metadata = MetaData()
things = Table(
    f"direct_things_{TABLE_SUFFIX}",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), key="label"),  # a key other than its name
    Column("price", Numeric(10, 2)),
    Column("ratio", Float),
    Column("price_float", Numeric(10, 2, asdecimal=False)),
    Column("active", Boolean),
    Column("created_at", DateTime(timezone=True)),
    Column("local_at", DateTime),
    Column("day", Date),
    Column("status", Enum(Status)),
    Column("payload", JSON),
    Column("blob", LargeBinary),
    Column("token", Uuid),
    Column("odd name%", String(10)),  # a bound parameter named after it needs escaping
)

ROWS = [
    {
        "id": 1,
        "label": "pen",
        "price": Decimal("1.50"),
        "ratio": 0.25,
        "price_float": Decimal("2.25"),
        "active": True,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "local_at": datetime(2026, 1, 2, 3, 4, 5),
        "day": date(2026, 1, 2),
        "status": Status.open,
        "payload": {"tags": ["a", "b"], "n": 1},
        "blob": b"\x00\x01",
        "token": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "odd name%": "odd",
    },
    {
        "id": 2,
        "label": "ink",
        "price": Decimal("20.00"),
        "ratio": None,
        "price_float": None,
        "active": False,
        "created_at": None,
        "local_at": None,
        "day": None,
        "status": Status.paid,
        "payload": None,
        "blob": None,
        "token": None,
        "odd name%": None,
    },
]


OTHER = things.alias("other")


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __table__ = things


@pytest.fixture
async def engine(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    engine = database_settings.create_async_engine(pool_size=2)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(things), ROWS)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
        await engine.dispose()


def on_asyncpg(engine: AsyncEngine) -> bool:
    return engine.dialect.driver == "asyncpg"


async def both(
    engine: AsyncEngine, run: Callable[[AsyncConnection], Any]
) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """What *run* returns and its result's type, on a PortConnection and on an AsyncConnection."""
    port = await PortConnection(engine).start()
    try:
        ours = await run(port)
    finally:
        await port.close()
    async with engine.connect() as plain:
        theirs = await run(plain)
    return ours, theirs


def described(result: Any) -> tuple[Any, ...]:
    rows = result.all()
    return (
        list(result.keys()),
        [tuple(row) for row in rows],
        [[type(value) for value in row] for row in rows],
        [dict(row._mapping) for row in rows],
    )


READS: dict[str, Callable[[], tuple[Any, dict[str, Any] | None]]] = {
    "every column": lambda: (select(things).order_by(things.c.id), None),
    "a literal in the statement": lambda: (select(things).where(things.c.id == 2), None),
    "a bound parameter": lambda: (
        select(things.c.label, things.c.price).where(things.c.id == bindparam("wanted")),
        {"wanted": 1},
    ),
    "an enum parameter": lambda: (
        select(things.c.id, things.c.status).where(things.c.status == Status.paid),
        None,
    ),
    "labels and an aggregate": lambda: (
        select(
            things.c.active.label("on"),
            func.count().label("n"),
            func.sum(things.c.price).label("total"),
        )
        .group_by(things.c.active)
        .order_by(things.c.active),
        None,
    ),
    "an escaped parameter name, a limit and an offset": lambda: (
        select(things.c.id)
        .where(things.c["odd name%"] == bindparam("odd name%"))
        .order_by(things.c.id)
        .limit(5)
        .offset(0),
        {"odd name%": "odd"},
    ),
    "text with a parameter": lambda: (
        text(f"SELECT id, name, price FROM {things.name} WHERE id = :id"),
        {"id": 1},
    ),
    "text without rows": lambda: (
        text(f"UPDATE {things.name} SET ratio = ratio WHERE id > :floor"),
        {"floor": 0},
    ),
    "in_()": lambda: (
        select(things.c.id).where(things.c.id.in_([1, 2])).order_by(things.c.id),
        None,
    ),
    "a textual column": lambda: (
        select(text("id")).select_from(things).order_by(things.c.id),
        None,
    ),
    "a literal column holding a comma": lambda: (
        select(things.c.status, literal_column("1, 2")).order_by(things.c.id),
        None,
    ),
    "a label that is another column's qualified name": lambda: (
        select(things.c.label.label("other_name"), OTHER.c.label)
        .select_from(things.join(OTHER, things.c.id == OTHER.c.id + 1))  # "ink" beside "pen"
        .order_by(things.c.id),
        None,
    ),
    "an ORM select": lambda: (select(Thing).order_by(things.c.id), None),
    "text with typed columns": lambda: (
        text(f"SELECT id, status FROM {things.name} ORDER BY id").columns(
            things.c.id, things.c.status
        ),
        None,
    ),
}


@pytest.mark.parametrize("name", READS)
async def test_a_read_gives_the_keys_rows_and_types_sqlalchemy_gives(
    engine: AsyncEngine, name: str
) -> None:
    statement, parameters = READS[name]()

    async def run(connection: AsyncConnection) -> Any:
        result = await connection.execute(statement, parameters)
        if result.returns_rows:
            return result.rowcount, described(result)
        with pytest.raises(exc.ResourceClosedError) as raised:
            result.all()
        return result.rowcount, str(raised.value)

    ours, theirs = await both(engine, run)

    assert ours == theirs


async def test_values_come_through_the_result_processors(engine: AsyncEngine) -> None:
    port = await PortConnection(engine).start()
    try:
        row = (await port.execute(select(things).where(things.c.id == 1))).one()
    finally:
        await port.close()

    assert row.status is Status.open
    assert row.price == Decimal("1.50")
    assert isinstance(row.price_float, float)
    assert row.payload == {"tags": ["a", "b"], "n": 1}
    assert row.token == ROWS[0]["token"]
    assert row._mapping[things.c.label] == "pen"  # by column object
    assert row._mapping["name"] == "pen"  # and by the name the SQL gave it
    assert row.label == "pen"


async def test_scalar_and_scalars_read_the_same(engine: AsyncEngine) -> None:
    async def run(connection: AsyncConnection) -> Any:
        one = await connection.scalar(select(things.c.status).where(things.c.id == 2))
        many = (await connection.scalars(select(things.c.label).order_by(things.c.id))).all()
        return one, many

    ours, theirs = await both(engine, run)

    assert ours == theirs == (Status.paid, ["pen", "ink"])


SHORT_WAY: dict[str, Callable[[], Executable]] = {
    "a Core select": lambda: select(things.c.id),
    "text": lambda: text("SELECT 1"),
}

LONG_WAY: dict[str, Callable[[], Executable]] = {
    "an insert": lambda: insert(things).values(id=9, label="cup"),
    "an update": lambda: update(things).where(things.c.id == 9).values(label="mug"),
    "a delete": lambda: delete(things).where(things.c.id == 9),
    "an ORM select": lambda: select(Thing),
    "in_()": lambda: select(things.c.id).where(things.c.id.in_([1, 2])),
    "execution options": lambda: select(things.c.id).execution_options(max_row_buffer=10),
    "typed text": lambda: text("SELECT 1 AS n").columns(n=Integer),
    "text that writes": lambda: text(f"UPDATE {things.name} SET ratio = ratio WHERE id = 0"),
}


@pytest.mark.parametrize("name", SHORT_WAY)
async def test_core_reads_take_the_short_way_on_asyncpg_only(
    engine: AsyncEngine, name: str
) -> None:
    port = await PortConnection(engine).start()
    try:
        result = await port.execute(SHORT_WAY[name]())
    finally:
        await port.close()

    assert isinstance(result, DirectResult) == on_asyncpg(engine)


@pytest.mark.parametrize("name", LONG_WAY)
async def test_other_statements_go_through_sqlalchemy(engine: AsyncEngine, name: str) -> None:
    port = await PortConnection(engine).start()
    try:
        result = await port.execute(LONG_WAY[name]())
        await port.rollback()
    finally:
        await port.close()

    assert not isinstance(result, DirectResult)


async def test_an_engine_with_listeners_sees_every_statement(engine: AsyncEngine) -> None:
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(*args: Any) -> None:
        seen.append(args[2])

    port = await PortConnection(engine).start()
    try:
        result = await port.execute(select(things.c.id).where(things.c.id == 1))
    finally:
        await port.close()
        event.remove(engine.sync_engine, "before_cursor_execute", record)

    assert not isinstance(result, DirectResult)
    assert len(seen) == 1 and seen[0].startswith("SELECT")


async def test_a_listener_of_other_engine_events_leaves_the_short_way_open(
    engine: AsyncEngine,
) -> None:
    def on_connect(_connection: Any) -> None:
        pass

    event.listen(Engine, "engine_connect", on_connect)  # sets Engine._has_events for good
    port = await PortConnection(engine).start()
    try:
        result = await port.execute(select(things.c.id))
    finally:
        await port.close()
        event.remove(Engine, "engine_connect", on_connect)

    assert isinstance(result, DirectResult) == on_asyncpg(engine)


async def test_a_read_runs_in_the_connection_s_transaction(engine: AsyncEngine) -> None:
    port = await PortConnection(engine).start()
    try:
        await port.execute(insert(things).values(id=7, label="cap"))
        seen = await port.scalar(select(things.c.label).where(things.c.id == 7))
        await port.rollback()
        after = await port.scalar(select(things.c.label).where(things.c.id == 7))
        in_transaction = port.in_transaction()
        await port.commit()
    finally:
        await port.close()

    assert (seen, after) == ("cap", None)  # the read saw the write; the rollback undid both
    assert in_transaction  # the read began the transaction the commit ends


async def test_a_read_first_begins_the_transaction_a_later_write_joins(engine: AsyncEngine) -> None:
    port = await PortConnection(engine).start()
    try:
        await port.execute(select(things.c.id))
        await port.execute(insert(things).values(id=8, label="cap"))
        await port.rollback()
    finally:
        await port.close()

    async with engine.connect() as plain:
        assert await plain.scalar(select(things.c.id).where(things.c.id == 8)) is None


async def test_a_database_error_is_sqlalchemy_s_and_the_connection_rolls_back(
    engine: AsyncEngine,
) -> None:
    missing = text("SELECT no_such_column FROM " + things.name)

    async def run(connection: AsyncConnection) -> Any:
        with pytest.raises(exc.DBAPIError) as raised:
            await connection.execute(missing)
        await connection.rollback()
        after = await connection.scalar(select(func.count()).select_from(things))
        return type(raised.value), raised.value.statement, after

    ours, theirs = await both(engine, run)

    assert ours == theirs
    assert issubclass(ours[0], exc.ProgrammingError | exc.OperationalError)


async def test_a_connection_the_server_ended_is_invalidated(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("needs a server to end the connection")
    port = await PortConnection(engine).start()
    try:
        backend = await port.scalar(select(func.pg_backend_pid()))
        await port.commit()
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(exc.DBAPIError) as raised:
            await port.execute(select(things.c.id))
    finally:
        await port.close()

    assert raised.value.connection_invalidated
    async with engine.connect() as fresh:  # the pool replaced it
        assert await fresh.scalar(select(func.count()).select_from(things)) == 2


@pytest.fixture
async def database(
    engine: AsyncEngine, database_settings: DatabaseSettings
) -> AsyncIterator[AsyncDatabase]:
    database = AsyncDatabase(database_settings, pool_size=2)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


async def test_a_session_read_gives_what_sqlalchemy_s_session_gives(
    database: AsyncDatabase,
) -> None:
    statement = select(things.c.label, things.c.status, things.c.price).order_by(things.c.id)
    pending = text(f"SELECT count(*) AS n FROM {things.name}")

    async def run(session: AsyncSession) -> Any:
        session.add(Thing(id=5, label="pad"))  # pending: Session.execute flushes for ORM only
        rows = described(await session.execute(statement))
        count = await session.scalar(pending)
        by_orm = await session.scalar(select(func.count()).select_from(Thing))
        await session.rollback()
        return rows, count, by_orm

    async with database.transaction() as ours:
        assert isinstance(ours, PortAsyncSession)
        mine = await run(ours)
    async with AsyncSession(database.engine, expire_on_commit=False) as plain:
        theirs = await run(plain)

    assert mine == theirs


async def test_a_session_core_read_takes_the_short_way_on_asyncpg_only(
    database: AsyncDatabase,
) -> None:
    async with database.transaction() as session:
        core = await session.execute(select(things.c.id).where(things.c.id == 1))
        orm = await session.execute(select(Thing).where(things.c.id == 1))

    assert isinstance(core, DirectResult) == on_asyncpg(database.engine)
    assert not isinstance(orm, DirectResult)


async def test_a_session_with_its_own_listener_sees_every_statement(
    database: AsyncDatabase,
) -> None:
    seen: list[Any] = []
    async with database.transaction() as session:
        event.listen(session.sync_session, "do_orm_execute", lambda state: seen.append(state))
        result = await session.execute(text("SELECT 1"))

    assert not isinstance(result, DirectResult)
    assert len(seen) == 1


async def test_a_rolled_back_session_s_read_sees_its_own_write_and_keeps_nothing(
    database: AsyncDatabase,
) -> None:
    token = ROLLBACK_ONLY.set(True)
    try:
        async with database.transaction() as session:
            await session.execute(insert(things).values(id=6, label="cup"))
            await session.commit()  # joins an outer transaction that rolls back
            seen = await session.scalar(select(things.c.label).where(things.c.id == 6))
    finally:
        ROLLBACK_ONLY.reset(token)

    async with database.engine.connect() as plain:
        kept = await plain.scalar(select(things.c.label).where(things.c.id == 6))
    assert (seen, kept) == ("cup", None)


class Strict(TypeDecorator[int]):
    """An integer whose bound value must be one already."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> int:
        if not isinstance(value, int):
            raise ValueError(f"not an integer: {value!r}")
        return value


async def test_a_missing_key_and_a_bad_value_raise_what_sqlalchemy_raises(
    engine: AsyncEngine,
) -> None:
    strict = bindparam("wanted", type_=Strict)

    async def run(connection: AsyncConnection) -> Any:
        row = (await connection.execute(select(things.c.id).where(things.c.id == 1))).one()
        with pytest.raises(exc.NoSuchColumnError) as missing:
            row._mapping["nope"]
        with pytest.raises(exc.StatementError) as bad:
            await connection.execute(
                select(things.c.id).where(things.c.id == strict), {"wanted": "1"}
            )
        return str(missing.value), type(bad.value), str(bad.value.orig)

    ours, theirs = await both(engine, run)

    assert ours == theirs


needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")


@needs_postgres
async def test_columns_renamed_by_another_connection_are_read_by_their_new_names(
    engine: AsyncEngine,
) -> None:
    everything = text(f"SELECT * FROM {things.name} WHERE id = 1")
    async with PortConnection(engine) as port:
        before = list((await port.execute(everything)).keys())
    async with engine.begin() as other:
        await other.execute(text(f"ALTER TABLE {things.name} RENAME COLUMN ratio TO share"))
    await engine.dispose()  # new connections, no plan prepared: the same compiled statement
    async with PortConnection(engine) as port:
        after = list((await port.execute(everything)).keys())

    assert "ratio" in before and "share" in after and "ratio" not in after


@needs_postgres
async def test_a_plan_gone_stale_after_a_type_change_is_prepared_again(
    database_settings: DatabaseSettings,
) -> None:
    engine = database_settings.create_async_engine(pool_size=1, max_overflow=0)
    table = f"direct_stale_{TABLE_SUFFIX}"
    read = text(f"SELECT * FROM {table}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
            await connection.execute(text(f"CREATE TABLE {table} (id int, v int)"))
            await connection.execute(text(f"INSERT INTO {table} VALUES (1, 2)"))
        async with PortConnection(engine) as port:  # the one pooled connection prepares it
            await port.execute(read)
        other = database_settings.create_async_engine()
        async with other.begin() as connection:
            await connection.execute(text(f"ALTER TABLE {table} ALTER COLUMN v TYPE bigint"))
        await other.dispose()
        attempts: list[str] = []
        async with PortConnection(engine) as port:
            for _ in range(3):
                try:
                    attempts.append(repr((await port.execute(read)).all()))
                except exc.DBAPIError as error:
                    attempts.append(type(error).__name__)
                await port.rollback()
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()

    # As through SQLAlchemy: at most the first read fails, and the plan is made anew.
    assert attempts[1:] == ["[(1, 2)]", "[(1, 2)]"]


@needs_postgres
async def test_a_cancelled_read_invalidates_its_connection(engine: AsyncEngine) -> None:
    async def run(connection: AsyncConnection) -> Any:
        backend = await connection.scalar(select(func.pg_backend_pid()))
        await connection.commit()
        reading = asyncio.ensure_future(connection.execute(select(func.pg_sleep(5))))
        await asyncio.sleep(0.3)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        invalidated = connection.invalidated
        await connection.rollback()
        async with engine.connect() as fresh:
            reused = await fresh.scalar(select(func.pg_backend_pid())) == backend
        return invalidated, reused

    ours, theirs = await both(engine, run)

    assert ours == theirs == (True, False)


@needs_postgres
async def test_a_read_after_a_failed_savepoint_waits_for_the_rollback(engine: AsyncEngine) -> None:
    async def run(connection: AsyncConnection) -> Any:
        await connection.execute(select(things.c.id))
        savepoint = await connection.begin_nested()
        with pytest.raises(exc.DBAPIError):
            await connection.execute(text("SELECT 1/0"))
        with pytest.raises(exc.DBAPIError):
            await savepoint.commit()
        with pytest.raises(exc.PendingRollbackError) as refused:
            await connection.execute(select(things.c.id))
        await connection.rollback()
        return str(refused.value)

    ours, theirs = await both(engine, run)

    assert ours == theirs
