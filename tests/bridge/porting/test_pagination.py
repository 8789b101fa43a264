from __future__ import annotations

from typing import Any

import pytest
from flask import request
from sqlalchemy import Engine, select
from starlette.datastructures import QueryParams
from werkzeug.exceptions import NotFound

from bridge._exceptions import PageNotFound
from bridge._porting.pagination import Page, page_args, paginate
from tests.bridge.apps import Item, insert_items
from tests.bridge.conftest import FlaskDB, Runner

ITEM_COUNT = 23
ITEMS = select(Item).order_by(Item.id)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", (1, 20)),
        ("page=3", (3, 20)),
        ("per_page=5", (1, 5)),
        ("page=2&per_page=7", (2, 7)),
        ("page=%202%20", (2, 20)),
        ("per_page=100", (1, 100)),
        ("other=1", (1, 20)),
    ],
)
def test_page_args_reads_query_args(query: str, expected: tuple[int, int]) -> None:
    assert page_args(QueryParams(query)) == expected


@pytest.mark.parametrize(
    "query", ["page=abc", "page=", "page=1.5", "per_page=x", "page=0", "page=-2", "per_page=0"]
)
def test_page_args_bad_values_are_page_not_found(query: str) -> None:
    with pytest.raises(PageNotFound):
        page_args(QueryParams(query))


@pytest.mark.parametrize(
    ("query", "expected"),
    [("page=abc", (1, 20)), ("page=0", (1, 20)), ("per_page=-1", (1, 20)), ("per_page=x", (1, 20))],
)
def test_page_args_without_error_out_falls_back_to_defaults(
    query: str, expected: tuple[int, int]
) -> None:
    assert page_args(QueryParams(query), error_out=False) == expected


def test_page_args_explicit_values_win_over_query_args() -> None:
    assert page_args(QueryParams("page=9&per_page=9"), page=2, per_page=3) == (2, 3)


def test_page_args_clamps_to_max_per_page() -> None:
    assert page_args(QueryParams("per_page=50"), max_per_page=10) == (1, 10)
    assert page_args(QueryParams("per_page=500"), max_per_page=None) == (1, 500)


def test_page_args_takes_the_first_of_repeated_args() -> None:
    # Werkzeug's request.args.get gives the first value; QueryParams.get the last.
    assert page_args(QueryParams("page=2&page=3&per_page=5&per_page=9")) == (2, 5)


def test_page_args_does_not_clamp_by_default() -> None:
    # db.paginate's max_per_page defaults to None: per_page is not capped.
    assert page_args(QueryParams("per_page=150")) == (1, 150)


def test_page_properties() -> None:
    middle = Page(page=2, per_page=10, total=25, items=list(range(10)))
    last = Page(page=3, per_page=10, total=25, items=list(range(5)))
    empty: Page[int] = Page(page=1, per_page=10, total=0, items=[])

    assert (middle.pages, middle.first, middle.last) == (3, 11, 20)
    assert (middle.has_prev, middle.prev_num) == (True, 1)
    assert (middle.has_next, middle.next_num) == (True, 3)
    assert (last.first, last.last, last.has_next, last.next_num) == (21, 25, False, None)
    assert (empty.pages, empty.first, empty.last) == (0, 0, 0)
    assert (empty.has_prev, empty.prev_num) == (False, None)
    assert Page(page=1, per_page=10, total=None).pages == 0


@pytest.mark.anyio
async def test_paginate_pages_through_the_rows(run: Runner, tables: Engine) -> None:
    insert_items(tables, *(f"item-{n:02}" for n in range(ITEM_COUNT)))

    page = await run(paginate(ITEMS, page=3, per_page=10))

    assert [item.name for item in page.items] == [f"item-{n:02}" for n in range(20, 23)]
    assert (page.page, page.per_page, page.total, page.pages) == (3, 10, 23, 3)
    assert (page.has_prev, page.prev_num, page.has_next, page.next_num) == (True, 2, False, None)
    assert (page.first, page.last) == (21, 23)


@pytest.mark.anyio
async def test_paginate_past_the_end_is_page_not_found(run: Runner, tables: Engine) -> None:
    insert_items(tables, "only")

    with pytest.raises(PageNotFound):
        await run(paginate(ITEMS, page=2, per_page=10))
    assert (await run(paginate(ITEMS, page=2, per_page=10, error_out=False))).items == []


@pytest.mark.anyio
async def test_paginate_first_page_of_nothing_is_empty(run: Runner, tables: Engine) -> None:
    page = await run(paginate(ITEMS, page=1, per_page=10))

    assert (page.items, page.total, page.pages, page.has_next) == ([], 0, 0, False)


@pytest.mark.anyio
async def test_paginate_without_count(run: Runner, tables: Engine) -> None:
    insert_items(tables, "a", "b")

    page = await run(paginate(ITEMS, page=1, per_page=1, count=False))

    assert page.total is None
    assert [item.name for item in page.items] == ["a"]


@pytest.fixture
def seeded(tables: Engine) -> None:
    insert_items(tables, *(f"item-{n:02}" for n in range(ITEM_COUNT)))


# Query strings and keyword arguments of db.paginate, edge cases included.
CASES = [
    pytest.param("", {}, id="defaults"),
    pytest.param("page=2", {}, id="page-2"),
    pytest.param("page=2&per_page=5", {}, id="page-and-size"),
    pytest.param("page=5&per_page=5", {}, id="last-partial-page"),
    pytest.param("page=6&per_page=5", {}, id="past-the-end"),
    pytest.param("page=6&per_page=5", {"error_out": False}, id="past-the-end-no-error"),
    pytest.param("page=abc", {}, id="page-not-int"),
    pytest.param("page=abc", {"error_out": False}, id="page-not-int-no-error"),
    pytest.param("page=0", {}, id="page-zero"),
    pytest.param("page=-1", {"error_out": False}, id="page-negative-no-error"),
    pytest.param("per_page=0", {}, id="size-zero"),
    pytest.param("per_page=0", {"error_out": False}, id="size-zero-no-error"),
    pytest.param("per_page=15", {"max_per_page": 4}, id="clamped"),
    pytest.param("per_page=15", {"page": 3, "per_page": 2}, id="explicit-args"),
    pytest.param("page=1&per_page=3", {"count": False}, id="no-count"),
    pytest.param("per_page=150", {}, id="large-page-default-max"),
    pytest.param("page=2&page=1&per_page=5", {}, id="repeated-page-arg"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("query", "kwargs"), CASES)
@pytest.mark.usefixtures("seeded")
async def test_same_pages_as_flask_sqlalchemy(
    flask_db: FlaskDB, run: Runner, query: str, kwargs: dict[str, Any]
) -> None:
    legacy = flask_paginate(flask_db, query, kwargs)

    arg_keys = ("page", "per_page", "max_per_page", "error_out")
    args_kwargs = {key: value for key, value in kwargs.items() if key in arg_keys}
    try:
        page, per_page = page_args(QueryParams(query), **args_kwargs)
        statement = paginate(
            ITEMS,
            page=page,
            per_page=per_page,
            error_out=kwargs.get("error_out", True),
            count=kwargs.get("count", True),
        )
        ported: tuple[Any, ...] | str = summary(await run(statement))
    except PageNotFound:
        ported = "404"

    assert ported == legacy


def flask_paginate(flask_db: FlaskDB, query: str, kwargs: dict[str, Any]) -> tuple[Any, ...] | str:
    app, db = flask_db
    with app.test_request_context(query_string=query):
        try:
            return summary(db.paginate(ITEMS, **kwargs))
        except NotFound:
            return "404"


def summary(page: Any) -> tuple[Any, ...]:
    return (
        page.page,
        page.per_page,
        page.total,
        [item.name for item in page.items],
        page.pages,
        page.has_prev,
        page.prev_num,
        page.has_next,
        page.next_num,
        page.first,
        page.last,
    )


# A page whose OFFSET (or a per_page whose LIMIT) does not fit in a signed
# 64-bit integer: PostgreSQL and SQLite refuse it, a 500 where nothing checks.
OUT_OF_RANGE = [
    pytest.param(f"page={2**63}", id="page-2**63"),
    pytest.param(f"page={2**62}&per_page=3", id="offset-over-2**63"),
    pytest.param(f"page=3&per_page={2**62}", id="offset-2**63"),
    pytest.param(f"per_page={2**64}", id="limit-over-2**63"),
    pytest.param("page=" + "9" * 4000, id="4000-digits"),
]


@pytest.mark.parametrize("query", OUT_OF_RANGE)
def test_page_args_out_of_the_databases_range_is_page_not_found(query: str) -> None:
    with pytest.raises(PageNotFound):
        page_args(QueryParams(query))


@pytest.mark.parametrize("query", OUT_OF_RANGE)
def test_page_args_out_of_range_without_error_out_falls_back_to_defaults(query: str) -> None:
    assert page_args(QueryParams(query), error_out=False) == (1, 20)


def test_page_args_last_page_in_range_is_kept() -> None:
    assert page_args(QueryParams(f"page=2&per_page={2**63 - 2}")) == (2, 2**63 - 2)


@pytest.mark.anyio
@pytest.mark.usefixtures("seeded")
async def test_paginate_past_the_databases_range_asks_the_database_nothing(
    run: Runner,
) -> None:
    with pytest.raises(PageNotFound):
        await run(paginate(ITEMS, page=2**62, per_page=10))
    page = await run(paginate(ITEMS, page=2**62, per_page=10, error_out=False))
    assert (page.items, page.total) == ([], ITEM_COUNT)


@pytest.mark.anyio
@pytest.mark.usefixtures("seeded")
async def test_paginate_limit_past_the_databases_range_is_every_row(run: Runner) -> None:
    page = await run(paginate(ITEMS, page=1, per_page=2**64))

    assert (len(page.items), page.total, page.pages) == (ITEM_COUNT, ITEM_COUNT, 1)


@pytest.mark.parametrize("query", OUT_OF_RANGE)
@pytest.mark.usefixtures("seeded")
def test_page_args_make_db_paginate_answer_404_where_it_overflowed(
    flask_db: FlaskDB, query: str
) -> None:
    # db.paginate reading the arguments itself hands the overflowing OFFSET to
    # the database; read with page_args, the legacy side answers 404 as the port.
    app, db = flask_db
    with app.test_request_context(query_string=query), pytest.raises(PageNotFound):
        page, per_page = page_args(request.args)
        db.paginate(ITEMS, page=page, per_page=per_page)
