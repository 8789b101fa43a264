"""One suite for :mod:`bridge._porting.repository`, run by both runners on every database.

The ``run`` fixture runs each test once with ``run_sync`` and once with
``run_async``; ``database_settings`` runs it on SQLite, or on PostgreSQL with
asyncpg and with psycopg.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any, assert_type

import anyio
import pytest
from sqlalchemy import (
    CursorResult,
    Engine,
    Result,
    ScalarResult,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bridge import execute, scalar, scalars
from bridge._porting.repository import Add, Delete, Flush, Operation, run_async, run_sync
from tests.bridge.apps import Item, insert_items
from tests.bridge.conftest import FlaskDB, Runner

pytestmark = pytest.mark.anyio


def names() -> Operation[list[str]]:
    result = yield select(Item.name).order_by(Item.name)
    return list(result.scalars())


async def test_select_receives_the_result(run: Runner, tables: Engine) -> None:
    insert_items(tables, "b", "a")

    assert await run(names()) == ["a", "b"]


async def test_text_and_core_statements_run(run: Runner, tables: Engine) -> None:
    def rename() -> Operation[tuple[int, list[str]]]:
        yield insert(Item).values(name="c")
        changed = yield update(Item).where(Item.name == "a").values(name="z")
        one = yield text("SELECT 1")
        assert one.scalar() == 1
        return changed.rowcount, (yield from names())

    insert_items(tables, "a")

    assert await run(rename()) == (1, ["c", "z"])


async def test_add_and_flush_assign_ids(run: Runner, tables: Engine) -> None:
    def create() -> Operation[tuple[list[int | None], list[int | None], int]]:
        items = [Item(name="x"), Item(name="y")]
        yield Add(*items)
        before: list[int | None] = [item.id for item in items]
        yield Flush()
        count: int = (yield select(func.count()).select_from(Item)).scalar_one()
        return before, [item.id for item in items], count

    before, after, count = await run(create())

    assert before == [None, None]
    assert all(isinstance(id_, int) for id_ in after)
    assert len(set(after)) == 2
    assert count == 2


async def test_delete_marks_objects_deleted(run: Runner, tables: Engine) -> None:
    def remove(name: str) -> Operation[list[str]]:
        item = (yield select(Item).where(Item.name == name)).scalar_one()
        yield Delete(item)
        yield Flush()
        return (yield from names())

    insert_items(tables, "keep", "drop")

    assert await run(remove("drop")) == ["keep"]


async def test_steps_receive_none(run: Runner, tables: Engine) -> None:
    received: list[Any] = []

    def steps() -> Operation[None]:
        item = Item(name="n")
        received.append((yield Add(item)))
        received.append((yield Flush()))
        received.append((yield Delete(item)))
        received.append((yield Flush()))

    await run(steps())

    assert received == [None, None, None, None]


async def test_database_error_is_thrown_into_the_operation_which_can_catch_it(
    run: Runner, tables: Engine
) -> None:
    def create(name: str) -> Operation[str]:
        yield Add(Item(name=name))
        try:
            yield Flush()
        except IntegrityError:
            return "conflict"
        return "created"

    insert_items(tables, "taken")

    assert await run(create("taken")) == "conflict"
    assert await run(create("free")) == "created"


async def test_database_error_of_a_statement_is_thrown_at_its_yield(
    run: Runner, tables: Engine
) -> None:
    def create(name: str) -> Operation[str]:
        try:
            yield insert(Item).values(name=name)
        except IntegrityError:
            return "conflict"
        return "created"

    insert_items(tables, "taken")

    assert await run(create("taken")) == "conflict"
    assert await run(create("free")) == "created"


async def test_uncaught_database_error_propagates(run: Runner, tables: Engine) -> None:
    def create() -> Operation[None]:
        yield Add(Item(name="dup"), Item(name="dup"))
        yield Flush()

    with pytest.raises(IntegrityError):
        await run(create())


async def test_yielding_a_non_statement_is_a_type_error(run: Runner, tables: Engine) -> None:
    def wrong() -> Generator[Any, Any, None]:
        yield "SELECT 1"

    with pytest.raises(TypeError, match="yield a SQLAlchemy statement, Add, Delete or Flush"):
        await run(wrong())


async def test_type_error_is_thrown_into_the_operation(run: Runner, tables: Engine) -> None:
    def recovers() -> Generator[Any, Any, str]:
        try:
            yield 42
        except TypeError:
            return "recovered"
        return "not reached"

    assert await run(recovers()) == "recovered"


async def test_operation_result_is_returned_without_any_step(run: Runner, tables: Engine) -> None:
    def nothing() -> Operation[int]:
        return 7
        yield  # pragma: no cover - makes this a generator

    assert await run(nothing()) == 7


async def test_error_raised_by_the_operation_itself_propagates(run: Runner, tables: Engine) -> None:
    def fails() -> Operation[None]:
        yield select(Item)
        raise LookupError("no such product")

    with pytest.raises(LookupError, match="no such product"):
        await run(fails())


class Interrupted(BaseException):
    """Stands for a KeyboardInterrupt or a cancellation in the middle of a step."""


class InterruptedSession:
    """A session whose every execute is interrupted."""

    def execute(self, statement: Any) -> Any:
        raise Interrupted


class InterruptedAsyncSession:
    async def execute(self, statement: Any) -> Any:
        raise Interrupted


def tracked(events: list[str]) -> Operation[None]:
    try:
        yield select(Item)
    except Interrupted:  # pragma: no cover - must not be thrown in
        events.append("thrown in")
        raise
    finally:
        events.append("closed")


def test_run_sync_closes_the_operation_when_interrupted() -> None:
    events: list[str] = []
    operation = tracked(events)

    with pytest.raises(Interrupted):
        run_sync(InterruptedSession(), operation)  # type: ignore[arg-type]

    assert events == ["closed"]
    assert inspect.getgeneratorstate(operation) == "GEN_CLOSED"


async def test_run_async_closes_the_operation_when_interrupted() -> None:
    events: list[str] = []
    operation = tracked(events)

    with pytest.raises(Interrupted):
        await run_async(InterruptedAsyncSession(), operation)  # type: ignore[arg-type]

    assert events == ["closed"]
    assert inspect.getgeneratorstate(operation) == "GEN_CLOSED"


async def test_run_async_closes_the_operation_when_cancelled() -> None:
    events: list[str] = []
    operation = tracked(events)

    class HangingSession:
        async def execute(self, statement: Any) -> Any:
            await anyio.sleep_forever()

    with anyio.move_on_after(0.05):
        await run_async(HangingSession(), operation)  # type: ignore[arg-type]

    assert events == ["closed"]
    assert inspect.getgeneratorstate(operation) == "GEN_CLOSED"


async def test_both_runners_leave_the_same_rows(tables: Engine, async_engine: Any) -> None:
    def replace(old: str, new: str) -> Operation[None]:
        yield delete(Item).where(Item.name == old)
        yield Add(Item(name=new))
        yield Flush()

    insert_items(tables, "a", "b")
    with Session(tables) as session, session.begin():
        run_sync(session, replace("a", "c"))
    async with AsyncSession(async_engine) as async_session, async_session.begin():
        await run_async(async_session, replace("b", "d"))

    with Session(tables) as session:
        assert run_sync(session, names()) == ["c", "d"]


def add_item(name: str) -> Operation[None]:
    yield Add(Item(name=name))
    yield Flush()


def test_run_sync_accepts_flask_sqlalchemys_scoped_session(flask_db: FlaskDB) -> None:
    app, db = flask_db

    with app.app_context():
        run_sync(db.session, add_item("from-flask"))
        db.session.commit()
        assert run_sync(db.session, names()) == ["from-flask"]


# The typed sub-operations. Each assert_type is checked by mypy, which runs over
# the tests: it fails if the helper gave Any, as a bare ``yield`` does.


async def test_execute_gives_the_result_typed_by_the_columns(run: Runner, tables: Engine) -> None:
    def rows() -> Operation[list[tuple[str, int]]]:
        result = yield from execute(select(Item.name, Item.id).order_by(Item.name))
        assert_type(result, Result[str, int])
        return [(name, id_) for name, id_ in result]

    insert_items(tables, "b", "a")

    [(first, first_id), (second, _)] = await run(rows())
    assert (first, second) == ("a", "b")
    assert isinstance(first_id, int)


async def test_execute_of_an_entity_gives_its_objects(run: Runner, tables: Engine) -> None:
    def by_name(name: str) -> Operation[Item | None]:
        result = yield from execute(select(Item).where(Item.name == name))
        return result.scalar_one_or_none()

    insert_items(tables, "a")

    found = await run(by_name("a"))
    assert isinstance(found, Item) and found.name == "a"
    assert await run(by_name("zzz")) is None


async def test_dml_without_returning_gives_its_rowcount(run: Runner, tables: Engine) -> None:
    def rename() -> Operation[tuple[bool, int]]:
        result = yield from execute(
            update(Item).where(Item.name != "c").values(name=Item.name + "!")
        )
        assert_type(result.rowcount, int)
        return isinstance(result, CursorResult), result.rowcount

    insert_items(tables, "a", "b", "c")

    assert await run(rename()) == (True, 2)


async def test_dml_with_returning_gives_the_returned_rows(run: Runner, tables: Engine) -> None:
    def add(name: str) -> Operation[int]:
        result = yield from execute(insert(Item).values(name=name).returning(Item.id))
        assert_type(result, Result[int])
        return result.scalar_one()

    assert isinstance(await run(add("a")), int)


async def test_scalar_gives_the_first_value_or_none(run: Runner, tables: Engine) -> None:
    def id_of(name: str) -> Operation[int | None]:
        item_id = yield from scalar(select(Item.id).where(Item.name == name))
        assert_type(item_id, int | None)
        return item_id

    def count() -> Operation[int | None]:
        return (yield from scalar(select(func.count()).select_from(Item)))

    insert_items(tables, "a", "b")

    assert isinstance(await run(id_of("a")), int)
    assert await run(id_of("zzz")) is None
    assert await run(count()) == 2


async def test_scalars_gives_the_first_column_of_every_row(run: Runner, tables: Engine) -> None:
    def all_items() -> Operation[list[str]]:
        items = yield from scalars(select(Item).order_by(Item.name))
        assert_type(items, ScalarResult[Item])
        return [item.name for item in items.all()]

    insert_items(tables, "b", "a")

    assert await run(all_items()) == ["a", "b"]


async def test_an_error_of_a_typed_step_is_thrown_where_it_was_run(
    run: Runner, tables: Engine
) -> None:
    def add_twice(name: str) -> Operation[str]:
        yield from execute(insert(Item).values(name=name))
        try:
            yield from execute(insert(Item).values(name=name))
        except IntegrityError:
            return "caught at the second insert"
        return "not raised"  # pragma: no cover

    assert await run(add_twice("dup")) == "caught at the second insert"
