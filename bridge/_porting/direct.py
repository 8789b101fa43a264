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
  same bind processors (an error there is the same ``StatementError``);
* the transaction is begun the way SQLAlchemy's asyncpg adapter begins it,
  under the adapter's lock, and the statement prepared through the adapter's
  own prepared-statement cache;
* the rows come back as a :class:`~sqlalchemy.engine.Result` whose values went
  through the same result processors (an ``Enum`` column gives the enum, a
  ``Numeric`` a ``Decimal``), with the same keys and the same precedence
  among them, ``rowcount`` included, and a missing key raising
  ``NoSuchColumnError``;
* an error is handled as ``Connection.execute`` handles it: the same
  ``sqlalchemy.exc`` class, a connection the server dropped or a cancelled
  query left invalidated, and a plan gone stale after a schema change
  prepared again next time.

Everything else goes through SQLAlchemy as before: ``INSERT``, ``UPDATE`` and
``DELETE`` (their defaults and returned keys) and ``text()`` that is not a
plain ``SELECT``, ORM statements, a ``SELECT`` whose columns a cursor result
would match by name (``text("id")``, ``literal_column``), parameters that
expand (``in_()``), several parameter sets, execution options on the
statement or the connection, a transaction that awaits its rollback, an
engine or connection listening to the statements it runs or their errors
(logging, tracing), echo, a schema translate map, every driver but asyncpg,
and every SQLAlchemy but 2.1, whose internals this follows.
``DATABASE_LAZY_BEGIN`` applies on the short way too: it decides, as for any
statement, whether the read sends ``BEGIN``. The tests run each read both
ways and compare what comes back (``tests/bridge/porting/test_direct.py``).
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
from sqlalchemy.exc import NoSuchColumnError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import compiler, sqltypes
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import EMPTY_DICT, greenlet_spawn, string_or_unprintable

from bridge._porting.lazy_begin import _PLAIN_SELECT, lazy_begin_of
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


class _Metadata(SimpleResultMetaData):
    """Result metadata whose missing keys raise as a cursor result's do."""

    def _key_fallback(self, key: Any, err: Exception | None, raiseerr: bool = True) -> Any:
        if not raiseerr:
            return None
        raise NoSuchColumnError(
            f"Could not locate column in row for column '{string_or_unprintable(key)}'"
        ) from err


class _Shape:
    """What a compiled ``SELECT`` gives for each column: its key, its other
    keys (the rendered name, the column objects) and its type.

    A key that another column has as its own is left out of a column's other
    keys: a cursor result gives each column's own key precedence.
    """

    __slots__ = ("extra", "keys", "metadata", "types")

    def __init__(self, compiled: SQLCompiler) -> None:
        columns = compiled._result_columns
        self.keys = [column.keyname for column in columns]
        own = set(self.keys)
        self.extra = [
            tuple(
                key
                for key in (column.name, *column.objects)
                if not (isinstance(key, str) and key in own and key != column.keyname)
            )
            for column in columns
        ]
        self.types = [column.type for column in columns]
        # Per column names and type codes from the server: text() names its columns there.
        self.metadata: dict[tuple[tuple[str, ...], tuple[int, ...]], _Metadata] = {}

    def unambiguous(self) -> bool:
        """Whether no key names two columns (a cursor result refuses such a key)."""
        keys = [*self.keys, *(key for extra in self.extra for key in extra)]
        seen: set[Any] = set()
        for key in keys:
            if key in seen and not (isinstance(key, str) and key in self.keys):
                return False
            seen.add(key)
        return len(set(self.keys)) == len(self.keys)


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
            session.bind is not None
            and _short_way_open(session.bind.dialect)  # else not worth a connection() call
            and (params is None or isinstance(params, Mapping))
            and not options
            and not bind_arguments
            and not kw
            and not session.execution_options
            and not (session.autoflush and not session._is_clean())
            and not session.binds  # a table or mapper bound elsewhere: get_bind decides
            and all(listener is _refuse_lazy_load for listener in session.dispatch.do_orm_execute)
        )


def _short_way_open(dialect: Any) -> bool:
    """Whether the short way can run on *dialect*: asyncpg, on SQLAlchemy 2.1."""
    return _SHORT_WAY_OPEN and dialect.driver == "asyncpg"


def _core_read(statement: Any) -> bool:
    kind = type(statement)
    return (kind is Select or kind is TextClause) and not statement._propagate_attrs


def _takes_short_way(connection: Connection, statement: Any) -> bool:
    if not _core_read(statement):
        return False
    dialect = connection.dialect
    return (
        _short_way_open(dialect)
        and not statement._execution_options
        and not connection._execution_options
        and not _sees_statements(connection)
        and not connection._echo
        and not dialect.dispatch.handle_error  # its listeners get the execution context
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
        and _matched_by_position(compiled)
    ):
        candidate = _Shape(compiled)
        if candidate.unambiguous():
            shape = candidate
    _shapes[compiled] = shape
    return shape


def _matched_by_position(compiled: SQLCompiler) -> bool:
    """Whether a cursor result would match the server's columns to the
    statement's by position, or, for ``text()``, name them all from the server.

    A ``SELECT`` with textual columns (``text("id")``, ``literal_column("*")``,
    a literal column that may hold commas) is matched by name; a ``text()``
    statement other than a plain ``SELECT`` may be DML, whose cursor result
    has more than rows.
    """
    if not compiled._result_columns:
        return bool(_PLAIN_SELECT.match(compiled.string))
    return (
        compiled._ordered_columns
        and not compiled._ad_hoc_textual
        and not compiled._textual_ordered_columns
        and not any(
            getattr(element, "is_literal", False)
            for column in compiled._result_columns
            for element in column.objects
        )
    )


async def _run_direct(
    connection: AsyncConnection, statement: Any, parameters: Mapping[str, Any] | None
) -> DirectResult | None:
    """Run *statement* on the driver; None, having run nothing, where SQLAlchemy must."""
    sync = connection.sync_connection
    if sync is None or sync.closed or sync.invalidated or not _takes_short_way(sync, statement):
        return None
    if _transaction_refused(sync):
        return None  # Connection.execute raises the error that says why
    compiled, extracted, collected = _compile(sync, statement, parameters)
    shape = _shape(compiled)
    if shape is None:
        return None
    if sync._transaction is None:
        sync.begin()  # as Connection.execute autobegins; the driver's BEGIN comes below
    try:
        sql, arguments = _bind(compiled, extracted, collected, parameters)
    except BaseException as error:  # as Connection.execute wraps it: a StatementError
        await greenlet_spawn(
            sync._handle_dbapi_exception, error, compiled.string, [parameters or {}], None, None
        )
        raise  # not reached: the line above raises
    attributes, records, status = await _fetch(sync, sql, arguments)
    if attributes:
        result = DirectResult(_metadata(shape, attributes, sync.dialect), iter(records))
    else:  # a statement without rows: its result raises as a cursor result's does
        result = DirectResult(_NO_RESULT_METADATA, iter(()))
        result.returns_rows = False
    counted = _ROWCOUNT.match(status or "")
    result.rowcount = int(counted.group(1)) if counted else -1
    return result


def _transaction_refused(sync: Connection) -> bool:
    """Whether ``Connection.execute`` would refuse to run a statement on *sync*:
    its transaction or savepoint failed and awaits a rollback, or a transaction
    block must check its state first."""
    root, nested = sync._transaction, sync._nested_transaction
    return bool(
        (root is not None and not root.is_active)
        or (nested is not None and not nested.is_active)
        or sync._trans_context_manager
    )


def _compile(
    sync: Connection, statement: Any, parameters: Mapping[str, Any] | None
) -> tuple[SQLCompiler, Any, Any]:
    """The statement compiled as ``Connection.execute`` compiles it, through
    the engine's compiled cache: the compiled form, and the values it extracted."""
    dialect = sync.dialect
    compiled, extracted, collected, _ = statement._compile_w_cache(
        dialect=dialect,
        compiled_cache=sync.engine._compiled_cache,
        column_keys=sorted(parameters) if parameters else [],
        for_executemany=False,
        schema_translate_map=None,
        linting=dialect.compiler_linting | compiler.WARN_LINTING,
    )
    return compiled, extracted, collected


def _bind(
    compiled: SQLCompiler, extracted: Any, collected: Any, parameters: Mapping[str, Any] | None
) -> tuple[str, list[Any]]:
    """The statement's SQL and its arguments, bound as ``Connection.execute`` binds them."""
    values = compiled.construct_params(
        parameters,
        escape_names=False,
        extracted_parameters=extracted,
        _collected_params=collected,
    )
    processors: Mapping[str, Any] = compiled._bind_processors
    assert compiled.positiontup is not None  # checked by _shape
    arguments = [
        processors[name](values[name]) if name in processors else values[name]
        for name in compiled.positiontup
    ]
    return compiled.string, arguments


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
        except BaseException as error:  # a cancellation too: it invalidates the connection
            await greenlet_spawn(_raise_as_sqlalchemy, sync, adapter, error, sql, arguments)
            raise  # not reached: the line above raises
    return attributes, records, prepared.get_statusmsg()


def _metadata(shape: _Shape, attributes: Sequence[Any], dialect: Any) -> _Metadata:
    names = tuple(attribute.name for attribute in attributes)
    oids = tuple(attribute.type.oid for attribute in attributes)
    metadata = shape.metadata.get((names, oids))
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
    metadata = _Metadata(keys, extra=extra, _processors=processors if any(processors) else None)
    shape.metadata[names, oids] = metadata
    return metadata


def _raise_as_sqlalchemy(
    sync: Connection, adapter: Any, error: BaseException, sql: str, arguments: list[Any]
) -> None:
    """Raise *error* as ``Connection.execute`` would have raised it."""
    try:
        adapter._handle_exception(error)  # the driver's error as the adapter's DBAPI error
    except BaseException as translated:
        dbapi = sync.dialect.loaded_dbapi
        if isinstance(translated, (dbapi.InvalidCachedStatementError, dbapi.InternalServerError)):
            # A plan gone stale after a schema change: prepare again next time,
            # as SQLAlchemy's asyncpg execution context has it.
            sync.dialect._invalidate_schema_cache()  # type: ignore[attr-defined]
        sync._handle_dbapi_exception(translated, sql, tuple(arguments), None, None)
