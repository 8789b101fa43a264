"""The I/O half of :mod:`bridge._shadow.changes`: snapshot and restore through a sync engine.

:class:`ChangeRecorder` reads every row and sequence of the recorded tables
before a request, and afterwards puts them back in the order
:func:`~bridge._shadow.changes.plan_restore` works out.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    MetaData,
    Table,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, SAWarning
from sqlalchemy.schema import sort_tables
from sqlalchemy.sql.expression import literal_column

from bridge._exceptions import ConfigurationError, RestoreError
from bridge._shadow.changes import (
    Batch,
    Capture,
    ChangeSet,
    DatabaseState,
    Key,
    Row,
    TableShape,
    diff,
    freeze,
    plan_restore,
    row_key,
    table_shapes,
)


@dataclass(frozen=True)
class _Sequence:
    name: str  # as PostgreSQL quotes it, schema-qualified
    start: int
    increment: int
    minimum: int
    maximum: int

    def last_value(self, last_value: int, is_called: bool) -> int | None:
        if is_called:
            return last_value
        # Not called yet: the next nextval() returns last_value itself, as if
        # the value before it had been handed out.
        previous = last_value - self.increment
        return previous if self.minimum <= previous <= self.maximum else None


@dataclass(frozen=True)
class _Layout:
    tables: tuple[Table, ...]  # parents first
    shapes: dict[str, TableShape]
    sequences: tuple[_Sequence, ...]  # PostgreSQL
    autoincrement: tuple[str, ...]  # SQLite tables declared AUTOINCREMENT

    def table(self, name: str) -> Table:
        return next(table for table in self.tables if table.name == name)


TOOLKIT_TABLES = "flask2fastapi_"
"""The prefix of the toolkit's own tables, such as the rollout store's: a running
hybrid counts requests there, whichever side answers, so they are not the app's
writes and are never recorded unless named."""


class ChangeRecorder:
    """Snapshots the rows of a database's tables and puts them back.

    Every table of *schema* (the default schema if ``None``) is recorded but
    the toolkit's own (:data:`TOOLKIT_TABLES`), or only those named in *tables*.
    Tables are reflected when first needed, so the recorder may be made before
    the app creates them. A table without a
    primary key is compared as a multiset of whole rows.

    *engine* is a sync engine on the apps' database, for example
    ``create_engine(settings.sync_url, poolclass=NullPool)`` for a
    :class:`~bridge._porting.database.DatabaseSettings`; it needs no foreign key pragma.
    See the module's docstring for what the recorder cannot see.
    """

    def __init__(
        self, engine: Engine, *, tables: Iterable[str] | None = None, schema: str | None = None
    ) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ConfigurationError(
                f"cannot record changes on {engine.dialect.name}: use SQLite or PostgreSQL"
            )
        self.engine = engine
        self.schema = schema
        self.table_names = None if tables is None else tuple(dict.fromkeys(tables))
        if self.table_names == ():
            raise ConfigurationError(
                "tables= names no table: name at least one, or leave it out to record them all"
            )

    @property
    def tables(self) -> tuple[str, ...]:
        """The recorded tables' names, parents before the tables that refer to them."""
        return tuple(table.name for table in self._layout.tables)

    def snapshot(self) -> DatabaseState:
        """Every row and sequence of the recorded tables, as committed now."""
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            state, _ = self._read(connection, locate=False)
        return state

    def restore(self, state: DatabaseState) -> None:
        """Put the database back as it was in *state*, in one transaction.

        Rows inserted since are deleted, rows deleted since re-inserted, updated
        rows set back (see :func:`plan_restore` for the order), then sequences
        reset, so that the next insert gets the same generated id again.
        """
        self._put_back(state)

    @contextmanager
    def capture(self) -> Iterator[Capture]:
        """Record the changes made in the block, then undo them, even if the block raises.

        After the block, ``capture.changes`` holds the changes, and the database
        is as it was before the block.
        """
        capture = Capture(before=self.snapshot())
        try:
            yield capture
        finally:
            capture.changes = self._put_back(capture.before)

    def _put_back(self, state: DatabaseState) -> ChangeSet:
        layout = self._layout
        if set(state.rows) != set(layout.shapes):
            raise ConfigurationError(
                f"the state holds tables {', '.join(sorted(state.rows))}, this recorder records "
                f"{', '.join(sorted(layout.shapes))}: restore a state its own snapshot() took"
            )
        table: str | None = None
        cyclic = False
        try:
            with self.engine.begin() as connection:
                current, locators = self._read(connection, locate=True)
                batches, cyclic = plan_restore(state, current, layout.shapes)
                if batches:
                    self._defer_constraints(connection)
                for batch in batches:
                    table = batch.table
                    for statement, parameters in self._statements(batch, state, current, locators):
                        connection.execute(statement, parameters)
                table = None  # deferred constraints fail at the commit, for no one table
                self._reset_sequences(connection, state.sequences)
        except DBAPIError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            fix = (
                "its rows refer to each other in a cycle: declare those foreign keys DEFERRABLE"
                if cyclic
                else "record the tables that refer to it too, and let nothing else write meanwhile"
            )
            raise RestoreError(
                f"cannot put {table or 'the database'} back as it was ({reason}): {fix}",
                table=table,
            ) from exc
        return diff(state, current)

    # Reading

    def _read(
        self, connection: Connection, *, locate: bool
    ) -> tuple[DatabaseState, dict[str, dict[Key, Any]]]:
        """The state, and for tables without a primary key where each row is."""
        layout = self._layout
        rows: dict[str, dict[Key, Row]] = {}
        locators: dict[str, dict[Key, Any]] = {}
        for table in layout.tables:
            names = [column.name for column in table.columns]
            primary_key = layout.shapes[table.name].primary_key
            if primary_key:
                result = connection.execute(select(table).order_by(*table.primary_key.columns))
                read = (dict(zip(names, row, strict=True)) for row in result)
                rows[table.name] = {row_key(row, primary_key): row for row in read}
                continue
            statement = select(table)
            if locate:
                statement = select(self._locator(), *table.columns)
            rows[table.name], locators[table.name] = {}, {}
            copies: Counter[Key] = Counter()
            for result_row in connection.execute(statement):
                values = tuple(result_row[1:] if locate else result_row)
                content = tuple(freeze(value) for value in values)
                key = (content, copies[content])
                copies[content] += 1
                rows[table.name][key] = dict(zip(names, values, strict=True))
                if locate:
                    locators[table.name][key] = result_row[0]
        sequences = self._read_sequences(connection)
        primary_keys = {name: shape.primary_key for name, shape in layout.shapes.items()}
        return DatabaseState(rows, sequences, primary_keys), locators

    def _read_sequences(self, connection: Connection) -> dict[str, int | None]:
        layout = self._layout
        sequences: dict[str, int | None] = {}
        for sequence in layout.sequences:
            last_value, is_called = connection.execute(
                text(f"SELECT last_value, is_called FROM {sequence.name}")
            ).one()
            sequences[sequence.name] = sequence.last_value(last_value, is_called)
        if layout.autoincrement:
            table = self._sqlite_prefix + "sqlite_sequence"
            result = connection.execute(text(f"SELECT name, seq FROM {table}"))
            stored: dict[str, int] = {name: seq for name, seq in result}
            sequences.update({name: stored.get(name) for name in layout.autoincrement})
        return sequences

    def _locator(self) -> Any:
        # Tables without a primary key: rows are deleted by their physical place.
        if self.engine.dialect.name == "postgresql":
            return literal_column("CAST(ctid AS text)")
        return literal_column("rowid")

    # Writing

    def _defer_constraints(self, connection: Connection) -> None:
        # Only a safety net for rows that reference each other in a cycle: SQLite
        # defers every foreign key until the commit, PostgreSQL those declared
        # DEFERRABLE. SQLite switches the pragma off again at the commit.
        if self.engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        else:
            connection.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")

    def _statements(
        self,
        batch: Batch,
        state: DatabaseState,
        current: DatabaseState,
        locators: dict[str, dict[Key, Any]],
    ) -> Iterator[tuple[Executable, list[dict[str, Any]] | dict[str, Any]]]:
        table = self._layout.table(batch.table)
        primary_key = [table.c[name] for name in self._layout.shapes[batch.table].primary_key]
        writable = [column.name for column in table.columns if column.computed is None]
        if batch.kind == "delete" and not primary_key:
            where = "ctid = CAST(:place AS tid)" if self._is_postgres else "rowid = :place"
            places = [{"place": locators[batch.table][key]} for key in batch.keys]
            yield text(f"DELETE FROM {self._quoted(table)} WHERE {where}"), places
        elif batch.kind == "delete":
            matches = [column == bindparam(f"k{i}") for i, column in enumerate(primary_key)]
            rows = [current.rows[batch.table][key] for key in batch.keys]
            keys = [{f"k{i}": row[c.name] for i, c in enumerate(primary_key)} for row in rows]
            yield delete(table).where(*matches), keys
        elif batch.kind == "insert":
            statement, names = self._insert(table, writable)
            rows = [state.rows[batch.table][key] for key in batch.keys]
            yield (
                statement,
                [dict(zip(names, (row[c] for c in writable), strict=True)) for row in rows],
            )
        else:
            for key in batch.keys:
                was, now = state.rows[batch.table][key], current.rows[batch.table][key]
                values = {table.c[c]: was[c] for c in writable if was[c] != now[c]}
                if values:
                    matches = [column == was[column.name] for column in primary_key]
                    yield update(table).where(*matches).values(values), {}

    def _insert(self, table: Table, writable: list[str]) -> tuple[Executable, list[str]]:
        """The statement that re-inserts rows of *table*, and its parameters' names."""
        if not any(c.identity is not None and c.identity.always for c in table.columns):
            return insert(table), writable
        # GENERATED ALWAYS identity columns take a given value only when told to.
        names = [f"v{i}" for i in range(len(writable))]
        columns = ", ".join(self.engine.dialect.identifier_preparer.quote(c) for c in writable)
        statement = text(
            f"INSERT INTO {self._quoted(table)} ({columns})"
            f" OVERRIDING SYSTEM VALUE VALUES ({', '.join(':' + n for n in names)})"
        ).bindparams(
            *(bindparam(n, type_=table.c[c].type) for n, c in zip(names, writable, strict=True))
        )
        return statement, names

    def _reset_sequences(self, connection: Connection, target: dict[str, int | None]) -> None:
        now = self._read_sequences(connection)  # re-inserted ids may have moved them
        for sequence in self._layout.sequences:
            value = target.get(sequence.name)
            if sequence.name in target and now[sequence.name] != value:
                connection.execute(
                    text("SELECT setval(CAST(:name AS regclass), :value, :called)"),
                    {
                        "name": sequence.name,
                        "value": sequence.start if value is None else value,
                        "called": value is not None,
                    },
                )
        for name in self._layout.autoincrement:
            if name in target and now[name] != target[name]:
                table = self._sqlite_prefix + "sqlite_sequence"
                row = {"name": name, "seq": target[name]}
                connection.execute(text(f"DELETE FROM {table} WHERE name = :name"), row)
                if target[name] is not None:
                    connection.execute(
                        text(f"INSERT INTO {table} (name, seq) VALUES (:name, :seq)"), row
                    )

    # Reflection

    @property
    def _is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def _sqlite_prefix(self) -> str:
        if self.schema is None:
            return ""
        return self.engine.dialect.identifier_preparer.quote_schema(self.schema) + "."

    def _quoted(self, table: Table) -> str:
        return str(self.engine.dialect.identifier_preparer.format_table(table))

    @cached_property
    def _layout(self) -> _Layout:
        with self.engine.connect() as connection:
            existing = inspect(connection).get_table_names(schema=self.schema)
            if self.table_names is None:
                wanted = [name for name in existing if not name.startswith(TOOLKIT_TABLES)]
            else:
                wanted = list(self.table_names)
            missing = [name for name in wanted if name not in existing]
            if missing:
                where = f"schema {self.schema}" if self.schema else "the database"
                raise ConfigurationError(
                    f"cannot record {', '.join(missing)}: no such table in {where}; "
                    "create the tables first or fix tables="
                )
            metadata = MetaData(schema=self.schema)
            if wanted:
                metadata.reflect(connection, only=wanted, views=False)
            chosen = [
                metadata.tables[f"{self.schema}.{n}" if self.schema else n] for n in sorted(wanted)
            ]
            ordered = _parents_first(chosen)
            shapes = table_shapes(ordered)
            if self._is_postgres:
                return _Layout(ordered, shapes, self._reflect_sequences(connection, ordered), ())
            return _Layout(ordered, shapes, (), self._reflect_autoincrement(connection, ordered))

    def _reflect_sequences(
        self, connection: Connection, tables: Sequence[Table]
    ) -> tuple[_Sequence, ...]:
        query = text(
            "SELECT owned.name, s.seqstart, s.seqincrement, s.seqmin, s.seqmax"
            " FROM (SELECT pg_get_serial_sequence(:table, a.attname) AS name"
            "       FROM pg_attribute AS a"
            "       WHERE a.attrelid = CAST(:table AS regclass)"
            "         AND a.attnum > 0 AND NOT a.attisdropped) AS owned"
            " JOIN pg_sequence AS s ON s.seqrelid = CAST(owned.name AS regclass)"
            " ORDER BY owned.name"
        )
        return tuple(
            _Sequence(*row)
            for table in tables
            for row in connection.execute(query, {"table": self._quoted(table)})
        )

    def _reflect_autoincrement(
        self, connection: Connection, tables: Sequence[Table]
    ) -> tuple[str, ...]:
        declared = set(
            connection.scalars(
                text(
                    f"SELECT name FROM {self._sqlite_prefix}sqlite_master"
                    " WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'"
                )
            )
        )
        return tuple(table.name for table in tables if table.name in declared)


def _parents_first(tables: Sequence[Table]) -> tuple[Table, ...]:
    """*tables*, each after the tables it refers to, by SQLAlchemy's own sort.

    Tables in a foreign-key cycle cannot all come after their parents;
    ``sort_tables`` still orders them and warns. The restore defers the
    constraints for that case (see ``_defer_constraints``), so the warning says
    nothing the run can act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        return tuple(sort_tables(tables))
