"""The flask-jwt-extended adapter answers as the extension does in the legacy app.

A "Conduit"-like API (``Authorization: Token <jwt>``, optional and required
routes, a user lookup) and its port, compared by the shadow engine: the same
tokens are accepted, the same refusals carry the same status and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask, jsonify
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_csrf_token,
    get_current_user,
    get_jwt,
    get_jwt_header,
    get_jwt_identity,
    get_jwt_request_location,
    jwt_required,
)

from bridge import ConfigurationError, FlaskJWT, JWTToken
from bridge._porting.error_envelope import install_error_envelope
from bridge._porting.responses import FlaskJSONResponse
from bridge._shadow.runner import ShadowRunner
from tests.bridge.apps import error_body, install_flask_envelope

from .flask_pairs import same, shadow_pair

pytestmark = pytest.mark.anyio

JWT_SECRET = "conduit-jwt-secret-of-at-least-32-bytes"
USERS = {"1": "ann", "2": "bob"}
BLOCKED_IDENTITIES = {"2"}


def describe(identity: Any, claims: Any, header: Any, location: Any, user: Any) -> dict[str, Any]:
    return {
        "identity": identity,
        "claims": claims,
        "header": header,
        "location": location,
        "user": user,
    }


def legacy_app(options: dict[str, Any]) -> Flask:
    """*options*: ``config`` for app.config, ``loaders`` for the app's own callbacks."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="conduit", JWT_SECRET_KEY=JWT_SECRET, JWT_HEADER_TYPE="Token")
    app.config.update(options.get("config", {}))
    install_flask_envelope(app)
    jwt = JWTManager(app)

    if options.get("loaders"):

        @jwt.expired_token_loader
        def expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Any:
            return jsonify(errors={"token": ["has expired"]}), 401

        @jwt.user_lookup_loader
        def lookup(_header: dict[str, Any], payload: dict[str, Any]) -> str | None:
            return USERS.get(payload["sub"])

        @jwt.token_in_blocklist_loader
        def blocked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
            return payload["sub"] in BLOCKED_IDENTITIES

    def seen() -> Any:
        return jsonify(
            describe(
                get_jwt_identity(),
                get_jwt(),
                get_jwt_header(),
                get_jwt_request_location(),
                get_current_user() if options.get("loaders") else None,
            )
        )

    app.add_url_rule("/api/user", "user", jwt_required()(seen))
    app.add_url_rule("/api/articles", "articles", jwt_required(optional=True)(seen))
    app.add_url_rule("/api/settings", "settings", jwt_required(fresh=True)(seen), methods=["PUT"])
    app.add_url_rule("/api/refresh", "refresh", jwt_required(refresh=True)(seen), methods=["POST"])
    return app


def ported_app(jwt: FlaskJWT | None = None) -> FastAPI:
    app = FastAPI()
    install_error_envelope(app, error_body)
    jwt = jwt or FlaskJWT()
    jwt.install(app)
    # Dependencies as defaults: the annotations are strings, evaluated in the module.
    required = Depends(jwt.required())
    optional = Depends(jwt.required(optional=True))
    fresh = Depends(jwt.required(fresh=True))
    refresh = Depends(jwt.required(refresh=True))

    def seen(token: JWTToken) -> FlaskJSONResponse:
        return FlaskJSONResponse(
            describe(token.identity, token.claims, token.header, token.location, token.user)
        )

    @app.get("/api/user")
    async def user(token: JWTToken = required) -> FlaskJSONResponse:
        return seen(token)

    @app.get("/api/articles")
    async def articles(token: JWTToken = optional) -> FlaskJSONResponse:
        return seen(token)

    @app.put("/api/settings")
    async def settings(token: JWTToken = fresh) -> FlaskJSONResponse:
        return seen(token)

    @app.post("/api/refresh")
    async def refresh_token(token: JWTToken = refresh) -> FlaskJSONResponse:
        return seen(token)

    return app


@pytest.fixture
def options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def runner(options: dict[str, Any]) -> AsyncIterator[ShadowRunner]:
    async with shadow_pair(legacy_app(options), ported_app()) as shadow:
        yield shadow


def tokens(flask_app: Flask) -> dict[str, str]:
    """Tokens of every kind the tests send, made by the app's own extension."""
    other = Flask("other")
    other.config.update(JWT_SECRET_KEY="another-secret-of-at-least-32-bytes!!")
    JWTManager(other)
    with flask_app.app_context():
        made = {
            "access": create_access_token("1"),
            "fresh": create_access_token("1", fresh=True),
            "blocked": create_access_token("2", fresh=True),
            "unknown-user": create_access_token("9", fresh=True),
            "expired": create_access_token("1", expires_delta=timedelta(seconds=-60)),
            "refresh": create_refresh_token("1"),
            "claims": create_access_token("1", additional_claims={"role": "editor"}),
        }
    with other.app_context():
        made["other-key"] = create_access_token("1")
    return made


AUTHORIZATIONS = [
    "Token {access}",
    "Token {fresh}",
    "Token {blocked}",
    "Token {unknown-user}",
    "Token {expired}",
    "Token {refresh}",
    "Token {claims}",
    "Token {other-key}",
    "Token not.a.jwt",
    "Token abc",
    "Bearer {access}",
    "Token",
    "{access}",
    None,
]
ROUTES = [
    ("GET", "/api/user"),
    ("GET", "/api/articles"),
    ("PUT", "/api/settings"),
    ("POST", "/api/refresh"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authorization", AUTHORIZATIONS)
@pytest.mark.parametrize(
    "options", [pytest.param({}, id="defaults"), pytest.param({"loaders": True}, id="loaders")]
)
async def test_tokens_are_accepted_and_refused_as_by_the_extension(
    runner: ShadowRunner, method: str, path: str, authorization: str | None, options: Any
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format_map(tokens(runner.flask_app))

    legacy = await same(runner, method=method, path=path, headers=headers)

    if authorization is None:
        assert legacy.status == (200 if path == "/api/articles" else 401)
    elif authorization in ("Token not.a.jwt", "Token abc", "Token {other-key}"):
        assert legacy.status == 422


async def test_the_extensions_messages_are_kept(runner: ShadowRunner) -> None:
    made = tokens(runner.flask_app)

    missing = await same(runner, method="GET", path="/api/user")
    expired = await same(
        runner,
        method="GET",
        path="/api/user",
        headers={"Authorization": f"Token {made['expired']}"},
    )
    stale = await same(
        runner,
        method="PUT",
        path="/api/settings",
        headers={"Authorization": f"Token {made['access']}"},
    )

    assert (missing.status, missing.body) == (401, b'{"msg":"Missing Authorization Header"}\n')
    assert (expired.status, expired.body) == (401, b'{"msg":"Token has expired"}\n')
    assert (stale.status, stale.body) == (401, b'{"msg":"Fresh token required"}\n')


@pytest.mark.parametrize("options", [{"loaders": True}])
async def test_the_apps_loaders_answer(runner: ShadowRunner) -> None:
    made = tokens(runner.flask_app)

    def authorized(name: str) -> dict[str, str]:
        return {"Authorization": f"Token {made[name]}"}

    expired = await same(runner, method="GET", path="/api/user", headers=authorized("expired"))
    blocked = await same(runner, method="GET", path="/api/user", headers=authorized("blocked"))
    unknown = await same(runner, method="GET", path="/api/user", headers=authorized("unknown-user"))
    known = await same(runner, method="GET", path="/api/user", headers=authorized("claims"))

    assert (expired.status, expired.body) == (401, b'{"errors":{"token":["has expired"]}}\n')
    assert (blocked.status, blocked.body) == (401, b'{"msg":"Token has been revoked"}\n')
    assert unknown.status == 401
    assert known.status == 200
    assert b'"role":"editor"' in known.body and b'"user":"ann"' in known.body


@pytest.mark.parametrize(
    "options",
    [
        {"config": {"JWT_TOKEN_LOCATION": ["cookies"], "JWT_COOKIE_CSRF_PROTECT": True}},
        {"config": {"JWT_TOKEN_LOCATION": ["query_string"]}},
        {"config": {"JWT_TOKEN_LOCATION": ["json"]}},
        {"config": {"JWT_TOKEN_LOCATION": ["headers"], "JWT_HEADER_TYPE": ""}},
    ],
)
async def test_every_token_location_is_read_as_the_app_configures_it(
    runner: ShadowRunner, options: dict[str, Any]
) -> None:
    made = tokens(runner.flask_app)
    token = made["refresh"]
    with runner.flask_app.app_context():
        csrf = get_csrf_token(token)
    location = options["config"]["JWT_TOKEN_LOCATION"][0]
    by_location: dict[str, list[dict[str, Any]]] = {
        "cookies": [
            {"cookie": f"refresh_token_cookie={token}", "headers": {"X-CSRF-TOKEN": csrf}},
            {"cookie": f"refresh_token_cookie={token}", "headers": {"X-CSRF-TOKEN": "wrong"}},
            {"cookie": f"refresh_token_cookie={token}"},
        ],
        "query_string": [{"path": f"/api/refresh?jwt={token}"}, {"path": "/api/refresh?jwt="}],
        "json": [
            {"json": {"refresh_token": token}},
            {"json": {"refresh_token": 1}},
            {"body": "{", "headers": {"Content-Type": "application/json"}},
            {"body": "x"},
        ],
        "headers": [
            {"headers": {"Authorization": token}},
            {"headers": {"Authorization": f"Token {token}"}},
        ],
    }
    cases = by_location[location]

    statuses = []
    for case in cases:
        legacy = await same(runner, **{"method": "POST", "path": "/api/refresh", **case})
        statuses.append(legacy.status)

    assert statuses[0] == 200  # the first case of each location is a good token


async def test_the_flask_app_may_be_given() -> None:
    flask_app = legacy_app({})
    port = ported_app(FlaskJWT(flask_app))
    token = tokens(flask_app)["access"]
    transport = httpx.ASGITransport(app=port)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get("/api/user", headers={"Authorization": f"Token {token}"})

    assert response.status_code == 200
    assert response.json()["identity"] == "1"


async def test_an_app_without_jwt_manager_says_what_to_add(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bare = Flask("bare")
    transport = httpx.ASGITransport(app=ported_app(FlaskJWT(bare)), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get("/api/user")

    assert response.status_code == 500
    logged = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert any(
        isinstance(exc, ConfigurationError) and "no JWTManager" in str(exc) for exc in logged
    )
