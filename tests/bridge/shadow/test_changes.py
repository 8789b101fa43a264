"""Capturing the rows a request writes, and putting the database back, on every database.

The tables are made here, not imported from an app: the recorder reflects
whatever schema it finds. They cover a serial id (``categories``), an id that
is ``GENERATED ALWAYS AS IDENTITY`` on PostgreSQL and ``AUTOINCREMENT`` on
SQLite (``items``), a self-referential foreign key, a unique column, a composite
primary key (``stock``) and a table without a primary key (``labels``). Their
names carry this process's id, since other suites may share the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Executable,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.pool import NullPool

from bridge._exceptions import ConfigurationError, RestoreError
from bridge._porting.database import DatabaseSettings, configure_sqlite
from bridge._shadow.changes import (
    Batch,
    ChangeSet,
    DatabaseState,
    Key,
    Row,
    TableChanges,
    TableShape,
    compare_changes,
    describe,
    diff,
    plan_restore,
)
from bridge._shadow.compare import MISSING, Difference
from bridge._shadow.recorder import TOOLKIT_TABLES, ChangeRecorder
from tests.conftest import checked_out

SUFFIX = os.getpid()
NOON = datetime(2024, 5, 1, 12, 0)

metadata = MetaData()
categories = Table(
    f"chg_categories_{SUFFIX}",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("parent_id", Integer, ForeignKey(f"chg_categories_{SUFFIX}.id")),
)
items = Table(
    f"chg_items_{SUFFIX}",
    metadata,
    Column("id", Integer, Identity(always=True), primary_key=True),
    Column("category_id", Integer, ForeignKey(categories.c.id), nullable=False),
    Column("name", String(40), nullable=False),
    Column("stock", Integer, nullable=False),
    Column("price", Numeric(10, 2), nullable=False),
    Column("added_at", DateTime, nullable=False),
    sqlite_autoincrement=True,
)
stock = Table(
    f"chg_stock_{SUFFIX}",
    metadata,
    Column("item_id", Integer, ForeignKey(items.c.id), primary_key=True),
    Column("warehouse", String(20), primary_key=True),
    Column("quantity", Integer, nullable=False),
)
labels = Table(
    f"chg_labels_{SUFFIX}",
    metadata,
    Column("item_id", Integer, ForeignKey(items.c.id), nullable=False),
    Column("label", String(20), nullable=False),
)
orders = Table(
    f"chg_orders_{SUFFIX}",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey(items.c.id), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
)
CATEGORIES, ITEMS, STOCK, LABELS, ORDERS = (
    table.name for table in (categories, items, stock, labels, orders)
)


def item(category_id: int, name: str, stock: int, price: str) -> dict[str, Any]:
    return {
        "category_id": category_id,
        "name": name,
        "stock": stock,
        "price": Decimal(price),
        "added_at": NOON,
    }


@pytest.fixture
def shop(sync_engine: Engine) -> Iterator[Engine]:
    """The tables, created and filled on the test database, dropped afterwards."""
    metadata.create_all(sync_engine)
    run(
        sync_engine,
        insert(categories).values([{"name": "tools"}, {"name": "garden"}]),
        insert(categories).values(name="hoses", parent_id=2),
        insert(items).values([item(1, "hammer", 10, "9.50"), item(3, "hose", 5, "19.99")]),
        insert(stock).values(
            [
                {"item_id": 1, "warehouse": "north", "quantity": 4},
                {"item_id": 1, "warehouse": "south", "quantity": 6},
                {"item_id": 2, "warehouse": "north", "quantity": 5},
            ]
        ),
        insert(labels).values(
            [
                {"item_id": 1, "label": "sale"},
                {"item_id": 1, "label": "sale"},
                {"item_id": 2, "label": "new"},
            ]
        ),
    )
    yield sync_engine
    metadata.drop_all(sync_engine)


@pytest.fixture
def recorder(shop: Engine) -> ChangeRecorder:
    return ChangeRecorder(shop, tables=metadata.tables)


def run(engine: Engine, *statements: Executable) -> None:
    """Commit *statements* in one transaction."""
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(statement)


def new_id(engine: Engine, table: Table, **values: Any) -> int:
    """Commit one row and return the id the database generated for it."""
    with engine.begin() as connection:
        key = connection.execute(insert(table).values(**values)).inserted_primary_key
        assert key is not None
        return int(key[0])


# Capturing


def test_inserts_updates_and_deletes_are_captured_per_table(
    recorder: ChangeRecorder, shop: Engine
) -> None:
    with recorder.capture() as capture:
        run(
            shop,
            insert(orders).values(item_id=1, quantity=2, created_at=NOON),
            update(items).where(items.c.id == 1).values(stock=8),
            delete(stock).where(stock.c.item_id == 1, stock.c.warehouse == "south"),
            insert(labels).values(item_id=2, label="new"),
        )
    changes = capture.changes

    assert set(changes) == {ITEMS, STOCK, LABELS, ORDERS}
    assert changes[ORDERS] == TableChanges(
        inserted=({"id": 1, "item_id": 1, "quantity": 2, "created_at": NOON},),
        updated=(),
        deleted=(),
        primary_key=("id",),
    )
    ((before, after),) = changes[ITEMS].updated
    assert (before["stock"], after["stock"]) == (10, 8)
    assert {**before, "stock": 8} == after
    assert after["price"] == Decimal("9.50") and after["added_at"] == NOON
    assert changes[STOCK].deleted == ({"item_id": 1, "warehouse": "south", "quantity": 6},)
    assert changes[STOCK].primary_key == ("item_id", "warehouse")
    assert changes[LABELS] == TableChanges(
        inserted=({"item_id": 2, "label": "new"},), updated=(), deleted=()
    )
    assert describe(changes) == f"{ITEMS} ~1, {LABELS} +1, {ORDERS} +1, {STOCK} -1"


def test_nothing_written_captures_nothing(recorder: ChangeRecorder, shop: Engine) -> None:
    with recorder.capture() as capture:
        run(shop, update(items).where(items.c.id == 1).values(stock=10))

    assert capture.changes == {}
    assert describe(capture.changes) == "no changes"


def test_tables_are_recorded_parents_first(recorder: ChangeRecorder) -> None:
    assert recorder.tables.index(CATEGORIES) < recorder.tables.index(ITEMS)
    assert recorder.tables.index(ITEMS) < min(
        recorder.tables.index(name) for name in (STOCK, LABELS, ORDERS)
    )


def test_a_table_without_primary_key_is_a_multiset(recorder: ChangeRecorder, shop: Engine) -> None:
    before = recorder.snapshot()

    with recorder.capture() as capture:
        run(shop, delete(labels).where(labels.c.label == "sale"))
        run(shop, insert(labels).values(item_id=1, label="sale"))

    assert capture.changes[LABELS].deleted == ({"item_id": 1, "label": "sale"},)
    assert capture.changes[LABELS].inserted == ()
    assert recorder.snapshot() == before
    assert labels_of(shop) == [(1, "sale"), (1, "sale"), (2, "new")]


def labels_of(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        query = select(labels.c.item_id, labels.c.label).order_by(labels.c.item_id)
        return [tuple(row) for row in connection.execute(query)]


# Restoring


def test_restore_leaves_rows_and_generated_ids_as_they_were(
    recorder: ChangeRecorder, shop: Engine
) -> None:
    before = recorder.snapshot()

    with recorder.capture():
        first = (
            new_id(shop, categories, name="sheds"),
            new_id(shop, items, **item(1, "saw", 3, "12.00")),
            new_id(shop, orders, item_id=1, quantity=1, created_at=NOON),
        )

    assert recorder.snapshot() == before
    again = (
        new_id(shop, categories, name="sheds"),
        new_id(shop, items, **item(1, "saw", 3, "12.00")),
        new_id(shop, orders, item_id=1, quantity=1, created_at=NOON),
    )
    assert again == first == (4, 3, 1)


def test_sequences_are_part_of_the_state(
    recorder: ChangeRecorder, database_settings: DatabaseSettings
) -> None:
    sequences = recorder.snapshot().sequences

    if database_settings.backend == "sqlite":
        assert sequences == {ITEMS: 2}  # AUTOINCREMENT: sqlite_sequence
    else:
        assert sequences == {
            f"public.{CATEGORIES}_id_seq": 3,
            f"public.{ITEMS}_id_seq": 2,
            f"public.{ORDERS}_id_seq": None,  # never called: hands out its start next
        }


def test_restore_re_inserts_deleted_rows_parents_first(
    recorder: ChangeRecorder, shop: Engine, database_settings: DatabaseSettings
) -> None:
    if database_settings.backend == "sqlite":
        with shop.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    before = recorder.snapshot()

    with recorder.capture() as capture:  # the garden subtree goes, children first
        run(
            shop,
            delete(labels).where(labels.c.item_id == 2),
            delete(stock).where(stock.c.item_id == 2),
            delete(items).where(items.c.id == 2),
            delete(categories).where(categories.c.id == 3),
            delete(categories).where(categories.c.id == 2),
        )

    assert describe(capture.changes) == f"{CATEGORIES} -2, {ITEMS} -1, {LABELS} -1, {STOCK} -1"
    assert recorder.snapshot() == before


def test_restore_deletes_inserted_rows_children_first(
    recorder: ChangeRecorder, shop: Engine
) -> None:
    before = recorder.snapshot()

    with recorder.capture():
        parent = new_id(shop, categories, name="sheds")
        child = new_id(shop, categories, name="sheds/metal", parent_id=parent)
        saw = new_id(shop, items, **item(child, "saw", 3, "12.00"))
        run(
            shop,
            insert(stock).values(item_id=saw, warehouse="north", quantity=3),
            insert(labels).values(item_id=saw, label="new"),
        )

    assert recorder.snapshot() == before


def test_restore_sets_references_back_before_deleting_what_they_pointed_to(
    recorder: ChangeRecorder, shop: Engine
) -> None:
    before = recorder.snapshot()

    with recorder.capture() as capture:
        sheds = new_id(shop, categories, name="sheds")
        run(shop, update(items).where(items.c.id == 1).values(category_id=sheds))

    assert describe(capture.changes) == f"{CATEGORIES} +1, {ITEMS} ~1"
    assert recorder.snapshot() == before


def test_restore_frees_a_unique_value_before_taking_it_again(
    recorder: ChangeRecorder, shop: Engine
) -> None:
    before = recorder.snapshot()

    with recorder.capture() as capture:  # "tools" replaced by a new row of the same name
        run(
            shop,
            delete(labels).where(labels.c.item_id == 1),
            delete(stock).where(stock.c.item_id == 1),
            delete(items).where(items.c.id == 1),
            delete(categories).where(categories.c.id == 1),
        )
        new_id(shop, categories, name="tools")

    assert len(capture.changes[CATEGORIES].inserted) == 1
    assert len(capture.changes[CATEGORIES].deleted) == 1
    assert recorder.snapshot() == before


def test_restore_happens_when_the_body_raises(recorder: ChangeRecorder, shop: Engine) -> None:
    before = recorder.snapshot()

    with pytest.raises(RuntimeError, match="a bug"), recorder.capture() as capture:
        run(shop, update(items).values(stock=0))
        raise RuntimeError("a bug after the write")

    assert describe(capture.changes) == f"{ITEMS} ~2"
    assert recorder.snapshot() == before


def test_restore_puts_back_an_explicit_state(recorder: ChangeRecorder, shop: Engine) -> None:
    before = recorder.snapshot()
    run(shop, update(stock).values(quantity=0), delete(labels))
    changed = diff(before, recorder.snapshot())

    recorder.restore(before)

    assert describe(changed) == f"{LABELS} -3, {STOCK} ~3"
    assert recorder.snapshot() == before


def test_a_failed_restore_is_rolled_back_and_says_why(
    recorder: ChangeRecorder, shop: Engine
) -> None:
    narrow = ChangeRecorder(shop, tables=[CATEGORIES])  # items refer to categories
    before = recorder.snapshot()

    with pytest.raises(RestoreError, match="back as it was") as raised, narrow.capture():
        sheds = new_id(shop, categories, name="sheds")
        new_id(shop, items, **item(sheds, "saw", 3, "12.00"))

    assert "record the tables that refer to it too" in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1
    assert describe(diff(before, recorder.snapshot())) == f"{CATEGORIES} +1, {ITEMS} +1"
    recorder.restore(before)
    assert recorder.snapshot() == before


def test_writes_through_another_engine_are_captured(
    recorder: ChangeRecorder, database_settings: DatabaseSettings
) -> None:
    other = create_engine(database_settings.sync_url, poolclass=NullPool)
    if database_settings.backend == "sqlite":
        configure_sqlite(other)
    before = recorder.snapshot()
    try:
        with recorder.capture() as capture:
            run(other, update(items).where(items.c.id == 2).values(stock=4))
            new_id(other, orders, item_id=2, quantity=1, created_at=NOON)
    finally:
        other.dispose()

    assert describe(capture.changes) == f"{ITEMS} ~1, {ORDERS} +1"
    assert recorder.snapshot() == before


@pytest.mark.anyio
async def test_writes_through_an_async_engine_are_captured(
    recorder: ChangeRecorder, database_settings: DatabaseSettings
) -> None:
    engine = database_settings.create_async_engine()
    before = recorder.snapshot()
    try:
        with recorder.capture() as capture:
            async with engine.begin() as connection:
                await connection.execute(update(items).where(items.c.id == 1).values(stock=9))
                await connection.execute(
                    insert(orders).values(item_id=1, quantity=1, created_at=NOON)
                )
    finally:
        leaked = checked_out(engine.sync_engine)
        await engine.dispose()

    assert leaked == 0
    assert describe(capture.changes) == f"{ITEMS} ~1, {ORDERS} +1"
    assert capture.changes[ORDERS].inserted[0]["id"] == 1
    assert recorder.snapshot() == before


def test_unknown_tables_are_named(shop: Engine) -> None:
    recorder = ChangeRecorder(shop, tables=[ITEMS, "nope"])

    with pytest.raises(ConfigurationError, match="cannot record nope: no such table"):
        recorder.snapshot()


def test_a_state_of_other_tables_is_refused(recorder: ChangeRecorder, shop: Engine) -> None:
    other = ChangeRecorder(shop, tables=[CATEGORIES])

    with pytest.raises(ConfigurationError, match="restore a state its own snapshot"):
        recorder.restore(other.snapshot())


# Comparing


Side = Callable[[Engine], None]


def place_order(
    *,
    quantity: int = 1,
    rows: int = 1,
    decrement: bool = True,
    order_id: int | None = None,
    created_at: datetime = NOON,
) -> Side:
    """A route that orders item 1: one order row, and the item's stock decremented."""

    def side(engine: Engine) -> None:
        values = [
            {"item_id": 1, "quantity": quantity, "created_at": created_at}
            | ({} if order_id is None else {"id": order_id + n})
            for n in range(rows)
        ]
        statements: list[Executable] = [insert(orders).values(values)]
        if decrement:
            stock_left = items.c.stock - quantity
            statements.append(update(items).where(items.c.id == 1).values(stock=stock_left))
        run(engine, *statements)

    return side


def shadow(recorder: ChangeRecorder, legacy: Side, port: Side) -> tuple[ChangeSet, ChangeSet]:
    """Each side's changes, both from the same start."""
    engine = recorder.engine
    with recorder.capture() as first:
        legacy(engine)
    with recorder.capture() as second:
        port(engine)
    return first.changes, second.changes


def test_equal_changes_make_no_difference(recorder: ChangeRecorder) -> None:
    legacy, port = shadow(recorder, place_order(), place_order())

    assert legacy == port
    assert compare_changes(legacy, port) == []


def test_one_row_too_many_is_found(recorder: ChangeRecorder) -> None:
    legacy, port = shadow(recorder, place_order(), place_order(rows=2, quantity=1))

    assert compare_changes(legacy, port) == [
        Difference(
            f"rows {ORDERS}[2]",
            MISSING,
            {"id": 2, "item_id": 1, "quantity": 1, "created_at": NOON},
            "inserted by async only",
        )
    ]


def test_a_wrong_value_is_found(recorder: ChangeRecorder) -> None:
    legacy, port = shadow(recorder, place_order(), place_order(quantity=2))

    assert compare_changes(legacy, port) == [
        Difference(f"rows {ITEMS}[1].stock", 9, 8, "legacy 10 → 9, async 10 → 8"),
        Difference(f"rows {ORDERS}[1].quantity", 1, 2, "inserted with different values"),
    ]


def test_a_missing_decrement_is_found(recorder: ChangeRecorder) -> None:
    legacy, port = shadow(recorder, place_order(), place_order(decrement=False))

    (difference,) = compare_changes(legacy, port)

    assert difference == Difference(
        f"rows {ITEMS}[1].stock", 9, 10, "legacy 10 → 9, async unchanged"
    )
    assert (
        str(difference)
        == f"rows {ITEMS}[1].stock: legacy 9, async 10 (legacy 10 → 9, async unchanged)"
    )


@pytest.mark.parametrize("ignored", [f"{ORDERS}.created_at", "*.created_at", f"{ORDERS}.*"])
def test_ignored_columns_are_not_compared(recorder: ChangeRecorder, ignored: str) -> None:
    legacy, port = shadow(recorder, place_order(), place_order(created_at=datetime(2025, 1, 1)))

    assert [d.where for d in compare_changes(legacy, port)] == [f"rows {ORDERS}[1].created_at"]
    assert compare_changes(legacy, port, ignore_columns=[ignored]) == []


def test_ignored_ids_match_inserted_rows_by_their_other_values(recorder: ChangeRecorder) -> None:
    legacy, port = shadow(recorder, place_order(), place_order(order_id=100))
    wrong = shadow(recorder, place_order(), place_order(order_id=100, quantity=2))[1]
    extra = shadow(recorder, place_order(), place_order(order_id=100, rows=2))[1]
    ignore = [f"{ORDERS}.id"]

    assert [d.note for d in compare_changes(legacy, port)] == [
        "inserted by legacy only",
        "inserted by async only",
    ]
    assert compare_changes(legacy, port, ignore_columns=ignore) == []
    assert compare_changes(legacy, wrong, ignore_columns=ignore)[1] == Difference(
        f"rows {ORDERS}[inserted #1].quantity", 1, 2, "inserted with different values"
    )
    assert compare_changes(legacy, extra, ignore_columns=ignore) == [
        Difference(
            f"rows {ORDERS}: inserted",
            MISSING,
            {"item_id": 1, "quantity": 1, "created_at": NOON},
            "inserted by async only",
        )
    ]


HAMMER = {"id": 1, "name": "hammer", "stock": 10}


def changes(**tables: TableChanges) -> ChangeSet:
    return dict(tables)


def test_a_row_deleted_by_one_side_only_is_found() -> None:
    legacy = changes(items=TableChanges((), (), (HAMMER,), ("id",)))
    port_updated = changes(items=TableChanges((), ((HAMMER, {**HAMMER, "stock": 9}),), (), ("id",)))

    assert compare_changes(legacy, {}) == [
        Difference("rows items[1]", MISSING, HAMMER, "deleted by legacy only")
    ]
    assert compare_changes(legacy, port_updated) == [
        Difference(
            "rows items[1]", MISSING, {**HAMMER, "stock": 9}, "deleted by legacy, updated by async"
        )
    ]
    assert compare_changes(legacy, legacy) == []


def test_rows_of_a_table_without_primary_key_are_compared_as_multisets() -> None:
    sale = {"item_id": 1, "label": "sale"}
    legacy = changes(labels=TableChanges((sale,), (), ()))
    port = changes(labels=TableChanges((sale, sale), (), (sale,)))

    assert compare_changes(legacy, port) == [
        Difference("rows labels: inserted", MISSING, sale, "inserted by async only"),
        Difference("rows labels: deleted", sale, MISSING, "deleted by async only"),
    ]


def test_a_composite_key_is_shown_in_full() -> None:
    row = {"item_id": 1, "warehouse": "north", "quantity": 4}
    legacy = changes(
        stock=TableChanges((), ((row, {**row, "quantity": 3}),), (), ("item_id", "warehouse"))
    )

    assert compare_changes(legacy, {})[0].where == 'rows stock[1, "north"].quantity'


def test_json_values_are_hashable_for_multisets() -> None:
    before = DatabaseState(rows={"t": {}}, sequences={})
    after = DatabaseState(rows={"t": {(1,): {"id": 1, "data": {"a": [1, 2]}}}}, sequences={})
    inserted = diff(before, after)["t"]
    doubled = changes(
        t=TableChanges((*inserted.inserted, {"id": 2, "data": {"a": [1, 2]}}), (), ())
    )

    assert compare_changes({"t": inserted}, doubled, ignore_columns=["t.id"]) == [
        Difference("rows t: inserted", MISSING, {"data": {"a": [1, 2]}}, "inserted by async only")
    ]


def test_plain_sql_writes_are_captured(recorder: ChangeRecorder, shop: Engine) -> None:
    table = shop.dialect.identifier_preparer.quote(STOCK)

    with recorder.capture() as capture:
        run(shop, text(f"UPDATE {table} SET quantity = quantity + 1"))

    assert describe(capture.changes) == f"{STOCK} ~3"


def test_a_postgresql_schema_is_recorded(shop: Engine, database_settings: DatabaseSettings) -> None:
    if database_settings.backend != "postgresql":
        pytest.skip("SQLite has no schemas but attached databases")
    schema = f"chg_schema_{SUFFIX}"
    notes = Table("notes", MetaData(schema=schema), Column("id", Integer, primary_key=True))
    run(shop, text(f"CREATE SCHEMA {schema}"))
    try:
        notes.create(shop)
        recorder = ChangeRecorder(shop, schema=schema)
        before = recorder.snapshot()
        with recorder.capture() as capture:
            first = new_id(shop, notes)

        assert recorder.tables == ("notes",)
        assert before.sequences == {f"{schema}.notes_id_seq": None}
        assert describe(capture.changes) == "notes +1"
        assert recorder.snapshot() == before
        assert new_id(shop, notes) == first == 1
    finally:
        run(shop, text(f"DROP SCHEMA {schema} CASCADE"))


def test_rows_that_refer_to_each_other_are_flagged_as_a_cycle() -> None:
    shape = TableShape("nodes", ("id",), (("id",),), ((("next_id",), "nodes", ("id",)),))
    empty = DatabaseState(rows={"nodes": {}}, sequences={})
    loop: dict[Key, Row] = {(1,): {"id": 1, "next_id": 2}, (2,): {"id": 2, "next_id": 1}}
    chain: dict[Key, Row] = {(1,): {"id": 1, "next_id": 2}, (2,): {"id": 2, "next_id": None}}

    batches, cyclic = plan_restore(empty, DatabaseState({"nodes": loop}, {}), {"nodes": shape})
    assert cyclic and batches == [Batch("delete", "nodes", ((1,), (2,)))]

    batches, cyclic = plan_restore(empty, DatabaseState({"nodes": chain}, {}), {"nodes": shape})
    assert not cyclic
    assert batches == [Batch("delete", "nodes", ((1,),)), Batch("delete", "nodes", ((2,),))]


def test_the_toolkits_own_tables_are_recorded_only_when_named(
    shop: Engine, database_settings: DatabaseSettings
) -> None:
    # A running hybrid counts requests in the rollout store's tables, whichever
    # side answers: that is no write of the app's.
    schema = f"chg_own_{SUFFIX}" if database_settings.backend == "postgresql" else None
    own = MetaData(schema=schema)
    app_table = Table("notes", own, Column("id", Integer, primary_key=True))
    counts = Table(f"{TOOLKIT_TABLES}counts", own, Column("id", Integer, primary_key=True))
    if schema:
        run(shop, text(f"CREATE SCHEMA {schema}"))
    try:
        own.create_all(shop)
        recorder = ChangeRecorder(shop, schema=schema)
        with recorder.capture() as capture:
            new_id(shop, app_table)
            new_id(shop, counts)
        assert TOOLKIT_TABLES + "counts" not in recorder.tables
        assert describe(capture.changes) == "notes +1"
        named = ChangeRecorder(shop, schema=schema, tables=[f"{TOOLKIT_TABLES}counts"])
        with named.capture() as capture:
            new_id(shop, counts)
        assert describe(capture.changes) == f"{TOOLKIT_TABLES}counts +1"
    finally:
        if schema:
            run(shop, text(f"DROP SCHEMA {schema} CASCADE"))
        else:
            own.drop_all(shop)
