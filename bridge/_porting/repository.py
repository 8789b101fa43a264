"""Repository operations written once and run by a sync or an async session.

An *operation* is a generator that yields what it needs done and receives the
result::

    def product_by_id(product_id: int) -> Operation[Product | None]:
        result = yield from execute(select(Product).where(Product.id == product_id))
        return result.scalar_one_or_none()

It builds statements and decides what to do with their results, but performs no
I/O itself. :func:`run_sync` drives it with a :class:`~sqlalchemy.orm.Session`
(the Flask side), :func:`run_async` with an
:class:`~sqlalchemy.ext.asyncio.AsyncSession` (the FastAPI side), so the logic of
a repository method exists once.

What an operation may yield:

* any SQLAlchemy executable (``select``, ``insert``, ``update``, ``delete``,
  ``text``): it receives the :class:`~sqlalchemy.engine.Result`;
* :class:`Add` with ORM objects: they are added to the session; receives ``None``;
* :class:`Flush`: pending changes are flushed (ids get assigned); receives ``None``;
* :class:`Delete` with ORM objects: they are marked deleted; receives ``None``.

A bare ``yield`` receives ``Any``: a generator has one send type for all its
yields. So run statements through the sub-operations :func:`execute`,
:func:`scalar` and :func:`scalars` with ``yield from``; they are typed as
``Session.execute``, ``Session.scalar`` and ``Session.scalars`` are, so the
operation gets a ``Result[Product]`` or a ``Product | None`` that mypy checks.

An error raised by the database is thrown into the operation at the ``yield``
that caused it, so an operation can translate it (for example an
``IntegrityError`` into a domain conflict).

Relationships that are not loaded by the statement must not be touched: lazy
loading does I/O behind the operation's back and fails on the async side.
Declare relationships with ``lazy="raise"`` and load them with
``selectinload``, so that both sides fail alike when one is forgotten.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, TypeVarTuple, cast, overload

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, scoped_session

if TYPE_CHECKING:
    from sqlalchemy import CursorResult, Result, ScalarResult
    from sqlalchemy.sql.dml import UpdateBase
    from sqlalchemy.sql.selectable import TypedReturnsRows

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class Add:
    """Add ORM objects to the session."""

    objects: tuple[object, ...]

    def __init__(self, *objects: object) -> None:
        object.__setattr__(self, "objects", objects)


@dataclass(frozen=True)
class Delete:
    """Mark ORM objects as deleted."""

    objects: tuple[object, ...]

    def __init__(self, *objects: object) -> None:
        object.__setattr__(self, "objects", objects)


@dataclass(frozen=True)
class Flush:
    """Flush pending changes, so that generated keys are known."""


Step: TypeAlias = Executable | Add | Delete | Flush
Operation: TypeAlias = Generator[Step, Any, T]


# Typed as Session.execute, Session.scalar and Session.scalars are in SQLAlchemy
# 2.1, with two differences. An overload for INSERT, UPDATE and DELETE without
# RETURNING, whose result both sessions give as a CursorResult, types rowcount.
# Session.scalar's first overload (TypedReturnsRows[Never] -> Any) is left out:
# mypy picks it for every statement, so session.scalar(select(User.id)) is Any.
@overload
def execute(statement: TypedReturnsRows[*Ts]) -> Operation[Result[*Ts]]: ...
@overload
def execute(statement: UpdateBase) -> Operation[CursorResult[*tuple[Any, ...]]]: ...
@overload
def execute(statement: Executable) -> Operation[Result[*tuple[Any, ...]]]: ...


def execute(statement: Executable) -> Operation[Result[*tuple[Any, ...]]]:
    """Run *statement* and receive its ``Result``, typed by the statement's columns.

    ``result = yield from execute(select(Product))`` gives a ``Result[Product]``.
    """
    result = yield statement
    return cast("Result[*tuple[Any, ...]]", result)


@overload
def scalar(statement: TypedReturnsRows[T]) -> Operation[T | None]: ...
@overload
def scalar(statement: Executable) -> Operation[Any]: ...


def scalar(statement: Executable) -> Operation[Any]:
    """The first column of the first row, or ``None`` without rows, as ``Session.scalar``."""
    result = yield from execute(statement)
    return result.scalar()


@overload
def scalars(statement: TypedReturnsRows[T]) -> Operation[ScalarResult[T]]: ...
@overload
def scalars(statement: Executable) -> Operation[ScalarResult[Any]]: ...


def scalars(statement: Executable) -> Operation[ScalarResult[Any]]:
    """The first column of every row, as ``Session.scalars``: ``.all()``, ``.one()``, ..."""
    result = yield from execute(statement)
    return result.scalars()


def run_sync(session: Session | scoped_session[Any], operation: Operation[T]) -> T:
    """Run *operation* to completion on a sync session and return its result.

    *session* may be Flask-SQLAlchemy's ``db.session`` (a ``scoped_session``).
    """
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = operation.send(value) if error is None else operation.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                value, error = _sync_step(session, step), None
            except Exception as exc:
                value, error = None, exc
    finally:
        operation.close()


async def run_async(session: AsyncSession, operation: Operation[T]) -> T:
    """Run *operation* to completion on an async session and return its result."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = operation.send(value) if error is None else operation.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                value, error = await _async_step(session, step), None
            except Exception as exc:
                value, error = None, exc
    finally:
        operation.close()


def _sync_step(session: Session | scoped_session[Any], step: Step) -> Any:
    if isinstance(step, Add):
        session.add_all(step.objects)
        return None
    if isinstance(step, Delete):
        for obj in step.objects:
            session.delete(obj)
        return None
    if isinstance(step, Flush):
        session.flush()
        return None
    return session.execute(_executable(step))


async def _async_step(session: AsyncSession, step: Step) -> Any:
    if isinstance(step, Add):
        session.add_all(step.objects)
        return None
    if isinstance(step, Delete):
        for obj in step.objects:
            await session.delete(obj)
        return None
    if isinstance(step, Flush):
        await session.flush()
        return None
    return await session.execute(_executable(step))


def _executable(step: object) -> Executable:
    if not isinstance(step, Executable):
        raise TypeError(
            f"an operation yielded {step!r}: yield a SQLAlchemy statement, Add, Delete or Flush"
        )
    return step
