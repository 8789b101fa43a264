"""webargs_parse answers by webargs' rules, through the app's own error handlers.

A "Conduit"-like login and article list under ``@use_args``, with the app's
handler for webargs' 422 and 400, and their ports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from bridge import ConfigurationError, install_flask_answers, webargs_parse
from bridge._porting.error_envelope import install_error_envelope
from bridge._porting.responses import FlaskJSONResponse
from bridge._shadow.runner import ShadowRunner
from tests.bridge.apps import error_body

from .flask_pairs import same, shadow_pair

pytestmark = pytest.mark.anyio


class Credentials(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True)


LOGIN_ARGS: dict[str, fields.Field[Any]] = {"user": fields.Nested(Credentials, required=True)}
LIST_ARGS: dict[str, fields.Field[Any]] = {
    "limit": fields.Integer(load_default=20),
    "tag": fields.List(fields.String()),
}


def legacy_app() -> Flask:
    from webargs.flaskparser import use_args

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "conduit"

    @app.errorhandler(HTTPException)
    def invalid(error: HTTPException) -> Any:
        data = getattr(error, "data", {})
        return jsonify(errors=data.get("messages", error.description)), error.code

    @app.post("/api/users/login")
    @use_args(LOGIN_ARGS, location="json")
    def login(args: dict[str, Any]) -> Any:
        return jsonify(args)

    @app.get("/api/articles")
    @use_args(LIST_ARGS, location="query")
    def articles(args: dict[str, Any]) -> Any:
        return jsonify(args)

    return app


def ported_app() -> FastAPI:
    app = FastAPI()
    install_error_envelope(app, error_body)
    install_flask_answers(app)

    @app.post("/api/users/login")
    async def login(request: Request) -> FlaskJSONResponse:
        return FlaskJSONResponse(await webargs_parse(request, LOGIN_ARGS, location="json"))

    @app.get("/api/articles")
    async def articles(request: Request) -> FlaskJSONResponse:
        return FlaskJSONResponse(await webargs_parse(request, LIST_ARGS, location="query"))

    return app


@pytest.fixture
async def runner() -> AsyncIterator[ShadowRunner]:
    async with shadow_pair(legacy_app(), ported_app()) as shadow:
        yield shadow


JSON = "application/json"
BODIES = [
    (JSON, '{"user": {"email": "ann@example.com", "password": "x"}}', 200),
    (JSON, '{"user": {"email": "not an email", "password": "x"}}', 422),
    (JSON, '{"user": {"email": "ann@example.com"}}', 422),
    (JSON, '{"user": {"email": "ann@example.com", "password": "x", "admin": true}}', 422),
    (JSON, '{"user": {"email": "ann@example.com", "password": "x"}, "extra": 1}', 422),
    (JSON, "[]", 422),
    (JSON, "{not json", 400),
    (JSON, "", 422),
    ("application/vnd.api+json", '{"user": {"email": "a@b.co", "password": "x"}}', 200),
    ("text/plain", '{"user": {"email": "ann@example.com", "password": "x"}}', 422),
    (None, '{"user": {"email": "ann@example.com", "password": "x"}}', 422),
]


@pytest.mark.parametrize(("content_type", "body", "status"), BODIES)
async def test_json_bodies_follow_webargs_rules(
    runner: ShadowRunner, content_type: str | None, body: str, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    legacy = await same(runner, method="POST", path="/api/users/login", headers=headers, body=body)

    assert legacy.status == status


async def test_a_body_that_does_not_parse_gets_webargs_words(runner: ShadowRunner) -> None:
    legacy = await same(
        runner, method="POST", path="/api/users/login", headers={"Content-Type": JSON}, body="{"
    )

    assert legacy.body == b'{"errors":{"json":["Invalid JSON body."]}}\n'


@pytest.mark.parametrize(
    ("query", "status"),
    # Unknown query arguments are left out (webargs' EXCLUDE for the query), not refused.
    [("", 200), ("limit=5&tag=a&tag=b", 200), ("limit=x", 422), ("other=1", 200)],
)
async def test_query_arguments_follow_webargs_rules(
    runner: ShadowRunner, query: str, status: int
) -> None:
    legacy = await same(runner, method="GET", path=f"/api/articles?{query}")

    assert legacy.status == status


async def test_without_a_flask_app_it_says_how_to_give_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = httpx.ASGITransport(app=ported_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get("/api/articles")

    assert response.status_code == 500
    logged = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert any(
        isinstance(exc, ConfigurationError) and "flask_app=create_app()" in str(exc)
        for exc in logged
    )
