"""Helpers for tests that make a database fail: closed, terminated, or unopenable."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import create_engine, text

from bridge._porting.database import DatabaseSettings

CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/nothing"
"""A PostgreSQL URL nothing listens on: every connection is refused."""


def terminate_backend(url: str, pid: int) -> None:
    """Terminate one backend from a connection of its own, as an operator would.

    The timeout (PostgreSQL 14 and later) waits until the backend has exited,
    so the session's next statement surely finds it gone.
    """
    killer = create_engine(DatabaseSettings(url=url).sync_url)
    try:
        with killer.connect() as connection:
            statement = text("SELECT pg_terminate_backend(:pid, 5000)")
            assert connection.execute(statement, {"pid": pid}).scalar_one() is True
            connection.commit()
    finally:
        killer.dispose()


async def aiosqlite_threads_stopped() -> None:
    """Wait while aiosqlite's worker threads finish.

    When a connection fails to open, aiosqlite queues its thread's stop without
    waiting for it; the thread then reports back to the event loop, and if the
    test's loop has closed by then, that report is an unhandled thread error.
    """
    for _ in range(500):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)
