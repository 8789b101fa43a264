"""A small Flask app and FastAPI ports of it, some broken on purpose, for shadow runs.

The database comes from ``DATABASE_URL``; ``SHADOW_PORT`` picks the port:
``good``, ``wrong-field``, ``wrong-status``, ``skips-write``, ``extra-row``,
``stale-timestamp`` (a fixed ``created_at``), ``offset-timestamp`` (the same
instant written with another offset), ``short-token``, ``drops-header`` (no
app-wide ``X-App-Version``) or ``raises`` (a 500 from an exception).
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from flask import Flask, abort, jsonify, request, session
from itsdangerous import URLSafeSerializer
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    update,
)

from bridge._porting.asyncdb import AsyncDatabase, DbSession
from bridge._porting.database import DatabaseSettings
from bridge._porting.error_envelope import install_error_envelope
from bridge._porting.request import get_json
from bridge._porting.responses import FlaskJSONResponse
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionMiddleware

SECRET_KEY = "shadow-apps-secret"
APP_VERSION = "1.4.2"
metadata = MetaData()
notes = Table(
    "shadow_notes", metadata, Column("id", Integer, primary_key=True), Column("text", String(50))
)
counters = Table(
    "shadow_counters", metadata, Column("id", Integer, primary_key=True), Column("value", Integer)
)
people = Table(
    "shadow_people", metadata, Column("id", Integer, primary_key=True), Column("email", String(50))
)


def envelope(code: int, name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "name": name, "message": message}}


def create_schema(settings: DatabaseSettings) -> None:
    engine = create_engine(settings.sync_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(counters).values(id=1, value=0))
        connection.execute(insert(notes).values(text="first"))  # id 1, from the sequence
        connection.execute(insert(people).values(id=7, email="ann@example.com"))
    engine.dispose()


def mint_token(user_id: int) -> str:
    """A signed bearer token for *user_id*, as a JWT app's login would issue."""
    return URLSafeSerializer(SECRET_KEY, salt="token").dumps({"sub": user_id})


def token_user(authorization: str | None) -> Any:
    """The user a bearer token names, or ``None``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer":
        return None
    return URLSafeSerializer(SECRET_KEY, salt="token").loads(token)["sub"]


def now_text(offset: timezone | None = None) -> str:
    """The time as the Flask app writes it: naive UTC, to the microsecond."""
    if offset is not None:
        return datetime.now(offset).isoformat(timespec="microseconds")
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def create_flask(settings: DatabaseSettings | None = None) -> Flask:
    settings = settings or DatabaseSettings.from_env()
    engine = create_engine(settings.sync_url)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET_KEY
    app.extensions["engine"] = engine

    @app.errorhandler(404)
    def not_found(error: Any) -> Any:
        return jsonify(envelope(404, error.name, error.description)), 404

    @app.get("/notes/<int:note_id>")
    def get_note(note_id: int) -> Any:
        with engine.connect() as connection:
            row = connection.execute(select(notes).where(notes.c.id == note_id)).first()
        if row is None:
            abort(404, f"note {note_id} does not exist")
        return jsonify(id=row.id, text=row.text)

    @app.post("/notes")
    def add_note() -> Any:
        text = request.get_json()["text"]
        with engine.begin() as connection:
            key = connection.execute(insert(notes).values(text=text)).inserted_primary_key
            assert key is not None
            note_id = key[0]
            connection.execute(update(counters).values(value=counters.c.value + 1))
        # A fresh token and the time, every time: noise that an A/A run finds.
        return jsonify(
            id=note_id, text=text, token=secrets.token_hex(4), created_at=now_text()
        ), 201

    @app.after_request
    def app_version(response: Any) -> Any:
        response.headers["X-App-Version"] = APP_VERSION
        return response

    @app.get("/whoami")
    def whoami() -> Any:
        return jsonify(user_id=session.get("user_id"))

    @app.get("/token-whoami")
    def token_whoami() -> Any:
        return jsonify(user_id=token_user(request.headers.get("Authorization")))

    return app


def create_port(settings: DatabaseSettings | None = None, variant: str | None = None) -> FastAPI:
    variant = variant or os.environ.get("SHADOW_PORT", "good")
    database = AsyncDatabase(settings)
    app = FastAPI(lifespan=database.lifespan)
    database.install(app)
    install_error_envelope(app, envelope)

    @app.get("/notes/{note_id:int}")
    async def get_note(note_id: int, session: DbSession) -> FlaskJSONResponse:
        row = (await session.execute(select(notes).where(notes.c.id == note_id))).first()
        if row is None:
            raise HTTPException(404, detail=f"note {note_id} does not exist")
        text = row.text.upper() if variant == "wrong-field" else row.text
        return FlaskJSONResponse({"id": row.id, "text": text})

    @app.post("/notes")
    async def add_note(request: Request, session: DbSession) -> FlaskJSONResponse:
        text = (await get_json(request))["text"]
        inserted = await session.execute(insert(notes).values(text=text))
        note_id = inserted.inserted_primary_key[0]  # type: ignore[attr-defined]
        if variant == "extra-row":
            await session.execute(insert(notes).values(text=text))
        if variant != "skips-write":
            await session.execute(update(counters).values(value=counters.c.value + 1))
        status = 200 if variant == "wrong-status" else 201
        created_at = now_text()
        if variant == "stale-timestamp":
            created_at = "2000-01-01T00:00:00.000000"
        elif variant == "offset-timestamp":
            created_at = now_text(timezone(timedelta(hours=2)))
        if variant == "raises":
            raise RuntimeError("the port forgot something")
        token = secrets.token_hex(3 if variant == "short-token" else 4)
        body = {"id": note_id, "text": text, "token": token, "created_at": created_at}
        return FlaskJSONResponse(body, status_code=status)

    @app.get("/whoami")
    async def whoami(request: Request) -> FlaskJSONResponse:
        return FlaskJSONResponse({"user_id": request.session.get("user_id")})

    @app.get("/token-whoami")
    async def token_whoami(request: Request) -> FlaskJSONResponse:
        return FlaskJSONResponse({"user_id": token_user(request.headers.get("authorization"))})

    app.add_middleware(FlaskSessionMiddleware, config=FlaskSessionConfig(secret_key=SECRET_KEY))

    @app.middleware("http")
    async def app_version(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if variant != "drops-header":
            response.headers["X-App-Version"] = APP_VERSION
        return response

    return app
