"""The Flask-Login adapter answers as Flask-Login does in the legacy app.

A notes app with session login, as Flask-Login's users write it, and its
port; the shadow engine compares status, headers, cookies (the session's
content included) and bodies.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask, jsonify, request
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    fresh_login_required,
    login_required,
    login_user,
    logout_user,
)
from flask_login.utils import encode_cookie

from bridge import ConfigurationError, FlaskLogin
from bridge._porting.error_envelope import install_error_envelope
from bridge._porting.request import get_json
from bridge._porting.responses import FlaskJSONResponse
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionMiddleware
from bridge._shadow.runner import ShadowRunner
from tests.bridge.apps import error_body, install_flask_envelope

from .flask_pairs import same, shadow_pair

pytestmark = pytest.mark.anyio


class User(UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: str, name: str, active: bool = True) -> None:
        self.id = user_id
        self.name = name
        self.active = active

    @property
    def is_active(self) -> bool:
        return self.active


USERS = {"1": User("1", "ann"), "2": User("2", "bob", active=False)}
loads: list[str] = []  # every id the user_loader was asked for


def whoami(user: Any) -> dict[str, Any]:
    return {"authenticated": user.is_authenticated, "name": getattr(user, "name", None)}


def legacy_app(options: dict[str, Any]) -> Flask:
    """The notes app. *options*: ``config`` for app.config, ``login_view``,
    ``unauthorized`` (a custom handler), ``request_loader``."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="notes-secret", **options.get("config", {}))
    install_flask_envelope(app)
    manager = LoginManager(app)
    manager.login_view = options.get("login_view")
    manager.refresh_view = options.get("refresh_view")

    @manager.user_loader  # type: ignore[untyped-decorator]
    def load_user(user_id: str) -> User | None:
        loads.append(user_id)
        return USERS.get(user_id)

    if options.get("unauthorized"):

        @manager.unauthorized_handler  # type: ignore[untyped-decorator]
        def unauthorized() -> Any:
            return jsonify(error="log in first", next=request.path), 403

    if options.get("request_loader"):

        @manager.request_loader  # type: ignore[untyped-decorator]
        def from_header(flask_request: Any) -> User | None:
            return USERS.get(flask_request.headers.get("X-User", ""))

    @app.get("/me")
    def me() -> Any:
        return jsonify(whoami(current_user))

    @app.get("/notes")
    @login_required  # type: ignore[untyped-decorator]
    def notes() -> Any:
        return jsonify(owner=current_user.name)

    @app.get("/settings")
    @fresh_login_required  # type: ignore[untyped-decorator]
    def settings() -> Any:
        return jsonify(owner=current_user.name)

    @app.post("/session")
    def log_in() -> Any:
        data = request.get_json()
        done = login_user(USERS[data["id"]], remember=data.get("remember", False))
        return jsonify(logged_in=done)

    @app.delete("/session")
    def log_out() -> Any:
        return jsonify(logged_out=logout_user())

    @app.get("/login")
    def login_page() -> Any:
        return "the login page"

    return app


def ported_app(flask_app: Flask, login: FlaskLogin | None = None) -> FastAPI:
    """The port; its adapter finds the Flask app through the hybrid unless *login* is given."""
    app = FastAPI()
    install_error_envelope(app, error_body)
    login = login or FlaskLogin()
    login.install(app)
    # Dependencies as defaults: the annotations are strings, evaluated in the module.
    current_user = Depends(login.current_user)
    logged_in = Depends(login.login_required)
    freshly_logged_in = Depends(login.fresh_login_required)

    @app.get("/me")
    async def me(user: Any = current_user) -> FlaskJSONResponse:
        return FlaskJSONResponse(whoami(user))

    @app.get("/notes")
    async def notes(user: Any = logged_in) -> FlaskJSONResponse:
        return FlaskJSONResponse({"owner": user.name})

    @app.get("/settings")
    async def settings(user: Any = freshly_logged_in) -> FlaskJSONResponse:
        return FlaskJSONResponse({"owner": user.name})

    @app.post("/session")
    async def log_in(request: Request) -> FlaskJSONResponse:
        data = await get_json(request)
        done = await login.login_user(request, USERS[data["id"]], data.get("remember", False))
        return FlaskJSONResponse({"logged_in": done})

    @app.delete("/session")
    async def log_out(request: Request) -> FlaskJSONResponse:
        return FlaskJSONResponse({"logged_out": await login.logout_user(request)})

    session_config = FlaskSessionConfig.from_flask_config(flask_app.config)
    app.add_middleware(FlaskSessionMiddleware, config=session_config)
    return app


@pytest.fixture
def options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def runner(options: dict[str, Any]) -> AsyncIterator[ShadowRunner]:
    flask_app = legacy_app(options)
    async with shadow_pair(flask_app, ported_app(flask_app)) as shadow:
        yield shadow


def identifier(user_agent: str = "python-httpx") -> str:
    """Flask-Login's session identifier for a client of the shadow run (127.0.0.1)."""
    import httpx as _httpx

    agent = f"python-httpx/{_httpx.__version__}" if user_agent == "python-httpx" else user_agent
    return hashlib.sha512(f"127.0.0.1|{agent}".encode()).hexdigest()


def logged_in(user_id: str = "1", **extra: Any) -> dict[str, Any]:
    return {"_user_id": user_id, "_fresh": True, "_id": identifier(), **extra}


SESSIONS = [
    pytest.param(None, id="anonymous"),
    pytest.param(logged_in(), id="logged-in"),
    pytest.param(logged_in("9"), id="unknown-user"),
    pytest.param(logged_in("2"), id="inactive-user"),
    pytest.param(logged_in(_fresh=False), id="stale"),
    pytest.param({"_user_id": "1", "_fresh": True}, id="no-identifier"),
    pytest.param(logged_in(_id="someone else"), id="other-identifier"),
    pytest.param({"theme": "dark"}, id="other-keys"),
]


@pytest.mark.parametrize("path", ["/me", "/notes", "/settings"])
@pytest.mark.parametrize("session", SESSIONS)
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="401"),
        pytest.param({"login_view": "login_page", "refresh_view": "login_page"}, id="redirect"),
        pytest.param(
            {"login_view": "login_page", "config": {"USE_SESSION_FOR_NEXT": True}},
            id="next-in-session",
        ),
        pytest.param({"unauthorized": True}, id="custom-handler"),
        pytest.param({"config": {"SESSION_PROTECTION": "strong"}}, id="strong-protection"),
        pytest.param({"config": {"LOGIN_DISABLED": True}}, id="login-disabled"),
    ],
)
async def test_users_and_refusals_are_flask_logins(
    runner: ShadowRunner, path: str, session: dict[str, Any] | None, options: dict[str, Any]
) -> None:
    legacy = await same(runner, method="GET", path=f"{path}?page=2", session=session)

    user = USERS.get((session or {}).get("_user_id", ""))
    if path == "/me":
        assert legacy.status == 200
    elif options.get("config", {}).get("LOGIN_DISABLED"):
        assert legacy.status == (200 if user else 500)  # the anonymous user has no name
    elif user is None:
        refused = 403 if options.get("unauthorized") else 401
        assert legacy.status == (302 if options.get("login_view") else refused)


async def test_the_redirect_carries_next_and_flashes(options: dict[str, Any]) -> None:
    options.update(login_view="login_page")
    flask_app = legacy_app(options)
    async with shadow_pair(flask_app, ported_app(flask_app)) as runner:
        legacy = await same(runner, method="GET", path="/notes?x=%C3%A9")

    assert legacy.status == 302
    assert dict(legacy.headers)["location"] == "/login?next=%2Fnotes%3Fx%3D%C3%A9"
    assert any(value.startswith("session=") for value in legacy.values("set-cookie"))


@pytest.mark.parametrize("options", [{}, {"config": {"SESSION_PROTECTION": "strong"}}])
async def test_the_remember_me_cookie_logs_in_as_in_flask(
    runner: ShadowRunner, options: dict[str, Any]
) -> None:
    with runner.flask_app.app_context():
        token = encode_cookie("1")
    for cookie in [f"remember_token={token}", "remember_token=forged|x", "remember_token="]:
        legacy = await same(runner, method="GET", path="/notes", cookie=cookie)
        assert legacy.status == (200 if cookie.endswith(token) else 401)


@pytest.mark.parametrize(
    "options",
    [
        {"config": {"REMEMBER_COOKIE_REFRESH_EACH_REQUEST": True}},
        {"config": {"SESSION_PROTECTION": "strong"}},
    ],
)
async def test_after_request_remember_cookie_work_is_done_on_the_port(
    runner: ShadowRunner, options: dict[str, Any]
) -> None:
    with runner.flask_app.app_context():
        token = encode_cookie("1")
    session = logged_in(_id="another client")

    legacy = await same(runner, method="GET", path="/notes", session=session)
    # The cookie is sent without a session: the session is read from it.
    again = await same(runner, method="GET", path="/me", cookie=f"remember_token={token}")

    cookies = [*legacy.values("set-cookie"), *again.values("set-cookie")]
    assert any(value.startswith("remember_token=") for value in cookies)


@pytest.mark.parametrize("remember", [False, True])
@pytest.mark.parametrize("user_id", ["1", "2"])
async def test_login_and_logout_write_what_flask_login_writes(
    runner: ShadowRunner, remember: bool, user_id: str
) -> None:
    legacy = await same(
        runner, method="POST", path="/session", json={"id": user_id, "remember": remember}
    )
    out = await same(
        runner,
        method="DELETE",
        path="/session",
        session=logged_in(user_id),
        headers={"Cookie": "remember_token=x"},
    )

    set_cookies = legacy.values("set-cookie")
    assert (user_id == "1") == any(v.startswith("session=") for v in set_cookies)
    remembered = any(v.startswith("remember_token=") for v in set_cookies)
    assert remembered == (user_id == "1" and remember)
    assert out.status == 200


@pytest.mark.parametrize("options", [{"request_loader": True}])
@pytest.mark.parametrize("header", ["1", "2", "9", ""])
async def test_the_request_loader_is_the_apps(runner: ShadowRunner, header: str) -> None:
    legacy = await same(runner, method="GET", path="/notes", headers={"X-User": header})

    assert legacy.status == (200 if header == "1" else 401)


async def test_the_users_are_loaded_by_the_apps_user_loader() -> None:
    flask_app = legacy_app({})
    port = ported_app(flask_app, FlaskLogin(flask_app))  # given, not found through the hybrid
    cookie = FlaskSessionConfig.from_flask_config(flask_app.config)
    from bridge._porting.sessions import FlaskSessionCookie

    signed = FlaskSessionCookie(cookie).dump(logged_in("1"))
    loads.clear()
    transport = httpx.ASGITransport(app=port)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get("/notes", headers={"Cookie": f"session={signed}"})

    assert response.json() == {"owner": "ann"}
    assert loads == ["1"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda flask_app: ported_app(flask_app), "FlaskLogin has no Flask app"),
        (
            lambda flask_app: _without_sessions(flask_app),
            "add FlaskSessionMiddleware to the FastAPI app",
        ),
        (lambda flask_app: ported_app(flask_app, FlaskLogin(Flask("bare"))), "no LoginManager"),
    ],
)
async def test_a_port_without_what_it_needs_says_what_to_add(
    build: Callable[[Flask], FastAPI], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = build(legacy_app({}))
    transport = httpx.ASGITransport(app=port, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get("/me")

    assert response.status_code == 500
    logged = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert any(isinstance(exc, ConfigurationError) and message in str(exc) for exc in logged)


def _without_sessions(flask_app: Flask) -> FastAPI:
    login = FlaskLogin(flask_app)
    app = FastAPI()
    install_error_envelope(app, error_body)
    login.install(app)
    current_user = Depends(login.current_user)

    @app.get("/me")
    async def me(user: Any = current_user) -> FlaskJSONResponse:
        return FlaskJSONResponse(whoami(user))

    return app


def test_without_flask_login_installed_the_adapter_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "flask_login", None)  # what an absent package raises

    with pytest.raises(ConfigurationError, match=r"pip install flask-login$"):
        FlaskLogin()
