"""The Flask app's own error handlers, after_request functions and session
interface around a port, compared with the legacy app by the shadow engine."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import StreamingResponse
from flask import Blueprint, Flask, abort, g, jsonify, request, session
from flask.sessions import SessionInterface, SessionMixin
from flask_cors import CORS
from pydantic import BaseModel
from starlette.requests import HTTPConnection
from starlette.types import Message
from werkzeug.datastructures import CallbackDict

from bridge._exceptions import ConfigurationError
from bridge._porting.flask_cycle import flask_g, install_flask_behaviour
from bridge._porting.responses import FlaskJSONResponse
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionMiddleware
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import (
    BridgeOptions,
    Manifest,
    RouteKey,
    RouteState,
    parse_manifest,
)
from bridge._shadow.cases import Case
from bridge._shadow.runner import Outcome
from bridge._shadow.session import shadow_session

pytestmark = pytest.mark.anyio

SECRET_KEY = "flask-context-secret"
FRONT = "https://front.example"
NOTES = {1: "first"}
EVERYTHING = BridgeOptions(flask_errors=True, flask_session=True, after_request=True)


def notes_flask(*, testing: bool = False, interface: SessionInterface | None = None) -> Flask:
    """A notes app as a team would have it: an API blueprint with its own
    error shape and hook, HTML errors elsewhere, flask-cors, session login."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET_KEY, TESTING=testing)
    if interface is not None:
        app.session_interface = interface
    CORS(app, origins=[FRONT], expose_headers=["X-Api"], supports_credentials=True)
    api = Blueprint("api", __name__, url_prefix="/api")

    @app.before_request
    def load_user() -> None:
        g.user = session.get("user")

    @app.after_request
    def stamp(response: Any) -> Any:
        response.headers["X-User"] = g.get("user") or "-"
        return response

    @api.after_request
    def api_stamp(response: Any) -> Any:
        response.headers["X-Api"] = "1"
        return response

    @api.errorhandler(404)
    def api_not_found(error: Any) -> Any:
        return jsonify(msg=error.description), 404

    @app.errorhandler(400)
    def bad_request(error: Any) -> Any:
        return jsonify(msg="Bad request: send {'text': string}"), 400

    @app.errorhandler(500)
    def server_error(error: Any) -> Any:
        return f"<h1>Oops</h1><p>{request.path} failed</p>", 500

    @api.get("/notes/<int:note_id>")
    def get_note(note_id: int) -> Any:
        if note_id not in NOTES:
            abort(404, description=f"no note {note_id}")
        return jsonify(id=note_id, text=NOTES[note_id])

    @api.post("/notes")
    def add_note() -> Any:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            abort(400)
        return jsonify(text=data["text"]), 201

    @app.errorhandler(Taken)
    def taken(error: Taken) -> Any:
        response = jsonify(msg=f"{error} is taken")
        response.set_cookie("hint", "pick-another")
        response.set_cookie("tries", "1")
        return response, 409

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    @app.get("/names/<name>")
    def claim(name: str) -> Any:
        if name == "ann":
            raise Taken(name)
        abort(410, description=f"{name} is gone")

    @app.get("/whoami")
    def whoami() -> Any:
        session["seen"] = session.get("seen", 0) + 1
        return jsonify(user=session.get("user"), seen=session["seen"])

    @app.post("/login")
    def login() -> Any:
        session["user"] = request.args["user"]
        return jsonify(ok=True)

    @app.get("/stream")
    def stream() -> Any:
        return app.response_class(iter([b"a", b"b"]), mimetype="text/plain")

    app.register_blueprint(api)
    return app


class Taken(Exception):
    """A business rule's refusal, rendered by the Flask app's handler for it."""


class NewNote(BaseModel):
    text: str


async def load_user(connection: HTTPConnection, g: Annotated[Any, Depends(flask_g)]) -> None:
    """The port's before_request: what it loads into ``g`` the app's hooks see."""
    g.user = connection.session.get("user")


def notes_port() -> FastAPI:
    app = FastAPI(
        default_response_class=FlaskJSONResponse,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(load_user)],
    )

    @app.get("/api/notes/{note_id}")
    async def get_note(note_id: int) -> Any:
        if note_id not in NOTES:
            raise HTTPException(404, f"no note {note_id}")
        return {"id": note_id, "text": NOTES[note_id]}

    @app.post("/api/notes", status_code=201)
    async def add_note(note: NewNote) -> Any:
        return {"text": note.text}

    @app.get("/boom")
    async def boom() -> Any:
        raise RuntimeError("boom")

    @app.get("/names/{name}")
    async def claim(name: str) -> Any:
        if name == "ann":
            raise Taken(name)
        abort(410, description=f"{name} is gone")  # Werkzeug's, as in a Flask view

    @app.get("/whoami")
    async def whoami(request: Request) -> Any:
        request.session["seen"] = request.session.get("seen", 0) + 1
        return {"user": request.session.get("user"), "seen": request.session["seen"]}

    @app.get("/stream")
    async def stream() -> Any:
        return StreamingResponse(iter([b"a", b"b"]), media_type="text/plain; charset=utf-8")

    return app


NOTE = Case(method="GET", path="/api/notes/1", headers={"Origin": FRONT})
NO_NOTE = Case(method="GET", path="/api/notes/999")
WHOAMI = Case(method="GET", path="/whoami", session={"user": "ann"})
CASES = [
    NOTE,
    NO_NOTE,
    Case(method="POST", path="/api/notes", json={"text": "hi"}, has_json=True),
    Case(method="POST", path="/api/notes", json={"text": 5}, has_json=True),
    Case(method="POST", path="/api/notes", body="not json", headers={"Content-Type": "x/y"}),
    Case(method="GET", path="/boom"),
    Case(method="GET", path="/names/ann"),
    Case(method="GET", path="/names/bob"),
    WHOAMI,
    Case(
        method="GET", path="/whoami", session={"user": "ann", "seen": 3}, headers={"Origin": FRONT}
    ),
    Case(method="GET", path="/stream", headers={"Origin": FRONT}),
]


@pytest.fixture
def quiet_flask_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The 500 cases log their traceback on purpose."""
    with caplog.at_level(logging.CRITICAL, logger=__name__):
        yield


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
@pytest.mark.usefixtures("quiet_flask_errors")
async def test_the_port_answers_as_the_legacy_app(case: Case) -> None:
    async with shadow_session(
        notes_flask(), notes_port(), Manifest(options=EVERYTHING), aa=False
    ) as runner:
        result = await runner.run(case)
    assert result.ported
    assert result.outcome is Outcome.SAME, result.report()


@pytest.mark.parametrize(
    ("options", "case", "where"),
    [
        (BridgeOptions(flask_session=True), NOTE, "header access-control-allow-origin"),
        (BridgeOptions(after_request=True), NO_NOTE, "$.msg"),
        (BridgeOptions(flask_errors=True), WHOAMI, "header x-user"),
    ],
)
async def test_each_part_left_out_is_a_difference(
    options: BridgeOptions, case: Case, where: str
) -> None:
    async with shadow_session(
        notes_flask(), notes_port(), Manifest(options=options), aa=False
    ) as runner:
        result = await runner.run(case)
    assert where in [d.where for d in result.differences], result.report()


@pytest.fixture
async def port_client() -> AsyncIterator[httpx.AsyncClient]:
    """The port alone, behind the hybrid with a testing Flask app."""
    flask_app = notes_flask(testing=True)
    port = notes_port()
    routes = {
        RouteKey("GET", "/boom"): RouteState.ASYNC,
        RouteKey("GET", "/api/notes/<int:note_id>"): RouteState.ASYNC,
        RouteKey("POST", "/api/notes"): RouteState.ASYNC,
    }
    hybrid = HybridApp(flask_app, port, Manifest(routes=routes, options=EVERYTHING))
    transport = httpx.ASGITransport(app=hybrid)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client
    hybrid.close()


async def test_with_testing_on_a_port_exception_is_still_the_apps_500(
    port_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await port_client.get("/boom")
    assert response.status_code == 500
    assert response.text == "<h1>Oops</h1><p>/boom failed</p>"
    assert response.headers["x-bridge-side"] == "async"
    assert response.headers["x-user"] == "-"  # the 500 went through after_request
    logged = [r for r in caplog.records if r.getMessage() == "Exception on /boom [GET]"]
    assert logged and isinstance(logged[0].exc_info and logged[0].exc_info[1], RuntimeError)


async def test_with_testing_on_http_and_validation_errors_are_the_apps_handlers(
    port_client: httpx.AsyncClient,
) -> None:
    missing = await port_client.get("/api/notes/999")
    invalid = await port_client.post("/api/notes", json={"text": 5})
    assert {missing.headers["x-bridge-side"], invalid.headers["x-bridge-side"]} == {"async"}
    assert (missing.status_code, missing.json()) == (404, {"msg": "no note 999"})
    assert missing.headers["x-api"] == "1"  # the blueprint's after_request, for its URL
    assert (invalid.status_code, invalid.json()) == (
        400,
        {"msg": "Bad request: send {'text': string}"},
    )


async def test_fastapis_own_405_is_werkzeugs_with_its_allow_header() -> None:
    port = notes_port()
    install_flask_behaviour(port, notes_flask())
    transport = httpx.ASGITransport(app=port)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.put("/api/notes")
    assert response.status_code == 405
    assert "<title>405 Method Not Allowed</title>" in response.text
    assert response.headers["allow"] == "POST"


class DictSessionInterface(SessionInterface):
    """A server-side session: the cookie holds an id, the data stays here."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}

    def open_session(self, app: Flask, request: Any) -> SessionMixin:
        sid = request.cookies.get("sid")
        data = self.store.get(sid, {}) if sid else {}
        return ServerSession(data, sid=sid if sid in self.store else None)

    def save_session(self, app: Flask, session: SessionMixin, response: Any) -> None:
        assert isinstance(session, ServerSession)
        if not session.modified:
            return
        sid = session.sid or secrets.token_urlsafe(8)
        self.store[sid] = dict(session)
        response.set_cookie("sid", sid, httponly=True)


class ServerSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, data: dict[str, Any], sid: str | None) -> None:
        def on_update(self: ServerSession) -> None:
            self.modified = True

        super().__init__(data, on_update)
        self.sid = sid
        self.modified = False


def server_side_hybrid(options: BridgeOptions) -> tuple[HybridApp, DictSessionInterface]:
    interface = DictSessionInterface()
    flask_app = notes_flask(interface=interface)
    port = notes_port()
    port.add_middleware(FlaskSessionMiddleware, config=FlaskSessionConfig(SECRET_KEY))
    routes = {RouteKey("GET", "/whoami"): RouteState.ASYNC}
    return HybridApp(flask_app, port, Manifest(routes=routes, options=options)), interface


async def test_a_server_side_session_stays_logged_in_across_both_sides() -> None:
    hybrid, interface = server_side_hybrid(BridgeOptions(flask_session=True))
    transport = httpx.ASGITransport(app=hybrid)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        login = await client.post("/login", params={"user": "ann"})
        assert login.headers["x-bridge-side"] == "legacy"
        first = await client.get("/whoami")
        second = await client.get("/whoami")
    hybrid.close()
    assert first.headers["x-bridge-side"] == "async"
    assert (first.json(), second.json()) == ({"user": "ann", "seen": 1}, {"user": "ann", "seen": 2})
    assert list(interface.store.values()) == [{"user": "ann", "seen": 2}]


@pytest.mark.parametrize("options", [BridgeOptions(), BridgeOptions(flask_errors=True)])
def test_a_cookie_only_session_middleware_is_refused_for_a_server_side_interface(
    options: BridgeOptions,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        server_side_hybrid(options)
    assert str(caught.value) == (
        "the Flask app keeps its sessions with DictSessionInterface, which "
        "FlaskSessionMiddleware cannot read: set [bridge] flask_session = true "
        "so the ports use the app's session_interface"
    )


class AsyncInterface(DictSessionInterface):
    async def open_session(self, app: Flask, request: Any) -> SessionMixin:  # type: ignore[override]
        return super().open_session(app, request)


@pytest.mark.parametrize(
    ("interface", "secret", "message"),
    [
        (
            AsyncInterface(),
            SECRET_KEY,
            "AsyncInterface.open_session is a coroutine function, which Flask never awaits: "
            "make it a plain function",
        ),
        (
            None,
            None,
            "SECRET_KEY is not set: the async side needs the Flask app's key "
            "to read its session cookie",
        ),
    ],
)
def test_a_session_interface_the_port_cannot_use_is_refused_at_start(
    interface: SessionInterface | None, secret: str | None, message: str
) -> None:
    flask_app = notes_flask(interface=interface)
    flask_app.config["SECRET_KEY"] = secret
    with pytest.raises(ConfigurationError) as caught:
        install_flask_behaviour(notes_port(), flask_app)
    assert str(caught.value) == message


def test_installing_twice_is_once_and_another_flask_app_is_refused() -> None:
    port, flask_app = notes_port(), notes_flask()
    install_flask_behaviour(port, flask_app, after_request=True)
    before = list(port.user_middleware)
    install_flask_behaviour(port, flask_app, after_request=True)
    assert port.user_middleware == before
    with pytest.raises(ConfigurationError, match="already answers as another Flask app"):
        install_flask_behaviour(port, notes_flask())


def test_the_bridge_keys_parse_and_refuse_a_non_boolean() -> None:
    manifest = parse_manifest("[bridge]\nflask_errors = true\nafter_request = true\n")
    assert manifest.options.flask_errors and manifest.options.after_request
    assert not manifest.options.flask_session
    with pytest.raises(Exception, match=r"\[bridge\] flask_session must be true or false"):
        parse_manifest('[bridge]\nflask_session = "yes"\n')


async def test_a_websocket_reads_the_session_the_flask_app_wrote() -> None:
    flask_app, port = notes_flask(), notes_port()

    @port.websocket("/ws")
    async def greet(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"user": websocket.session.get("user")})
        await websocket.close()

    install_flask_behaviour(port, flask_app)
    login = flask_app.test_client().post("/login", query_string={"user": "ann"})
    cookie = login.headers["Set-Cookie"].split(";")[0].encode()
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"cookie", cookie)],
        "scheme": "ws",
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 1),
        "subprotocols": [],
    }
    await port(scope, receive, send)
    texts = [m.get("text") for m in sent if m["type"] == "websocket.send"]
    assert texts == ['{"user":"ann"}']
