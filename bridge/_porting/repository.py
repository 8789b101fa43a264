"""Repository operations written once and run by a sync or an async session.

An *operation* is a generator that yields what it needs done and receives the
result::

    def product_by_id(product_id: int) -> Operation[Product | None]:
        result = yield select(Product).where(Product.id == product_id)
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
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, scoped_session

T = TypeVar("T")


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
