"""The rows a request writes, captured per table, and the database put back as it was.

A shadow comparison sends a writing request to the legacy route and to its port
from the same database state. :class:`ChangeRecorder` makes that possible for any
app's schema: it reflects the tables (no models are imported), snapshots every
row and sequence before a request, and afterwards puts them back, so that the
next side starts exactly where the first one did::

    engine = create_engine(DatabaseSettings.from_env().sync_url, poolclass=NullPool)
    recorder = ChangeRecorder(engine)
    with recorder.capture() as legacy:
        ...  # send the request to the legacy side
    with recorder.capture() as port:
        ...  # send it to the port
    differences = compare_changes(
        legacy.changes, port.changes, ignore_columns=["orders.created_at"]
    )

The apps write through their own engines and drivers, sync or async; the
recorder only needs a sync engine of its own on the same database, and sees
what they committed.

Limits, all of them fine for a test database:

* A snapshot reads whole tables. ``tables=`` narrows the recorder to the tables
  a route can touch.
* Nothing else may write to the recorded tables during a capture: not another
  test suite sharing the database, not a background task still running after
  the response, not an open transaction of an app (which would also make the
  restore wait for its locks). Such writes would be counted as the request's
  and undone with them.
* A restore writes like any client: the database's own triggers fire (a trigger
  that writes to a table the recorder does not record is not undone).
* PostgreSQL sequences are put back with ``setval``; a sequence declared with
  ``CACHE`` above 1 keeps handing out the values a session has already cached.
"""

from __future__ import annotations

import graphlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    Table,
    UniqueConstraint,
)

from bridge._shadow.difference import MISSING, Difference, show_value

Row = dict[str, Any]  # column name -> value
Key = tuple[Any, ...]  # a row's primary key; see DatabaseState for tables without one


@dataclass(frozen=True)
class TableChanges:
    """What happened to one table's rows between two states."""

    inserted: tuple[Row, ...]
    updated: tuple[tuple[Row, Row], ...]  # (before, after), only rows whose values changed
    deleted: tuple[Row, ...]
    primary_key: tuple[str, ...] = ()  # empty: the table has none, rows are a multiset


ChangeSet = dict[str, TableChanges]  # only tables with changes; key = table name


@dataclass(frozen=True)
class DatabaseState:
    """Every row and sequence of the recorded tables at one moment.

    A table without a primary key is a multiset of rows: each row's key is
    ``(its values, n)`` for its n-th copy, so that equal contents give equal
    states, and a changed row counts as one deleted and one inserted.
    """

    rows: dict[str, dict[Key, Row]]  # table -> primary key -> row
    # PostgreSQL: sequences owned by the tables' columns -> the last value
    # nextval() handed out, None if it hands out the start value next.
    # SQLite: AUTOINCREMENT tables -> their sqlite_sequence value, None if none.
    sequences: dict[str, int | None]
    primary_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Capture:
    """What :meth:`ChangeRecorder.capture` yields; ``changes`` is filled when the block exits."""

    before: DatabaseState
    changes: ChangeSet = field(default_factory=dict)


# -- Pure: changes, comparison, summaries -------------------------------------


def diff(before: DatabaseState, after: DatabaseState) -> ChangeSet:
    """The rows inserted, updated and deleted from *before* to *after*, per table."""
    changes: ChangeSet = {}
    for table in dict.fromkeys([*before.rows, *after.rows]):
        old, new = before.rows.get(table, {}), after.rows.get(table, {})
        inserted = tuple(row for key, row in new.items() if key not in old)
        deleted = tuple(row for key, row in old.items() if key not in new)
        updated = tuple(
            (row, new[key]) for key, row in old.items() if key in new and new[key] != row
        )
        if inserted or updated or deleted:
            primary_key = before.primary_keys.get(table) or after.primary_keys.get(table, ())
            changes[table] = TableChanges(inserted, updated, deleted, primary_key)
    return changes


def describe(changes: ChangeSet) -> str:
    """A one-line summary such as ``"orders +1, order_items +2, products ~2"``."""
    parts = []
    for table, change in changes.items():
        counts = (("+", change.inserted), ("~", change.updated), ("-", change.deleted))
        parts.append(f"{table} " + " ".join(f"{sign}{len(rows)}" for sign, rows in counts if rows))
    return ", ".join(parts) or "no changes"


def compare_changes(
    legacy: ChangeSet, port: ChangeSet, *, ignore_columns: Iterable[str] = ()
) -> list[Difference]:
    """Where the port's row changes differ from the legacy route's.

    Rows that existed before are matched by primary key: a column one side
    updated differently (or not at all) is reported at ``rows products[1].stock``,
    a row one side deleted at ``rows products[1]``. Inserted rows are matched by
    primary key too, unless a primary key column is ignored (ids that are meant
    to differ) or the table has none: then they are matched as a multiset of
    their other values, and reported at ``rows orders: inserted`` or, for two rows
    that differ, ``rows orders[inserted #1].total``.

    *ignore_columns* holds ``"table.column"`` names; ``*`` stands for any table
    or any column (``"*.updated_at"``). Each difference's ``legacy`` and ``port``
    are what that side left: a column's value, or the row (without its ignored
    columns), or :data:`~bridge._shadow.difference.MISSING` where that side left no row.
    """
    patterns = [pattern.rpartition(".")[::2] for pattern in ignore_columns]
    differences: list[Difference] = []
    for table in dict.fromkeys([*legacy, *port]):
        empty = TableChanges((), (), ())
        ours, theirs = legacy.get(table, empty), port.get(table, empty)
        primary_key = ours.primary_key or theirs.primary_key

        def ignored(column: str, table: str = table) -> bool:
            return any(t in ("*", table) and c in ("*", column) for t, c in patterns)

        differences += _compare_inserted(table, primary_key, ours, theirs, ignored)
        if primary_key:
            differences += _compare_existing(table, primary_key, ours, theirs, ignored)
        else:
            differences += _compare_deleted_multiset(table, ours, theirs, ignored)
    return differences


Ignored = Callable[[str], bool]


def _compare_inserted(
    table: str,
    primary_key: tuple[str, ...],
    ours: TableChanges,
    theirs: TableChanges,
    ignored: Ignored,
) -> list[Difference]:
    if not primary_key or any(ignored(column) for column in primary_key):
        return _compare_inserted_multiset(table, ours, theirs, ignored)
    legacy = {row_key(row, primary_key): row for row in ours.inserted}
    port = {row_key(row, primary_key): row for row in theirs.inserted}
    differences = []
    for key in dict.fromkeys([*legacy, *port]):
        where = f"rows {table}[{_show_key(key)}]"
        mine, yours = legacy.get(key), port.get(key)
        if mine is None or yours is None:
            side = "legacy" if yours is None else "async"
            differences.append(
                Difference(
                    where, _shown(mine, ignored), _shown(yours, ignored), f"inserted by {side} only"
                )
            )
        else:
            differences += _column_differences(where, mine, yours, ignored, None)
    return differences


def _compare_inserted_multiset(
    table: str, ours: TableChanges, theirs: TableChanges, ignored: Ignored
) -> list[Difference]:
    legacy, port = _unmatched_rows(ours.inserted, theirs.inserted, ignored)
    differences = []
    for number, (mine, yours) in enumerate(_pair(legacy, port), start=1):
        where = f"rows {table}[inserted #{number}]"
        differences += _column_differences(where, mine, yours, ignored, None)
    where = f"rows {table}: inserted"
    differences += [Difference(where, row, MISSING, "inserted by legacy only") for row in legacy]
    differences += [Difference(where, MISSING, row, "inserted by async only") for row in port]
    return differences


def _compare_existing(
    table: str,
    primary_key: tuple[str, ...],
    ours: TableChanges,
    theirs: TableChanges,
    ignored: Ignored,
) -> list[Difference]:
    # Both sides started from the same rows, so a row's state before is the same
    # on both; a side that left a row alone left it as it was.
    before: dict[Key, Row] = {}
    after: tuple[dict[Key, Row | None], dict[Key, Row | None]] = ({}, {})
    for side, changes in zip(after, (ours, theirs), strict=True):
        for old, new in changes.updated:
            before[row_key(old, primary_key)] = old
            side[row_key(old, primary_key)] = new
        for old in changes.deleted:
            before[row_key(old, primary_key)] = old
            side[row_key(old, primary_key)] = None
    differences = []
    for key, old in before.items():
        mine, yours = after[0].get(key, old), after[1].get(key, old)
        where = f"rows {table}[{_show_key(key)}]"
        if mine is not None and yours is not None:
            differences += _column_differences(where, mine, yours, ignored, old)
        elif mine is not yours:
            fates = [_fate(row, old) for row in (mine, yours)]
            note = (
                f"deleted by {'legacy' if mine is None else 'async'} only"
                if "unchanged" in fates
                else f"{fates[0]} by legacy, {fates[1]} by async"
            )
            differences.append(
                Difference(where, _shown(mine, ignored), _shown(yours, ignored), note)
            )
    return differences


def _unmatched_rows(
    ours: tuple[Row, ...], theirs: tuple[Row, ...], ignored: Ignored
) -> tuple[list[Row], list[Row]]:
    """The rows of each side, without ignored columns, that the other side lacks."""
    return _unmatched(
        [_project(row, ignored) for row in ours], [_project(row, ignored) for row in theirs]
    )


def _compare_deleted_multiset(
    table: str, ours: TableChanges, theirs: TableChanges, ignored: Ignored
) -> list[Difference]:
    legacy, port = _unmatched_rows(ours.deleted, theirs.deleted, ignored)
    where = f"rows {table}: deleted"
    return [Difference(where, MISSING, row, "deleted by legacy only") for row in legacy] + [
        Difference(where, row, MISSING, "deleted by async only") for row in port
    ]


def _column_differences(
    where: str, mine: Row, yours: Row, ignored: Ignored, before: Row | None
) -> list[Difference]:
    differences = []
    for column in dict.fromkeys([*mine, *yours]):
        if ignored(column) or mine.get(column) == yours.get(column):
            continue
        ours, theirs = mine.get(column), yours.get(column)
        if before is None:
            note = "inserted with different values"
        else:
            was = before.get(column)
            note = f"legacy {_change(was, ours)}, async {_change(was, theirs)}"
        differences.append(Difference(f"{where}.{column}", ours, theirs, note))
    return differences


def _unmatched(legacy: list[Row], port: list[Row]) -> tuple[list[Row], list[Row]]:
    """The rows of each list that the other has no equal copy of."""
    left = Counter(_freeze_row(row) for row in port)
    only_legacy = []
    for row in legacy:
        frozen = _freeze_row(row)
        if left[frozen]:
            left[frozen] -= 1
        else:
            only_legacy.append(row)
    only_port = []
    for row in port:
        frozen = _freeze_row(row)
        if left[frozen]:
            left[frozen] -= 1
            only_port.append(row)
    return only_legacy, only_port


def _pair(legacy: list[Row], port: list[Row]) -> list[tuple[Row, Row]]:
    """Pairs each legacy row with the port row closest to it; removes the pairs from both."""
    pairs = []
    for mine in list(legacy):
        if not port:
            break
        yours = min(port, key=lambda row: sum(mine.get(c) != row.get(c) for c in {*mine, *row}))
        legacy.remove(mine)
        port.remove(yours)
        pairs.append((mine, yours))
    return pairs


def _fate(row: Row | None, before: Row) -> str:
    return "deleted" if row is None else "unchanged" if row == before else "updated"


def _change(before: Any, after: Any) -> str:
    return "unchanged" if before == after else f"{_show(before)} → {_show(after)}"


def _show(value: Any) -> str:
    return "NULL" if value is None else show_value(value)


def _show_key(key: Key) -> str:
    return ", ".join(_show(value) for value in key)


def _project(row: Row, ignored: Ignored) -> Row:
    return {column: value for column, value in row.items() if not ignored(column)}


def _shown(row: Row | None, ignored: Ignored) -> Any:
    return MISSING if row is None else _project(row, ignored)


def row_key(row: Row, columns: Sequence[str]) -> Key:
    return tuple(freeze(row[column]) for column in columns)


def _freeze_row(row: Row) -> Key:
    return tuple(sorted((column, freeze(value)) for column, value in row.items()))


def freeze(value: Any) -> Any:
    """A hashable stand-in for a value read back by SQLAlchemy (JSON, arrays...)."""
    if isinstance(value, dict):
        return (dict, frozenset((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(item) for item in value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        hash(value)
    except TypeError:
        return (type(value), repr(value))
    return value


# -- Pure: the order a restore runs its statements in ------------------------

StepKind = Literal["delete", "update", "insert"]
Step = tuple[StepKind, str, Key]  # (kind, table, row key)
Identity = tuple[str, tuple[str, ...], Key]  # (table, columns, values) of a unique key


@dataclass(frozen=True)
class TableShape:
    """What ordering a restore needs to know about a table's keys."""

    name: str
    primary_key: tuple[str, ...]
    # Column sets whose values identify a row: the primary key, unique
    # constraints and indexes, and the columns foreign keys refer to.
    unique_keys: tuple[tuple[str, ...], ...]
    # (columns, referred table, referred columns), for referred tables recorded.
    foreign_keys: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...]

    def identities(self, row: Row | None) -> set[Identity]:
        if row is None:
            return set()
        return {
            (self.name, columns, values)
            for columns in self.unique_keys
            if None not in (values := row_key(row, columns))
        }

    def references(self, row: Row | None) -> set[Identity]:
        if row is None:
            return set()
        return {
            (referred, referred_columns, values)
            for columns, referred, referred_columns in self.foreign_keys
            if None not in (values := row_key(row, columns))
        }


@dataclass(frozen=True)
class Batch:
    """Statements of one kind on one table that no other statement of the batch depends on."""

    kind: StepKind
    table: str
    keys: tuple[Key, ...]


def plan_restore(
    state: DatabaseState, current: DatabaseState, shapes: Mapping[str, TableShape]
) -> tuple[list[Batch], bool]:
    """The batches that take the database from *current* back to *state*.

    Rows inserted since are deleted, rows deleted since re-inserted, and updated
    rows set back, in an order that never leaves a foreign key dangling nor two
    rows sharing a unique value: a referenced row goes in before the rows that
    refer to it and out after them, a unique value is freed before it is taken
    again, a reference to a row inserted since is set back before that row is
    deleted. The flag is true when the rows form a cycle and no such order
    exists; the batches then run deletes, updates and inserts in table order.
    """
    steps: list[Step] = []
    old: dict[Step, Row | None] = {}
    new: dict[Step, Row | None] = {}
    for table in shapes:
        target, present = state.rows.get(table, {}), current.rows.get(table, {})
        for key, row in present.items():
            if key not in target:
                step: Step = ("delete", table, key)
                steps.append(step)
                old[step], new[step] = row, None
        for key, row in target.items():
            if key not in present:
                step = ("insert", table, key)
            elif present[key] != row:
                step = ("update", table, key)
            else:
                continue
            steps.append(step)
            old[step], new[step] = present.get(key), row
    if not steps:
        return [], False

    adds_key: dict[Identity, list[Step]] = {}
    drops_key: dict[Identity, list[Step]] = {}
    drops_ref: dict[Identity, list[Step]] = {}
    edges: dict[Step, tuple[set[Identity], set[Identity], set[Identity]]] = {}
    for step in steps:
        shape = shapes[step[1]]
        keys_before, keys_after = shape.identities(old[step]), shape.identities(new[step])
        refs_before, refs_after = shape.references(old[step]), shape.references(new[step])
        for identity in keys_after - keys_before:
            adds_key.setdefault(identity, []).append(step)
        for identity in keys_before - keys_after:
            drops_key.setdefault(identity, []).append(step)
        for identity in refs_before - refs_after:
            drops_ref.setdefault(identity, []).append(step)
        edges[step] = (refs_after - refs_before, keys_before - keys_after, keys_after - keys_before)

    graph: dict[Step, set[Step]] = {}
    for step, (new_refs, dropped_keys, new_keys) in edges.items():
        graph[step] = (
            {first for ref in new_refs for first in adds_key.get(ref, ())}
            | {first for key in dropped_keys for first in drops_ref.get(key, ())}
            | {first for key in new_keys for first in drops_key.get(key, ())}
        ) - {step}

    position = {step: index for index, step in enumerate(steps)}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        kinds: tuple[StepKind, ...] = ("delete", "update", "insert")
        fallback = sorted(steps, key=lambda step: (kinds.index(step[0]), position[step]))
        return _batches(fallback), True
    batches = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        batches += _batches(ready)
        sorter.done(*ready)
    return batches, False


def _batches(steps: Iterable[Step]) -> list[Batch]:
    grouped: dict[tuple[StepKind, str], list[Key]] = {}
    for kind, table, key in steps:
        grouped.setdefault((kind, table), []).append(key)
    return [Batch(kind, table, tuple(keys)) for (kind, table), keys in grouped.items()]


def table_shapes(tables: Sequence[Table]) -> dict[str, TableShape]:
    recorded = set(tables)
    referred: dict[str, set[tuple[str, ...]]] = {table.name: set() for table in tables}
    foreign_keys: dict[str, list[tuple[tuple[str, ...], str, tuple[str, ...]]]] = {}
    for table in tables:
        foreign_keys[table.name] = []
        for constraint in table.foreign_key_constraints:
            parent = constraint.referred_table
            if parent not in recorded:
                continue
            columns = tuple(element.parent.name for element in constraint.elements)
            parent_columns = tuple(element.column.name for element in constraint.elements)
            foreign_keys[table.name].append((columns, parent.name, parent_columns))
            referred[parent.name].add(parent_columns)
    shapes = {}
    for table in tables:
        primary_key = tuple(column.name for column in table.primary_key.columns)
        unique = {primary_key} if primary_key else set()
        unique |= referred[table.name]
        unique |= {
            tuple(column.name for column in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        }
        unique |= {
            tuple(column.name for column in index.columns)
            for index in table.indexes
            if index.unique and len(index.expressions) == len(index.columns)
        }
        shapes[table.name] = TableShape(
            table.name, primary_key, tuple(sorted(unique)), tuple(foreign_keys[table.name])
        )
    return shapes
