"""Fixtures for the toolkit's tests: the test tables and a runner per session kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from bridge._porting.database import DatabaseSettings
from bridge._porting.repository import Operation, run_async, run_sync
from tests.bridge.apps import Base
from tests.conftest import checked_out

Runner = Callable[[Operation[Any]], Awaitable[Any]]
FlaskDB = tuple[Flask, SQLAlchemy]


@pytest.fixture
def tables(sync_engine: Engine) -> Iterator[Engine]:
    """The test tables, created empty on the test database and dropped afterwards."""
    Base.metadata.create_all(sync_engine)
    yield sync_engine
    Base.metadata.drop_all(sync_engine)


@pytest.fixture
async def async_engine(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """The async engine the settings build; the test fails if it leaves a connection out."""
    engine = database_settings.create_async_engine()
    yield engine
    leaked = checked_out(engine.sync_engine)
    await engine.dispose()
    assert leaked == 0, f"{leaked} async connection(s) still checked out after the test"


@pytest.fixture
def flask_db(database_settings: DatabaseSettings, tables: Engine) -> Iterator[FlaskDB]:
    """A Flask app with Flask-SQLAlchemy on the test database, as a legacy app has it."""
    app = Flask(__name__)
    app.config.update(database_settings.flask_config())
    db = SQLAlchemy(app)
    yield app, db
    with app.app_context():
        leaked = checked_out(db.engine)
        db.engine.dispose()
    assert leaked == 0, f"{leaked} Flask-SQLAlchemy connection(s) still checked out"


@pytest.fixture(params=["run_sync", "run_async"])
def run(request: pytest.FixtureRequest, tables: Engine, async_engine: AsyncEngine) -> Runner:
    """Runs an operation in a fresh session of one kind, rolled back afterwards.

    Every test that takes it runs once with :func:`run_sync` on a sync session
    and once with :func:`run_async` on an async one: one suite, two drivers.
    """
    if request.param == "run_sync":

        async def in_sync_session(operation: Operation[Any]) -> Any:
            with Session(tables) as session:
                return run_sync(session, operation)

        return in_sync_session

    async def in_async_session(operation: Operation[Any]) -> Any:
        async with AsyncSession(async_engine) as session:
            return await run_async(session, operation)

    return in_async_session
