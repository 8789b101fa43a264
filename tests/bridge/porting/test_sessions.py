from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import itsdangerous.timed
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from flask import Flask, session
from markupsafe import Markup
from werkzeug.http import parse_date

from bridge._exceptions import ConfigurationError
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionCookie, FlaskSessionMiddleware
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import parse_manifest

pytestmark = pytest.mark.anyio

SECRET = "s3cret-key"
TAGGED = {
    "user": "alice",
    "cart": (1, 2, 3),
    "since": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    "token": b"\x00\xff",
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "note": Markup("<b>hi</b>"),
    "nested": {" t": [1, {"x": (2,)}]},
}


def flask_app(**config: Any) -> Flask:
    """The legacy app: each route does one thing with the session."""
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": SECRET, **config})

    @app.post("/login")
    def login() -> str:
        session["user"] = "alice"
        return "ok"

    @app.post("/login-tagged")
    def login_tagged() -> str:
        session.update(TAGGED)
        return "ok"

    @app.post("/login-permanent")
    def login_permanent() -> str:
        session.permanent = True
        session["user"] = "alice"
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return repr(session.get("user"))

    @app.get("/dump")
    def dump() -> str:
        return repr(dict(session))

    @app.get("/check")
    def check() -> str:
        return repr("user" in session)

    @app.get("/untouched")
    def untouched() -> tuple[str, int, dict[str, str]]:
        return "ok", 200, {"Vary": "Accept-Encoding"}

    @app.get("/touched-vary")
    def touched_vary() -> tuple[str, int, dict[str, str]]:
        return repr(session.get("user")), 200, {"Vary": "Accept-Encoding"}

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "ok"

    @app.post("/pop")
    def pop() -> str:
        session.pop("user", None)
        return "ok"

    return app


def fastapi_app(config: FlaskSessionConfig) -> FastAPI:
    """The port: the same routes, on ``request.session``."""
    app = FastAPI(default_response_class=PlainTextResponse)
    app.add_middleware(FlaskSessionMiddleware, config=config)

    @app.post("/login")
    def login(request: Request) -> str:
        request.session["user"] = "alice"
        return "ok"

    @app.post("/login-tagged")
    def login_tagged(request: Request) -> str:
        request.session.update(TAGGED)
        return "ok"

    @app.post("/login-permanent")
    def login_permanent(request: Request) -> str:
        request.session.permanent = True  # type: ignore[attr-defined]
        request.session["user"] = "alice"
        return "ok"

    @app.get("/whoami")
    def whoami(request: Request) -> str:
        return repr(request.session.get("user"))

    @app.get("/dump")
    def dump(request: Request) -> str:
        return repr(dict(request.session))

    @app.get("/check")
    def check(request: Request) -> str:
        return repr("user" in request.session)

    @app.get("/untouched")
    def untouched() -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"Vary": "Accept-Encoding"})

    @app.get("/touched-vary")
    def touched_vary(request: Request) -> PlainTextResponse:
        user = request.session.get("user")
        return PlainTextResponse(repr(user), headers={"Vary": "Accept-Encoding"})

    @app.post("/logout")
    def logout(request: Request) -> str:
        request.session.clear()
        return "ok"

    @app.post("/pop")
    def pop(request: Request) -> str:
        request.session.pop("user", None)
        return "ok"

    return app


class Pair:
    """The same requests sent to the Flask app and to its port."""

    def __init__(self, **config: Any) -> None:
        legacy = flask_app(**config)
        self.config = FlaskSessionConfig.from_flask_config(legacy.config)
        self.legacy = httpx.Client(
            transport=httpx.WSGITransport(app=legacy), base_url="http://testserver"
        )
        self.ported = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fastapi_app(self.config)),
            base_url="http://testserver",
        )

    async def both(self, method: str, path: str, cookie: str | None = None) -> list[httpx.Response]:
        headers = {"cookie": f"{self.config.cookie_name}={cookie}"} if cookie else {}
        legacy = self.legacy.request(method, path, headers=headers)
        ported = await self.ported.request(method, path, headers=headers)
        return [legacy, ported]


def cookie_attributes(response: httpx.Response) -> list[dict[str, str]]:
    """Each Set-Cookie as its attributes, with the signed value and the date left out."""
    cookies = []
    for header in response.headers.get_list("set-cookie"):
        name_value, *attributes = header.split("; ")
        name, _, value = name_value.partition("=")
        parsed = {"name": name, "empty": str(value in ("", '""'))}
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            parsed[key.lower()] = attr_value
        cookies.append(parsed)
    return cookies


def cookie_value(response: httpx.Response) -> str:
    header = response.headers["set-cookie"]
    return header.split(";", 1)[0].partition("=")[2]


def assert_same_session_headers(legacy: httpx.Response, ported: httpx.Response) -> None:
    assert ported.status_code == legacy.status_code == 200
    assert ported.text == legacy.text
    assert ported.headers.get("vary") == legacy.headers.get("vary")
    legacy_cookies, ported_cookies = cookie_attributes(legacy), cookie_attributes(ported)
    legacy_expires = [c.pop("expires", None) for c in legacy_cookies]
    ported_expires = [c.pop("expires", None) for c in ported_cookies]
    assert ported_cookies == legacy_cookies
    for flask_date, port_date in zip(legacy_expires, ported_expires, strict=True):
        assert (flask_date is None) == (port_date is None)
        if flask_date and port_date:
            gap = parse_date(flask_date) - parse_date(port_date)  # type: ignore[operator]
            assert abs(gap.total_seconds()) <= 2


async def login_cookie(pair: Pair, path: str = "/login") -> str:
    legacy, _ = await pair.both("POST", path)
    return cookie_value(legacy)


CONFIGS: list[Any] = [
    pytest.param({}, id="defaults"),
    pytest.param(
        {
            "SESSION_COOKIE_NAME": "sid",
            "SESSION_COOKIE_DOMAIN": "example.test",
            "SESSION_COOKIE_PATH": "/app",
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_HTTPONLY": False,
            "PERMANENT_SESSION_LIFETIME": 3600,
        },
        id="custom",
    ),
    pytest.param(
        {"SESSION_COOKIE_PARTITIONED": True, "APPLICATION_ROOT": "/root"}, id="partitioned"
    ),
    pytest.param({"SESSION_REFRESH_EACH_REQUEST": False}, id="no-refresh"),
]

# (method, path, starting session): each step as the same request to both apps.
STEPS: list[tuple[str, str, str | None]] = [
    ("POST", "/login", None),
    ("POST", "/login-permanent", None),
    ("GET", "/whoami", None),
    ("GET", "/whoami", "/login"),
    ("GET", "/check", "/login"),
    ("GET", "/untouched", None),
    ("GET", "/untouched", "/login"),
    ("GET", "/untouched", "/login-permanent"),
    ("GET", "/whoami", "/login-permanent"),
    ("GET", "/touched-vary", "/login"),
    ("POST", "/logout", "/login"),
    ("POST", "/logout", "/login-permanent"),
    ("POST", "/logout", None),
    ("POST", "/pop", None),
    ("POST", "/pop", "/login"),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(
    ("method", "path", "logged_in_by"), STEPS, ids=[f"{m} {p} after {s}" for m, p, s in STEPS]
)
async def test_cookies_and_vary_are_what_flask_sends(
    config: dict[str, Any], method: str, path: str, logged_in_by: str | None
) -> None:
    pair = Pair(**config)
    cookie = await login_cookie(pair, logged_in_by) if logged_in_by else None

    legacy, ported = await pair.both(method, path, cookie)

    assert_same_session_headers(legacy, ported)


@pytest.mark.parametrize("login", ["/login", "/login-tagged", "/login-permanent"])
async def test_a_login_on_either_side_is_seen_by_the_other(login: str) -> None:
    pair = Pair()
    legacy_login, ported_login = await pair.both("POST", login)

    for cookie in (cookie_value(legacy_login), cookie_value(ported_login)):
        legacy, ported = await pair.both("GET", "/dump", cookie)
        assert ported.text == legacy.text
        assert "'user': 'alice'" in legacy.text


def test_cookie_written_by_flask_is_read_by_the_cookie_class() -> None:
    app = flask_app()
    response = app.test_client().post("/login-tagged")
    value = response.headers["Set-Cookie"].split(";", 1)[0].partition("=")[2]

    loaded = FlaskSessionCookie(FlaskSessionConfig(secret_key=SECRET)).load(value)

    assert dict(loaded) == TAGGED
    assert isinstance(loaded["cart"], tuple)
    assert isinstance(loaded["note"], Markup)


def test_cookie_written_by_the_cookie_class_is_read_by_flask() -> None:
    value = FlaskSessionCookie(FlaskSessionConfig(secret_key=SECRET)).dump(TAGGED)
    app = flask_app()
    client = app.test_client()
    client.set_cookie("session", value)

    assert client.get("/dump").text == repr(TAGGED)


def test_fallback_keys_read_old_cookies_and_the_current_key_signs() -> None:
    old_cookie = FlaskSessionCookie(FlaskSessionConfig(secret_key="old")).dump({"user": "bob"})
    rotated = FlaskSessionCookie(FlaskSessionConfig(secret_key="new", secret_key_fallbacks=["old"]))
    new_cookie = rotated.dump({"user": "carol"})

    assert dict(rotated.load(old_cookie)) == {"user": "bob"}
    # Flask with only the new key reads what the rotated side writes...
    new_only = flask_app(SECRET_KEY="new").test_client()
    new_only.set_cookie("session", new_cookie)
    assert new_only.get("/whoami").text == "'carol'"
    # ...and Flask with the fallback reads the old cookie, as the port does.
    with_fallback = flask_app(SECRET_KEY="new", SECRET_KEY_FALLBACKS=["old"]).test_client()
    with_fallback.set_cookie("session", old_cookie)
    assert with_fallback.get("/whoami").text == "'bob'"


def tampered(value: str) -> str:
    payload, _, signature = value.rpartition(".")
    return f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize(
    "make_cookie",
    [
        lambda value: tampered(value),
        lambda value: FlaskSessionCookie(FlaskSessionConfig(secret_key="other")).dump({"u": 1}),
        lambda value: "not-a-cookie",
    ],
    ids=["tampered", "other-key", "garbage"],
)
def test_forged_cookie_is_an_empty_session(make_cookie: Callable[[str], str]) -> None:
    cookies = FlaskSessionCookie(FlaskSessionConfig(secret_key=SECRET))
    value = make_cookie(cookies.dump({"user": "alice"}))

    assert dict(cookies.load(value)) == {}
    flask_client = flask_app().test_client()
    flask_client.set_cookie("session", value)
    assert flask_client.get("/whoami").text == "None"


def test_expired_cookie_is_an_empty_session(monkeypatch: pytest.MonkeyPatch) -> None:
    config = FlaskSessionConfig(secret_key=SECRET, lifetime=timedelta(minutes=1))
    cookies = FlaskSessionCookie(config)
    an_hour_ago = int(datetime.now(UTC).timestamp()) - 3600
    with monkeypatch.context() as patch:
        patch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: an_hour_ago)
        old = cookies.dump({"user": "alice"})
    fresh = cookies.dump({"user": "alice"})

    assert dict(cookies.load(old)) == {}
    assert dict(cookies.load(fresh)) == {"user": "alice"}
    flask_client = flask_app(PERMANENT_SESSION_LIFETIME=60).test_client()
    flask_client.set_cookie("session", old)
    assert flask_client.get("/whoami").text == "None"


def test_missing_cookie_is_an_empty_unmodified_session() -> None:
    loaded = FlaskSessionCookie(FlaskSessionConfig(secret_key=SECRET)).load(None)

    assert dict(loaded) == {}
    assert not loaded.modified


async def test_cookie_among_other_cookies_is_found() -> None:
    pair = Pair()
    cookie = await login_cookie(pair)
    cookies = f"theme=dark; session={cookie}; a=b"
    response = await pair.ported.get("/whoami", headers={"cookie": cookies})

    assert response.text == "'alice'"


@pytest.mark.parametrize("secret", [None, ""])
def test_from_flask_config_without_secret_key_is_a_configuration_error(secret: str | None) -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        FlaskSessionConfig.from_flask_config({"SECRET_KEY": secret})


def test_from_flask_config_reads_flasks_keys() -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        SECRET_KEY_FALLBACKS=["k0"],
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=2),
        SESSION_REFRESH_EACH_REQUEST=False,
    )

    config = FlaskSessionConfig.from_flask_config(app.config)

    assert config == FlaskSessionConfig(
        secret_key="k",
        secret_key_fallbacks=("k0",),
        cookie_name="sid",
        samesite="Strict",
        lifetime=timedelta(hours=2),
        refresh_each_request=False,
    )


async def test_every_vary_header_is_kept_when_cookie_is_added() -> None:
    app = FastAPI()

    @app.get("/vary")
    def vary(request: Request) -> Response:
        request.session.get("user_id")
        response = Response(b"")
        response.headers.append("Vary", "Accept-Encoding")
        response.headers.append("Vary", "Origin")
        return response

    wrapped = FlaskSessionMiddleware(app, FlaskSessionConfig(secret_key="k"))
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/vary")
    assert response.headers.get_list("vary") == ["Accept-Encoding, Origin, Cookie"]


def test_a_lifetime_in_float_seconds_is_read_as_flask_reads_it() -> None:
    config = FlaskSessionConfig.from_flask_config(
        {"SECRET_KEY": "k", "PERMANENT_SESSION_LIFETIME": 0.5 * 3600}
    )
    assert config.lifetime == timedelta(minutes=30)
    cookie = FlaskSessionCookie(config)
    assert cookie.load(cookie.dump({"a": 1})) == {"a": 1}


@pytest.mark.parametrize(
    "cookie_headers",
    [
        [("cookie", "session={login}"), ("cookie", "theme=dark")],
        [("cookie", "theme=dark"), ("cookie", "session={login}")],
        [("cookie", "session={login}"), ("cookie", "session={login}")],
        [("cookie", "session={login}; theme=dark")],
        [("cookie", "session=\xff\xfe"), ("cookie", "theme=dark")],
    ],
    ids=["session-first", "session-last", "session-twice", "one-header", "not-utf-8"],
)
async def test_repeated_cookie_headers_read_as_the_legacy_side_reads_them(
    cookie_headers: list[tuple[str, str]],
) -> None:
    # a2wsgi joins repeated headers with "," as WSGI servers do, so Flask sees
    # "session=...,theme=dark": one cookie whose value no signature matches.
    legacy = flask_app()
    config = FlaskSessionConfig.from_flask_config(legacy.config)
    login = FlaskSessionCookie(config).dump({"user": "alice"})
    manifest = parse_manifest('[routes]\n"GET /whoami" = "async"\n')
    ported = HybridApp(legacy, fastapi_app(config), manifest)
    everything_legacy = HybridApp(legacy, fastapi_app(config), parse_manifest(""))
    headers = [
        (name.encode(), value.format(login=login).encode("latin-1"))
        for name, value in cookie_headers
    ]

    answers = []
    for app in (everything_legacy, ported):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/whoami", headers=headers)
        answers.append((response.headers["x-bridge-side"], response.status_code, response.text))

    [(legacy_side, *legacy_answer), (ported_side, *ported_answer)] = answers
    assert (legacy_side, ported_side) == ("legacy", "async")
    assert ported_answer == legacy_answer
