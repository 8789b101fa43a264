"""Lazy loads on the async side: refused with the option that replaces them.

A legacy app's models keep their lazy relationships (``lazy="select"``, the
default): its views load them on first access. On the async side the same
access runs outside the greenlet SQLAlchemy needs for IO and fails with
``MissingGreenlet``, an error that names neither the relationship nor the fix.

The sessions of :class:`~bridge.AsyncDatabase` are made of :class:`PortSession`,
which refuses such a lazy load before it starts, naming the relationship and
the loader option to add. The models stay as they are, so the Flask side keeps
lazy-loading. A lazy load that runs inside a greenlet (``await
obj.awaitable_attrs.rel`` with :class:`sqlalchemy.ext.asyncio.AsyncAttrs`,
``session.run_sync``, ``lazy="immediate"``) can do its IO and is let through.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.util.concurrency import in_greenlet

from bridge._exceptions import AsyncDatabaseError


class PortSession(Session):
    """The sync session inside each ``AsyncSession`` of the ports."""


@event.listens_for(PortSession, "do_orm_execute")
def _refuse_lazy_load(state: ORMExecuteState) -> None:
    # lazy_loaded_from raises for an UPDATE or DELETE: they have no load options.
    if not state.is_select or state.lazy_loaded_from is None or in_greenlet():
        return
    raise AsyncDatabaseError(lazy_load_message(state.loader_strategy_path))


def lazy_load_message(path: Any) -> str:
    """What to do instead of lazy-loading the relationship at the end of *path*."""
    relationship: Any = path[-1] if path is not None and len(path) else None
    owner = getattr(getattr(relationship, "parent", None), "class_", None)
    if relationship is None or owner is None:  # not a relationship path: say what we can
        return (
            "a port cannot load a relationship lazily: load it in the statement with "
            "selectinload() or joinedload()"
        )
    key = relationship.key
    name = f"{owner.__name__}.{key}"
    return (
        f"{name} is not loaded and a port cannot load it lazily: add "
        f".options(selectinload({name})) to the statement that loads the {owner.__name__}, "
        f"or await obj.awaitable_attrs.{key} on a model with sqlalchemy.ext.asyncio.AsyncAttrs"
    )
