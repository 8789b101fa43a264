"""A shadow session: the runner for a Flask app and its port, set up and torn down.

The ``flask2fastapi shadow`` command, the ``shadow`` pytest fixture and the
tests all need the same things around a :class:`ShadowRunner`: the port side
(:func:`ported_side`), a sender per side, the FastAPI app's lifespan while
requests run in-process, and the same teardown in the same order. They get
them here, so none of them can forget a step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from flask import Flask
from sqlalchemy import URL, Engine

from bridge._exceptions import AsyncDatabaseError
from bridge._porting.asyncdb import AsyncDatabase
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest
from bridge._shadow.databases import check_same_database, flask_database_url
from bridge._shadow.recorder import ChangeRecorder
from bridge._shadow.runner import (
    Sender,
    ShadowRunner,
    asgi_sender,
    dispose_flask_engines,
    ported_side,
    url_sender,
    wsgi_sender,
)


@asynccontextmanager
async def shadow_session(
    flask_app: Flask,
    fastapi_app: FastAPI,
    manifest: Manifest,
    *,
    recorder: ChangeRecorder | None = None,
    aa: bool = True,
    database: Engine | None = None,
    urls: tuple[str, str] | None = None,
) -> AsyncIterator[ShadowRunner]:
    """A :class:`ShadowRunner` for the two apps, ready to run cases.

    In-process, the FastAPI app's lifespan runs for the whole session (it owns
    the async engine). Given *urls* (the legacy server's, the port's), requests
    go to running servers, whose lifespans are their own; the port side is
    still built, to tell which cases reach the port.

    On exit the senders are closed, the port side's worker threads stopped and
    the pooled connections of the Flask app's Flask-SQLAlchemy engines closed:
    the session's requests opened them. The *recorder* and *database* engines
    belong to the caller, who made them.

    Before any request, the database of the run (*database*, or the
    *recorder*'s), of the Flask app's Flask-SQLAlchemy engine and of the
    FastAPI app's :class:`~bridge.AsyncDatabase` must be one: otherwise a
    :class:`~bridge.ConfigurationError` names the two that differ.
    """
    port_side = ported_side(flask_app, fastapi_app, manifest)
    try:
        async with _senders(flask_app, fastapi_app, port_side, urls) as (legacy, port):
            run_engine = database or (recorder.engine if recorder else None)
            check_same_database(
                [
                    ("DATABASE_URL", None if run_engine is None else run_engine.url),
                    ("the Flask app's Flask-SQLAlchemy engine", flask_database_url(flask_app)),
                    ("the FastAPI app's AsyncDatabase", _async_url(fastapi_app, urls)),
                ]
            )
            runner = ShadowRunner(
                flask_app=flask_app,
                legacy=legacy,
                port=port,
                manifest=manifest,
                recorder=recorder,
                aa=aa,
                port_routes=port_side.routes,
                database=database,
            )
            try:
                yield runner
            finally:
                await runner.aclose()
    finally:
        port_side.legacy.shutdown()
        dispose_flask_engines(flask_app)


@asynccontextmanager
async def _senders(
    flask_app: Flask, fastapi_app: FastAPI, port_side: HybridApp, urls: tuple[str, str] | None
) -> AsyncIterator[tuple[Sender, Sender]]:
    if urls is not None:
        yield url_sender(urls[0]), url_sender(urls[1])
        return
    async with fastapi_app.router.lifespan_context(fastapi_app):
        yield wsgi_sender(flask_app), asgi_sender(port_side)


def _async_url(fastapi_app: FastAPI, urls: tuple[str, str] | None) -> URL | None:
    """The started async engine's URL in-process; a running server's is its own."""
    database = getattr(fastapi_app.state, "database", None)
    if urls is not None or not isinstance(database, AsyncDatabase):
        return None
    try:
        return database.engine.url
    except AsyncDatabaseError:  # not started by the app's lifespan: nothing to compare
        return None
