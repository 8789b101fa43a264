"""Flask-SQLAlchemy's ``db.paginate`` as a repository operation.

A ported list route must page exactly like the legacy one: the same defaults,
the same clamping to ``max_per_page`` and the same 404 for a page past the end.
:func:`page_args` reads ``page`` and ``per_page`` from query arguments the way
Flask-SQLAlchemy does, and :func:`paginate` runs the two statements it runs,
on either side (see :mod:`bridge._porting.repository`).

One difference: a page so far out that its ``OFFSET`` (or a ``per_page`` so
large that its ``LIMIT``) does not fit in 64 bits is a page past the end here,
as it is in any table, where ``db.paginate`` hands it to the database, which
refuses it (a 500). Read the arguments with :func:`page_args` on the legacy
side too (``db.paginate(select, page=page, per_page=per_page)``), and both
sides answer 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import ceil
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import lazyload

from bridge._exceptions import PageNotFound
from bridge._porting.repository import Operation

T = TypeVar("T")

DEFAULT_PER_PAGE = 20

MAX_ROWS = 2**63 - 1
"""The largest ``LIMIT`` or ``OFFSET`` a database takes: a signed 64-bit integer
(PostgreSQL's ``bigint``, SQLite's ``INTEGER``)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results, with the attributes of Flask-SQLAlchemy's ``Pagination``."""

    page: int
    per_page: int
    total: int | None
    items: list[T] = field(default_factory=list)

    @property
    def pages(self) -> int:
        if not self.total:
            return 0
        return ceil(self.total / self.per_page)

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        return max(self.first, self.first + len(self.items) - 1)

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> int | None:
        return self.page - 1 if self.has_prev else None

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def next_num(self) -> int | None:
        return self.page + 1 if self.has_next else None


def page_args(
    args: Mapping[str, str],
    *,
    page: int | None = None,
    per_page: int | None = None,
    max_per_page: int | None = None,
    error_out: bool = True,
) -> tuple[int, int]:
    """Return ``(page, per_page)`` from query *args*, as Flask-SQLAlchemy reads them.

    *args* may be Starlette's ``request.query_params``: of a repeated argument
    the first value counts, as in Werkzeug. ``max_per_page`` is not set by
    default, as in ``db.paginate``.

    Raises :class:`PageNotFound` where Flask-SQLAlchemy would abort with 404:
    a value that is not an integer, or one below 1 (unless *error_out* is false,
    in which case the default is used instead). A page whose rows start past
    :data:`MAX_ROWS` is past the end of any table: :class:`PageNotFound` too,
    or the defaults without *error_out*.
    """
    if page is None:
        page = _int_arg(args, "page", 1, error_out)
    if per_page is None:
        per_page = _int_arg(args, "per_page", DEFAULT_PER_PAGE, error_out)
    if max_per_page is not None:
        per_page = min(per_page, max_per_page)
    if page < 1:
        if error_out:
            raise PageNotFound(f"page must be 1 or more, got {page}")
        page = 1
    if per_page < 1:
        if error_out:
            raise PageNotFound(f"per_page must be 1 or more, got {per_page}")
        per_page = DEFAULT_PER_PAGE
    if _out_of_range(page, per_page):
        if error_out:
            raise PageNotFound("the page starts past the end of any table: OFFSET > 2**63 - 1")
        page, per_page = 1, DEFAULT_PER_PAGE
    return page, per_page


def _out_of_range(page: int, per_page: int) -> bool:
    """Whether the page's ``LIMIT`` or ``OFFSET`` is more than a database takes."""
    return per_page > MAX_ROWS or (page - 1) * per_page > MAX_ROWS


def _int_arg(args: Mapping[str, str], name: str, default: int, error_out: bool) -> int:
    getlist = getattr(args, "getlist", None)
    values = getlist(name) if getlist is not None else [args[name]] if name in args else []
    try:
        return int(values[0]) if values else default
    except (TypeError, ValueError):
        if error_out:  # int()'s "invalid literal" says no more than the message
            raise PageNotFound(f"{name} must be an integer") from None
        return default


def paginate(
    statement: Select[Any],
    *,
    page: int,
    per_page: int,
    error_out: bool = True,
    count: bool = True,
) -> Operation[Page[Any]]:
    """Run *statement* for one page, and count all its rows, as ``db.paginate`` does.

    A page that starts past :data:`MAX_ROWS` has no rows, and the database is
    not asked for them; a ``LIMIT`` past it is :data:`MAX_ROWS`.
    """
    items: list[Any] = []
    offset = (page - 1) * per_page
    if offset <= MAX_ROWS:
        limited = statement.limit(min(per_page, MAX_ROWS)).offset(offset)
        items = list((yield limited).unique().scalars())
    if not items and page != 1 and error_out:
        raise PageNotFound(f"page {page} is past the last page")
    total = None
    if count:
        counted = statement.options(lazyload("*")).order_by(None).subquery()
        total = (yield select(func.count()).select_from(counted)).scalar()
    return Page(page=page, per_page=per_page, total=total, items=items)
