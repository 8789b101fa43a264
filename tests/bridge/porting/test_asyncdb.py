"""The per-request session of the async side, on every test database and driver."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import Engine, event, func, insert, select, text
from werkzeug.exceptions import ServiceUnavailable

from bridge import AsyncDatabaseError, BridgeError
from bridge._porting.asyncdb import (
    YOUNG_GENERATION_THRESHOLD,
    AsyncDatabase,
    DbConnection,
    DbSession,
    request_session,
)
from bridge._porting.database import DatabaseSettings
from bridge._porting.error_envelope import install_error_envelope
from tests.bridge.apps import Item, error_body, insert_items
from tests.conftest import ON_POSTGRES, checked_out

pytestmark = pytest.mark.anyio


def ported_app(db: AsyncDatabase, *, install: bool = True) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)
    install_error_envelope(app, error_body)
    if install:
        db.install(app)

    @app.post("/items", status_code=201)
    async def create(names: list[str], session: DbSession) -> dict[str, Any]:
        session.add_all(Item(name=name) for name in names)  # flushed by the commit only
        return {"created": names}

    @app.post("/items/then-conflict")
    async def then_conflict(names: list[str], session: DbSession) -> None:
        session.add_all(Item(name=name) for name in names)
        await session.flush()
        raise HTTPException(409, detail="conflict")

    @app.post("/items/then-bug")
    async def then_bug(names: list[str], session: DbSession) -> None:
        session.add_all(Item(name=name) for name in names)
        await session.flush()
        raise RuntimeError("a bug after the write")

    @app.get("/items")
    async def names(session: DbSession) -> list[str]:
        return list((await session.scalars(select(Item.name).order_by(Item.name))).all())

    @app.post("/core/items", status_code=201)
    async def create_core(names: list[str], connection: DbConnection) -> dict[str, Any]:
        await connection.execute(insert(Item), [{"name": name} for name in names])
        return {"created": names}

    @app.post("/core/items/then-bug")
    async def then_bug_core(names: list[str], connection: DbConnection) -> None:
        await connection.execute(insert(Item), [{"name": name} for name in names])
        raise RuntimeError("a bug after the write")

    @app.get("/core/items")
    async def names_core(connection: DbConnection) -> list[str]:
        return list((await connection.scalars(select(Item.name).order_by(Item.name))).all())

    @app.get("/backend")
    async def backend(session: DbSession) -> int:
        await session.execute(text("SELECT pg_sleep(0.2)"))  # hold the connection a while
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client for it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


def stored(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(Item.name).order_by(Item.name)))


async def test_session_commits_on_success(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings)
    async with serving(ported_app(db)) as client:
        created = await client.post("/items", json=["a", "b"])
        listed = await client.get("/items")
        assert checked_out(db.engine.sync_engine) == 0

    assert created.status_code == 201
    assert listed.json() == ["a", "b"]
    assert stored(tables) == ["a", "b"]


async def test_failing_commit_answers_500_and_writes_nothing(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    insert_items(tables, "taken")
    db = AsyncDatabase(database_settings)
    async with serving(ported_app(db)) as client:
        # The unique violation is only hit by the flush inside the commit.
        response = await client.post("/items", json=["fresh", "taken"])
        assert checked_out(db.engine.sync_engine) == 0

    assert response.status_code == 500
    assert response.json()["error"]["code"] == 500
    assert stored(tables) == ["taken"]


@pytest.mark.parametrize(
    ("path", "status"), [("/items/then-conflict", 409), ("/items/then-bug", 500)]
)
async def test_exceptions_roll_back(
    database_settings: DatabaseSettings, tables: Engine, path: str, status: int
) -> None:
    db = AsyncDatabase(database_settings)
    async with serving(ported_app(db)) as client:
        response = await client.post(path, json=["written", "then-undone"])
        assert checked_out(db.engine.sync_engine) == 0

    assert response.status_code == status
    assert stored(tables) == []


async def test_exhausted_pool_answers_503_with_retry_after(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings, pool_size=1, max_overflow=0, pool_timeout=0.2)
    async with serving(ported_app(db)) as client:
        async with db.engine.connect() as held:
            await held.execute(select(func.count()).select_from(Item))
            with anyio.fail_after(10):
                response = await client.get("/items")
        served_again = await client.get("/items")
        assert checked_out(db.engine.sync_engine) == 0

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == error_body(503, "Service Unavailable", ServiceUnavailable.description)
    assert served_again.status_code == 200


async def test_engine_is_disposed_at_shutdown(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings)
    closed: list[object] = []
    async with serving(ported_app(db)) as client:
        engine = db.engine
        event.listen(
            engine.sync_engine, "close", lambda connection, _record: closed.append(connection)
        )
        await client.get("/items")  # leaves one connection in the pool
        assert closed == []

    assert len(closed) == 1
    with pytest.raises(RuntimeError, match="the async engine is not started"):
        db.engine  # noqa: B018


@pytest.fixture
def collector_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("collector_thresholds")
async def test_start_raises_the_default_young_generation_threshold(
    database_settings: DatabaseSettings,
) -> None:
    gc.set_threshold(700, 10, 10)  # the interpreter's default
    db = AsyncDatabase(database_settings)
    await db.start()
    try:
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)
    finally:
        await db.stop()


@pytest.mark.usefixtures("collector_thresholds")
@pytest.mark.parametrize("thresholds", [(50_000, 5, 5), (0, 10, 10)], ids=["higher", "disabled"])
async def test_start_keeps_a_higher_or_disabled_threshold(
    database_settings: DatabaseSettings, thresholds: tuple[int, int, int]
) -> None:
    gc.set_threshold(*thresholds)
    db = AsyncDatabase(database_settings)
    await db.start()
    try:
        assert gc.get_threshold() == thresholds
    finally:
        await db.stop()


async def test_engine_before_start_explains_how_to_start_it(
    database_settings: DatabaseSettings,
) -> None:
    db = AsyncDatabase(database_settings)

    with pytest.raises(AsyncDatabaseError) as caught:
        db.engine  # noqa: B018
    assert isinstance(caught.value, BridgeError) and isinstance(caught.value, RuntimeError)
    assert "serve the app with its lifespan" in str(caught.value)
    assert "await db.start()" in str(caught.value)
    with pytest.raises(AsyncDatabaseError, match="the async engine is not started"):
        async with db.transaction():
            pass  # pragma: no cover


async def test_request_without_the_lifespan_is_a_500(database_settings: DatabaseSettings) -> None:
    app = ported_app(AsyncDatabase(database_settings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/items")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == 500


async def test_session_without_install_explains_how_to_install(
    database_settings: DatabaseSettings,
) -> None:
    app = ported_app(AsyncDatabase(database_settings), install=False)
    async with serving(app) as client:
        response = await client.get("/items")

    assert response.status_code == 500
    with pytest.raises(AsyncDatabaseError, match=r"call AsyncDatabase.install\(app\)"):
        await anext(request_session(request_for(app)))


def request_for(app: FastAPI) -> Request:
    return Request({"type": "http", "app": app, "headers": []})


async def test_transaction_commits_and_rolls_back(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings)
    await db.start()
    try:
        async with db.transaction() as session:
            session.add(Item(name="kept"))
        with pytest.raises(LookupError):
            async with db.transaction() as session:
                session.add(Item(name="dropped"))
                await session.flush()
                raise LookupError
        assert checked_out(db.engine.sync_engine) == 0
    finally:
        await db.stop()

    assert stored(tables) == ["kept"]


async def test_start_reads_the_environment_when_given_no_settings(
    database_settings: DatabaseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_settings.url)
    if database_settings.async_driver:
        monkeypatch.setenv("DATABASE_ASYNC_DRIVER", database_settings.async_driver)
    monkeypatch.setenv("DATABASE_POOL_SIZE", "2")
    db = AsyncDatabase()

    await db.start()
    try:
        assert db.engine.url == database_settings.async_url
        assert db.engine.pool.size() == 2  # type: ignore[attr-defined]
    finally:
        await db.stop()


async def test_connection_commits_before_the_response_and_rolls_back_on_error(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings)
    async with serving(ported_app(db)) as client:
        created = await client.post("/core/items", json=["a", "b"])
        after_create = stored(tables)
        failed = await client.post("/core/items/then-bug", json=["c"])
        listed = await client.get("/core/items")
        assert checked_out(db.engine.sync_engine) == 0

    assert created.status_code == 201
    assert after_create == ["a", "b"]
    assert failed.status_code == 500
    assert listed.json() == ["a", "b"]


async def test_connection_on_an_exhausted_pool_answers_503(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings, pool_size=1, max_overflow=0, pool_timeout=0.2)
    async with serving(ported_app(db)) as client:
        async with db.engine.connect() as held:
            await held.execute(select(func.count()).select_from(Item))
            with anyio.fail_after(10):
                response = await client.get("/core/items")
        served_again = await client.get("/core/items")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert served_again.status_code == 200


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL to end backends")
async def test_pooled_connections_the_server_ended_cost_one_failed_request_at_most(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    # Without pre-ping (the default), the first request on a dead connection
    # fails, and SQLAlchemy then replaces every connection opened before it.
    assert database_settings.pool_pre_ping is False
    db = AsyncDatabase(database_settings, pool_size=2, max_overflow=0)
    async with serving(ported_app(db)) as client:
        first = await asyncio_gather(client.get("/backend"), client.get("/backend"))
        pids = {response.json() for response in first}
        assert len(pids) == 2  # both pooled connections are open

        end_backends(tables, pids)
        statuses = [(await client.get("/core/items")).status_code for _ in range(4)]
        assert checked_out(db.engine.sync_engine) == 0

    assert statuses.count(500) <= 1
    assert statuses[1:] == [200, 200, 200]


async def asyncio_gather(*calls: Any) -> list[Any]:
    results: list[Any] = []
    async with anyio.create_task_group() as tasks:
        for call in calls:

            async def run(call: Any = call) -> None:
                results.append(await call)

            tasks.start_soon(run)
    return results


def end_backends(engine: Engine, pids: set[int]) -> None:
    """Terminate the server processes *pids*, as a restart does, and wait until they are gone."""
    with engine.connect() as connection:
        for pid in pids:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        connection.commit()
        for _ in range(500):  # the backends exit asynchronously
            alive = connection.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": list(pids)},
            )
            connection.commit()  # pg_stat_activity is read once per transaction
            if not alive:
                return
            time.sleep(0.01)
    raise AssertionError(f"the backends {sorted(pids)} did not exit")


@pytest.mark.skipif(not ON_POSTGRES, reason="needs TEST_DATABASE_URL on PostgreSQL")
async def test_a_pooled_connection_its_driver_knows_closed_is_replaced_unseen(
    database_settings: DatabaseSettings, tables: Engine
) -> None:
    db = AsyncDatabase(database_settings, pool_size=1, max_overflow=0)
    async with serving(ported_app(db)) as client:
        async with db.engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
        await close_driver_connection(driver)  # as the driver sees a server that left

        response = await client.get("/core/items")

    assert response.status_code == 200


async def close_driver_connection(driver: Any) -> None:
    if hasattr(driver, "terminate"):  # asyncpg
        driver.terminate()
    else:
        await driver.close()
