"""Forms, uploads, JSON modes, repeated arguments, external URLs and the client's
address: each port answers as its Flask route, compared by the shadow engine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from bridge._porting import request as compat
from bridge._porting.error_envelope import install_error_envelope
from bridge._porting.responses import FlaskJSONResponse
from bridge._shadow.runner import ShadowRunner
from tests.bridge.apps import error_body, install_flask_envelope

from .flask_pairs import same, shadow_pair

pytestmark = pytest.mark.anyio

JSON_MODES = {
    "plain": {},
    "silent": {"silent": True},
    "force": {"force": True},
    "force-silent": {"force": True, "silent": True},
}
LIMITS = {"MAX_CONTENT_LENGTH": 4000, "MAX_FORM_MEMORY_SIZE": 1000, "MAX_FORM_PARTS": 4}


def describe_files(uploads: Any) -> dict[str, list[list[Any]]]:
    return {
        name: [
            [f.filename, f.content_type, f.mimetype, hashlib.sha256(f.read()).hexdigest()]
            for f in uploads.getlist(name)
        ]
        for name in uploads
    }


def legacy_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="idioms", **(config or {}))  # a shadow run signs sessions
    install_flask_envelope(app)

    @app.post("/json/<mode>")
    def body(mode: str) -> Any:
        return jsonify(body=request.get_json(**JSON_MODES[mode]))

    @app.post("/form")
    def form() -> Any:
        return jsonify(
            form=request.form.to_dict(flat=False),
            n=request.form.get("n", -1, type=int),
            files=describe_files(request.files),
        )

    @app.get("/args")
    def args() -> Any:
        return jsonify(t=request.args.getlist("t"), n=request.args.getlist("n", type=int))

    @app.get("/links/<name>", endpoint="links")
    def links(name: str) -> Any:
        return jsonify(
            external=url_for("links", name=name, q="é x", _external=True),
            https=url_for("links", name=name, _external=True, _scheme="https"),
            relative=url_for("links", name=name),
            remote_addr=request.remote_addr,
        )

    return app


def ported_app() -> FastAPI:
    app = FastAPI()
    install_error_envelope(app, error_body)

    @app.post("/json/{mode}")
    async def body(request: Request, mode: str) -> FlaskJSONResponse:
        return FlaskJSONResponse({"body": await compat.get_json(request, **JSON_MODES[mode])})

    @app.post("/form")
    async def form(request: Request) -> FlaskJSONResponse:
        fields = await compat.form(request)
        return FlaskJSONResponse(
            {
                "form": fields.to_dict(flat=False),
                "n": fields.get("n", -1, type=int),
                "files": describe_files(await compat.files(request)),
            }
        )

    @app.get("/args")
    async def args(request: Request) -> FlaskJSONResponse:
        return FlaskJSONResponse(
            {"t": compat.arg_list(request, "t"), "n": compat.arg_list(request, "n", type=int)}
        )

    @app.get("/links/{name}", name="links")
    async def links(request: Request, name: str) -> FlaskJSONResponse:
        return FlaskJSONResponse(
            {
                "external": compat.url_for(request, "links", name=name, q="é x", _external=True),
                "https": compat.url_for(
                    request, "links", name=name, _external=True, _scheme="https"
                ),
                "relative": compat.url_for(request, "links", name=name),
                "remote_addr": compat.remote_addr(request),
            }
        )

    return app


@pytest.fixture
async def runner() -> AsyncIterator[ShadowRunner]:
    async with shadow_pair(legacy_app(LIMITS), ported_app()) as shadow:
        yield shadow


JSON_BODIES = [
    ("application/json", '{"a": [1, "é"]}'),
    ("application/json", "{not json"),
    ("application/json", ""),
    ("application/merge-patch+json", "[1, 2]"),
    ("text/plain", '{"a": 1}'),
    ("text/plain", "not json"),
    ("application/x-www-form-urlencoded", "a=1"),
    (None, '{"a": 1}'),
    (None, ""),
]


@pytest.mark.parametrize("mode", JSON_MODES)
@pytest.mark.parametrize(("content_type", "body"), JSON_BODIES)
async def test_get_json_modes_answer_as_flask(
    runner: ShadowRunner, mode: str, content_type: str | None, body: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    legacy = await same(runner, method="POST", path=f"/json/{mode}", headers=headers, body=body)

    parses = body.startswith(('{"', "["))
    readable = (content_type is not None and "json" in content_type) or "force" in mode
    if "silent" in mode or (parses and readable):
        assert legacy.status == 200
    else:
        assert legacy.status == (400 if readable else 415)


async def test_a_json_body_over_max_content_length_is_a_413_even_when_silent(
    runner: ShadowRunner,
) -> None:
    big = json.dumps({"a": "x" * 5000})
    for mode in JSON_MODES:
        legacy = await same(
            runner,
            method="POST",
            path=f"/json/{mode}",
            headers={"Content-Type": "application/json"},
            body=big,
        )
        assert legacy.status == 413


BOUNDARY = "b0undary"


def multipart(*parts: tuple[str, str | None, str]) -> str:
    """A multipart body of ``(name, filename, content)`` parts."""
    lines = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        lines.append(f"--{BOUNDARY}")
        if filename is None:
            lines += [f"Content-Disposition: {disposition}", "", content]
        else:
            lines += [
                f'Content-Disposition: {disposition}; filename="{filename}"',
                "Content-Type: text/csv; charset=utf-8",
                "",
                content,
            ]
    return "\r\n".join([*lines, f"--{BOUNDARY}--", ""])


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
URLENCODED = "application/x-www-form-urlencoded"
FORMS = [
    pytest.param(URLENCODED, "a=1&a=2&n=7&e=%C3%A9+x", 200, id="urlencoded"),
    pytest.param(URLENCODED, "n=seven&flag", 200, id="urlencoded-bad-int"),
    pytest.param(URLENCODED, "long=" + "x" * 1200, 200, id="urlencoded-past-memory-limit"),
    pytest.param(
        MULTIPART,
        multipart(("a", None, "1"), ("doc", "r é.csv", "x,y\n1,2"), ("doc", "b.csv", "")),
        200,
        id="multipart-files",
    ),
    pytest.param(MULTIPART, multipart(("long", None, "x" * 1200)), 413, id="multipart-field-big"),
    # Werkzeug reads 64 KiB at a time and holds each read to MAX_FORM_MEMORY_SIZE:
    # with a limit this small, a file past it is refused too.
    pytest.param(
        MULTIPART, multipart(("doc", "big.bin", "x" * 3000)), 413, id="multipart-file-big"
    ),
    pytest.param(
        MULTIPART,
        multipart(*[(f"f{i}", None, str(i)) for i in range(5)]),
        413,
        id="multipart-too-many-parts",
    ),
    pytest.param(MULTIPART, "--b0undary\r\ngarbage", 200, id="multipart-malformed"),
    pytest.param(
        "multipart/form-data", multipart(("a", None, "1")), 200, id="multipart-no-boundary"
    ),
    pytest.param("application/json", '{"a": 1}', 200, id="json-is-no-form"),
    pytest.param(URLENCODED, "a=" + "x" * 5000, 413, id="past-max-content-length"),
]


@pytest.mark.parametrize(("content_type", "body", "status"), FORMS)
async def test_form_and_files_answer_as_flask(
    runner: ShadowRunner, content_type: str, body: str, status: int
) -> None:
    legacy = await same(
        runner, method="POST", path="/form", headers={"Content-Type": content_type}, body=body
    )

    assert legacy.status == status


async def test_form_parts_are_read_as_flask_reads_them(runner: ShadowRunner) -> None:
    body = multipart(("a", None, "1"), ("n", None, "3"), ("doc", "r.csv", "x,y"))

    legacy = await same(
        runner, method="POST", path="/form", headers={"Content-Type": MULTIPART}, body=body
    )

    answer = json.loads(legacy.body)
    assert answer["form"] == {"a": ["1"], "n": ["3"]}
    assert answer["n"] == 3
    digest = hashlib.sha256(b"x,y").hexdigest()
    assert answer["files"] == {"doc": [["r.csv", "text/csv; charset=utf-8", "text/csv", digest]]}


async def test_flasks_default_limits_apply_without_the_flask_app() -> None:
    app = ported_app()  # no hybrid in front: app.state has no Flask app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        small = await client.post("/form", files={"f": ("a.txt", b"x" * 600_000)})
        big = await client.post("/form", data={"f": "x"}, files={"g": ("a", b"")}, headers={})
        field = await client.post(
            "/form",
            content=multipart(("long", None, "x" * 500_001)),
            headers={"Content-Type": MULTIPART},
        )

    assert small.status_code == big.status_code == 200  # files may be larger than fields
    assert field.status_code == 413
    assert field.json() == error_body(
        413, "Request Entity Too Large", RequestEntityTooLarge.description
    )


@pytest.mark.parametrize("query", ["", "t=a&t=b&t=", "n=1&n=x&n=3", "t=%C3%A9&n=-2&n=%201", "t&n"])
async def test_arg_list_answers_as_flask(runner: ShadowRunner, query: str) -> None:
    legacy = await same(runner, method="GET", path=f"/args?{query}")

    assert legacy.status == 200


@pytest.mark.parametrize(
    ("host", "external"),
    [
        (None, "http://localhost/links/a%20b?q=%C3%A9+x"),
        ("Example.COM:80", "http://example.com/links/a%20b?q=%C3%A9+x"),
        ("example.com:8080", "http://example.com:8080/links/a%20b?q=%C3%A9+x"),
        ("[::1]:8000", "http://[::1]:8000/links/a%20b?q=%C3%A9+x"),
        ("bad host", "http:///links/a%20b?q=%C3%A9+x"),
    ],
)
async def test_external_urls_answer_as_flask(
    runner: ShadowRunner, host: str | None, external: str
) -> None:
    headers = {"Host": host} if host else {}

    legacy = await same(runner, method="GET", path="/links/a%20b", headers=headers)

    answer = json.loads(legacy.body)
    assert answer["external"] == external
    assert answer["remote_addr"] == "127.0.0.1"


@pytest.mark.parametrize("root_path", ["", "/shop"])
@pytest.mark.parametrize(
    "base_url", ["https://example.com", "https://example.com:443", "http://h:81"]
)
async def test_external_urls_follow_the_scheme_and_root(base_url: str, root_path: str) -> None:
    with httpx.Client(
        transport=httpx.WSGITransport(app=legacy_app(), script_name=root_path), base_url=base_url
    ) as client:
        legacy = client.get("/links/x")
    transport = httpx.ASGITransport(app=ported_app(), root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        ported = await client.get(root_path + "/links/x")

    assert ported.content == legacy.content
    assert legacy.json()["https"].startswith("https://")
    assert legacy.json()["external"].startswith(base_url.replace(":443", "") + root_path + "/")


def test_scheme_without_external_is_flasks_value_error() -> None:
    scope = {"type": "http", "app": ported_app(), "headers": []}

    with pytest.raises(ValueError, match="'_external' must be True"):
        compat.url_for(Request(scope), "links", name="x", _scheme="https")
