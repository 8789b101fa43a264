"""What asyncpg refuses and psycopg coerces, as guide 5 quotes it, and the fixes.

On PostgreSQL: SQLite stores either value without complaint.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    select,
)

from bridge import AsyncDatabase, DbConnection, install_error_envelope
from bridge._porting.database import DatabaseSettings
from tests.bridge.apps import TABLE_SUFFIX, error_body
from tests.bridge.porting.test_asyncdb import serving
from tests.conftest import ON_POSTGRES

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")

metadata = MetaData()
notes = Table(
    f"driver_notes_{TABLE_SUFFIX}",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text),
    Column("created_at", DateTime),  # timestamp without time zone, as Flask apps have it
)

# asyncpg's own words, inside SQLAlchemy's DBAPIError.
INT_FOR_TEXT = "invalid input for query argument $1: 7 (expected str, got int)"
AWARE_FOR_NAIVE = "(can't subtract offset-naive and offset-aware datetimes)"

SINCE = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def notes_table(sync_engine: Engine) -> Iterator[Engine]:
    metadata.create_all(sync_engine)
    with sync_engine.begin() as connection:
        rows = [{"title": "old", "created_at": datetime(2026, 1, 1)}]
        rows.append({"title": "new", "created_at": datetime(2026, 7, 1)})
        connection.execute(insert(notes), rows)
    yield sync_engine
    metadata.drop_all(sync_engine)


def ported(database: AsyncDatabase, *, envelope: bool = True) -> FastAPI:
    app = FastAPI(lifespan=database.lifespan)
    database.install(app)
    if envelope:
        install_error_envelope(app, error_body)

    @app.post("/notes", status_code=201)
    async def create(data: dict[str, Any], connection: DbConnection) -> None:
        await connection.execute(insert(notes).values(title=data["title"]))

    @app.post("/notes/fixed", status_code=201)
    async def create_fixed(data: dict[str, Any], connection: DbConnection) -> None:
        await connection.execute(insert(notes).values(title=str(data["title"])))

    @app.get("/notes/since")
    async def since(connection: DbConnection) -> int:
        return int(await connection.scalar(count_since(SINCE)) or 0)

    @app.get("/notes/since/fixed")
    async def since_fixed(connection: DbConnection) -> int:
        naive = SINCE.astimezone(UTC).replace(tzinfo=None)  # the column's UTC, without tzinfo
        return int(await connection.scalar(count_since(naive)) or 0)

    return app


def count_since(moment: datetime) -> Any:
    return select(func.count()).select_from(notes).where(notes.c.created_at >= moment)


def stored_titles(engine: Engine) -> list[str | None]:
    with engine.connect() as connection:
        return list(connection.scalars(select(notes.c.title).order_by(notes.c.id)))


@pytest.mark.anyio
@needs_postgres
async def test_an_int_for_a_text_column(
    database_settings: DatabaseSettings, notes_table: Engine
) -> None:
    async with serving(ported(AsyncDatabase(database_settings))) as client:
        answer = await client.post("/notes", json={"title": 7})
        fixed = await client.post("/notes/fixed", json={"title": 7})
    async with serving(ported(AsyncDatabase(database_settings), envelope=False)) as client:
        bare = await client.post("/notes", json={"title": 7})

    assert fixed.status_code == 201
    if database_settings.async_url.drivername == "postgresql+asyncpg":
        # A data exception to the error envelope (is_bad_value): 400; 500 without it.
        assert (answer.status_code, bare.status_code) == (400, 500)
        assert stored_titles(notes_table) == ["old", "new", "7"]
    else:  # psycopg sends it untyped; the server casts it to text
        assert (answer.status_code, bare.status_code) == (201, 201)
        assert stored_titles(notes_table) == ["old", "new", "7", "7", "7"]


@pytest.mark.anyio
@needs_postgres
async def test_an_aware_datetime_against_a_naive_column(
    database_settings: DatabaseSettings, notes_table: Engine
) -> None:
    async with serving(ported(AsyncDatabase(database_settings))) as client:
        answer = await client.get("/notes/since")
        fixed = await client.get("/notes/since/fixed")

    assert fixed.status_code == 200 and fixed.json() == 1
    if database_settings.async_url.drivername == "postgresql+asyncpg":
        assert answer.status_code == 400
    else:  # the server converts timestamptz to timestamp in the session's TimeZone
        assert answer.status_code == 200 and answer.json() == 1


@pytest.mark.anyio
@needs_postgres
async def test_asyncpgs_words(database_settings: DatabaseSettings, notes_table: Engine) -> None:
    if database_settings.async_url.drivername != "postgresql+asyncpg":
        pytest.skip("asyncpg's message")
    from sqlalchemy.exc import DBAPIError

    engine = database_settings.create_async_engine()
    try:
        with pytest.raises(DBAPIError) as int_for_text:
            async with engine.begin() as connection:
                await connection.execute(insert(notes).values(title=7))
        with pytest.raises(DBAPIError) as aware_for_naive:
            async with engine.connect() as connection:
                await connection.scalar(count_since(SINCE))
    finally:
        await engine.dispose()

    assert INT_FOR_TEXT in str(int_for_text.value)
    assert "invalid input for query argument $1: datetime.datetime(2026, 6, 1" in str(
        aware_for_naive.value
    )
    assert AWARE_FOR_NAIVE in str(aware_for_naive.value)


def test_the_default_async_driver_is_asyncpg() -> None:
    settings = DatabaseSettings(url="postgresql://app@db/shop")

    assert settings.async_url.drivername == "postgresql+asyncpg"
    assert settings.sync_url.drivername == "postgresql+psycopg"
