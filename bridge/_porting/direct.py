"""Reads on :data:`~bridge.DbConnection` and :data:`~bridge.DbSession` run straight on asyncpg.

``await connection.execute(select(...))`` on an ``AsyncConnection`` switches
into a greenlet, builds an execution context, a cursor and a cursor result,
and only then awaits the driver: on asyncpg that costs more CPU than the
driver's own work for the query (guide 08). A :class:`PortConnection`, and a
:class:`PortAsyncSession` on its connection, run a Core ``SELECT`` or a
``text()`` statement with the same steps SQLAlchemy would take, in the same
transaction, without them:

* the statement is compiled through the engine's compiled cache, as
  ``Connection.execute`` compiles it, and its parameters are bound with the
  same bind processors;
* the transaction is begun the way SQLAlchemy's asyncpg adapter begins it,
  under the adapter's lock, and the statement prepared through the adapter's
  own prepared-statement cache;
* the rows come back as a :class:`~sqlalchemy.engine.Result` whose values went
  through the same result processors (an ``Enum`` column gives the enum, a
  ``Numeric`` a ``Decimal``), with the same keys, ``rowcount`` included;
* a database error is translated and handled as ``Connection.execute``
  handles it: the same ``sqlalchemy.exc`` class, and a connection the server
  dropped is invalidated.

Everything else goes through SQLAlchemy as before, so behaviour never
depends on whether a statement took the short way: ``INSERT``, ``UPDATE`` and
``DELETE`` (their defaults and returned keys), ORM statements, parameters
that expand (``in_()``), several parameter sets, execution options on the
statement or the connection, an engine or connection listening to the
statements it runs (logging, tracing), echo, a schema translate map, and
every driver but asyncpg, and every SQLAlchemy but 2.1, whose internals it
follows. ``DATABASE_LAZY_BEGIN`` applies on the short way
too: it decides, as for any statement, whether the read sends ``BEGIN``. A
result of the short way lacks what only a cursor result of DML has
(``inserted_primary_key``, ``returned_defaults``, ``lastrowid``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from weakref import WeakKeyDictionary

import sqlalchemy
from sqlalchemy import Select, TextClause
from sqlalchemy.engine import Connection, IteratorResult
from sqlalchemy.engine.cursor import _NO_RESULT_METADATA
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import compiler, sqltypes
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import EMPTY_DICT, greenlet_spawn

from bridge._porting.lazy_begin import lazy_begin_of
from bridge._porting.lazyload import _refuse_lazy_load

_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")

# The short way takes the steps of SQLAlchemy's own execution and of its
# asyncpg adapter, whose internals change between minor versions: on others,
# every statement goes through SQLAlchemy.
_SHORT_WAY_OPEN = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2]) == (2, 1)


class DirectResult(IteratorResult[Any]):
    """The rows of a statement run on the driver, with its ``rowcount``."""

    rowcount: int = -1
    returns_rows: bool = True


class _Shape:
    """What a compiled ``SELECT`` gives for each column: its key, its other
    keys (the rendered name, the column objects) and its type."""

    __slots__ = ("extra", "keys", "metadata", "types")

    def __init__(self, compiled: SQLCompiler) -> None:
        columns = compiled._result_columns
        self.keys = [column.keyname for column in columns]
        self.extra = [(column.name, *column.objects) for column in columns]
        self.types = [column.type for column in columns]
        self.metadata: dict[tuple[int, ...], SimpleResultMetaData] = {}


# Per compiled statement, kept as long as the engine's compiled cache keeps it.
# None: a statement that must go through SQLAlchemy.
_shapes: WeakKeyDictionary[SQLCompiler, _Shape | None] = WeakKeyDictionary()


class PortConnection(AsyncConnection):
    """The ``AsyncConnection`` of :data:`~bridge.DbConnection`: reads run on the driver."""

    async def execute(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        if execution_options is None and (parameters is None or isinstance(parameters, Mapping)):
            result = await _run_direct(self, statement, parameters)
            if result is not None:
                return result
        return await super().execute(statement, parameters, execution_options=execution_options)


class PortAsyncSession(AsyncSession):
    """The ``AsyncSession`` of :data:`~bridge.DbSession`: Core reads run on the driver,
    on the session's connection and in its transaction, as ``Session.execute``
    runs them. ``Session.execute`` autoflushes before any statement, Core ones
    included, so a session with changes to flush takes SQLAlchemy's way."""

    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        result = await self._run_direct(statement, params, execution_options, bind_arguments, kw)
        if result is not None:
            return result
        return await super().execute(
            statement,
            params,
            execution_options=execution_options,
            bind_arguments=bind_arguments,
            **kw,
        )

    async def scalar(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: Any = EMPTY_DICT,
        bind_arguments: Any = None,
        **kw: Any,
    ) -> Any:
        result = await self._run_direct(statement, params, execution_options, bind_arguments, kw)
        if result is not None:
            return result.scalar()
        return await super().scalar(
            statement,
            params,
            execution_options=execution_options,
            bind_arguments=bind_arguments,
            **kw,
        )

    async def _run_direct(
        self, statement: Any, params: Any, options: Any, bind_arguments: Any, kw: Any
    ) -> DirectResult | None:
        """The result of the short way, or None where ``Session.execute`` must run it."""
        if _core_read(statement) and self._plain(params, options, bind_arguments, kw):
            return await _run_direct(await self.connection(), statement, params)
        return None

    def _plain(self, params: Any, options: Any, bind_arguments: Any, kw: Any) -> bool:
        """Whether ``Session.execute`` would only hand the statement to its connection."""
        session = self.sync_session
        return (
            _SHORT_WAY_OPEN
            and session.bind is not None
            and session.bind.dialect.driver == "asyncpg"  # else not worth a connection() call
            and (params is None or isinstance(params, Mapping))
            and not options
            and not bind_arguments
            and not kw
            and not session.execution_options
            and not (session.autoflush and not session._is_clean())
            and not session.binds  # a table or mapper bound elsewhere: get_bind decides
            and all(listener is _refuse_lazy_load for listener in session.dispatch.do_orm_execute)
        )


def _core_read(statement: Any) -> bool:
    kind = type(statement)
    return (kind is Select or kind is TextClause) and not statement._propagate_attrs


def _takes_short_way(connection: Connection, statement: Any) -> bool:
    if not _core_read(statement):
        return False
    dialect = connection.dialect
    return (
        _SHORT_WAY_OPEN
        and dialect.driver == "asyncpg"
        and not statement._execution_options
        and not connection._execution_options
        and not _sees_statements(connection)
        and not connection._echo
        # a driver-call listener other than lazy begin's, which the short way runs itself
        and len(dialect.dispatch.do_execute) == (lazy_begin_of(dialect) is not None)
    )


def _sees_statements(connection: Connection) -> bool:
    """Whether a listener waits for the statements *connection* runs.

    Not ``Engine._has_events`` alone: a listener of any event on the ``Engine``
    class (``engine_connect``, say) sets it for every engine, for good.
    """
    if not (connection._has_events or connection.engine._has_events):
        return False  # no listener at all, the common case: the cheap answer
    return any(
        dispatch.before_execute
        or dispatch.after_execute
        or dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
        for dispatch in (connection.dispatch, connection.engine.dispatch)
    )


def _shape(compiled: SQLCompiler) -> _Shape | None:
    try:
        return _shapes[compiled]
    except KeyError:
        pass
    shape: _Shape | None = None
    if (
        compiled.positional
        and compiled.positiontup is not None
        and not compiled.literal_execute_params
        and not compiled.post_compile_params
        and not compiled.schema_translate_map
    ):
        candidate = _Shape(compiled)
        if len(set(candidate.keys)) == len(candidate.keys):  # else ambiguous keys: SQLAlchemy's
            shape = candidate
    _shapes[compiled] = shape
    return shape


async def _run_direct(
    connection: AsyncConnection, statement: Any, parameters: Mapping[str, Any] | None
) -> DirectResult | None:
    """Run *statement* on the driver; None, having run nothing, where SQLAlchemy must."""
    sync = connection.sync_connection
    if sync is None or sync.closed or sync.invalidated or not _takes_short_way(sync, statement):
        return None
    bound = _bind(sync, statement, parameters)
    if bound is None:
        return None
    shape, sql, arguments = bound
    if not sync.in_transaction():
        sync.begin()  # as Connection.execute autobegins; the driver's BEGIN comes below
    attributes, records, status = await _fetch(sync, sql, arguments)
    if attributes:
        result = DirectResult(_metadata(shape, attributes, sync.dialect), iter(records))
    else:  # a statement without rows: its result raises as a cursor result's does
        result = DirectResult(_NO_RESULT_METADATA, iter(()))
        result.returns_rows = False
    counted = _ROWCOUNT.match(status or "")
    result.rowcount = int(counted.group(1)) if counted else -1
    return result


def _bind(
    sync: Connection, statement: Any, parameters: Mapping[str, Any] | None
) -> tuple[_Shape, str, list[Any]] | None:
    """The statement compiled as ``Connection.execute`` compiles it, and its
    arguments bound as it binds them; None for a statement it must run."""
    dialect = sync.dialect
    compiled, extracted, collected, _ = statement._compile_w_cache(
        dialect=dialect,
        compiled_cache=sync.engine._compiled_cache,
        column_keys=sorted(parameters) if parameters else [],
        for_executemany=False,
        schema_translate_map=None,
        linting=dialect.compiler_linting | compiler.WARN_LINTING,
    )
    shape = _shape(compiled)
    if shape is None:
        return None
    values = compiled.construct_params(
        parameters,
        escape_names=False,
        extracted_parameters=extracted,
        _collected_params=collected,
    )
    processors = compiled._bind_processors
    assert compiled.positiontup is not None  # checked by _shape
    arguments = [
        processors[name](values[name]) if name in processors else values[name]
        for name in compiled.positiontup
    ]
    return shape, compiled.string, arguments


async def _fetch(sync: Connection, sql: str, arguments: list[Any]) -> tuple[Any, list[Any], str]:
    """Run *sql* as SQLAlchemy's asyncpg cursor runs it: the column attributes, the
    rows and the status; a driver error is raised as ``Connection.execute`` raises it."""
    dialect = sync.dialect
    adapter: Any = sync.connection.dbapi_connection
    lazy_begin = lazy_begin_of(dialect)
    async with adapter._execute_mutex:
        if lazy_begin is not None:
            lazy_begin(sql, sync, EMPTY_DICT)  # may put the connection in autocommit
        try:
            if adapter._transaction is None:
                await adapter._start_transaction()
            prepared, attributes = await adapter._prepare(
                sql,
                dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
            )
            records = await prepared.fetch(*arguments)
        except Exception as error:
            await greenlet_spawn(_raise_as_sqlalchemy, sync, adapter, error, sql, arguments)
            raise  # not reached: the line above raises
    return attributes, records, prepared.get_statusmsg()


def _metadata(shape: _Shape, attributes: Sequence[Any], dialect: Any) -> SimpleResultMetaData:
    oids = tuple(attribute.type.oid for attribute in attributes)
    metadata = shape.metadata.get(oids)
    if metadata is not None:
        return metadata
    if len(shape.keys) == len(attributes):  # a SELECT: its columns, in order
        keys, extra, types = shape.keys, shape.extra, shape.types
    else:  # text(): the columns the server names, typed by nothing, as SQLAlchemy does
        keys = [attribute.name for attribute in attributes]
        extra = [(key,) for key in keys]
        types = [sqltypes.NULLTYPE] * len(keys)
    processors = [
        type_._cached_result_processor(dialect, oid) for type_, oid in zip(types, oids, strict=True)
    ]
    metadata = SimpleResultMetaData(
        keys, extra=extra, _processors=processors if any(processors) else None
    )
    shape.metadata[oids] = metadata
    return metadata


def _raise_as_sqlalchemy(
    sync: Connection, adapter: Any, error: Exception, sql: str, arguments: list[Any]
) -> None:
    """Raise *error* as ``Connection.execute`` would have raised it."""
    try:
        adapter._handle_exception(error)  # the driver's error as the adapter's DBAPI error
    except Exception as translated:
        sync._handle_dbapi_exception(translated, sql, tuple(arguments), None, None)
