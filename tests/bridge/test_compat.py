"""The compat helpers answer what Flask answers, for the same requests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask, jsonify, request, url_for
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest

from bridge import compat
from bridge.errors import install_error_envelope
from bridge.responses import FlaskJSONResponse
from tests.bridge.apps import error_body, install_flask_envelope

pytestmark = pytest.mark.anyio


def legacy_app() -> Flask:
    app = Flask(__name__)
    install_flask_envelope(app)

    @app.post("/echo")
    def echo() -> Any:
        return jsonify(body=request.get_json())

    @app.get("/args")
    def args() -> Any:
        return jsonify(
            n=request.args.get("n", -1, type=int),
            f=request.args.get("f", type=float),
            s=request.args.get("s"),
            d=request.args.get("d", "default"),
            all=dict(request.args),
        )

    @app.get("/products/<int:product_id>", endpoint="product")
    def product(product_id: int) -> Any:
        return jsonify(url=url_for("product", product_id=product_id))

    return app


def ported_app() -> FastAPI:
    app = FastAPI(default_response_class=FlaskJSONResponse)
    install_error_envelope(app, error_body)

    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return FlaskJSONResponse({"body": await compat.get_json(request)})

    @app.get("/args")
    def args(request: Request) -> Any:
        return FlaskJSONResponse(
            {
                "n": compat.arg(request, "n", -1, type=int),
                "f": compat.arg(request, "f", type=float),
                "s": compat.arg(request, "s"),
                "d": compat.arg(request, "d", "default"),
                "all": compat.args(request),
            }
        )

    @app.get("/products/{product_id:int}", name="product")
    def product(request: Request, product_id: int) -> Any:
        return FlaskJSONResponse({"url": compat.url_for(request, "product", product_id=product_id)})

    return app


async def both(method: str, path: str, root_path: str = "", **kwargs: Any) -> list[httpx.Response]:
    with httpx.Client(
        transport=httpx.WSGITransport(app=legacy_app(), script_name=root_path),
        base_url="http://testserver",
    ) as legacy_client:
        legacy = legacy_client.request(method, path, **kwargs)  # PATH_INFO after SCRIPT_NAME
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ported_app(), root_path=root_path),
        base_url="http://testserver",
    ) as ported_client:
        ported = await ported_client.request(method, root_path + path, **kwargs)
    return [legacy, ported]


JSON_CASES = [
    pytest.param("application/json", b'{"a": [1, "\\u00e9"]}', id="json"),
    pytest.param("application/json; charset=utf-8", b'{"a": 1}', id="json-charset"),
    pytest.param("Application/JSON", b"[1, 2]", id="json-uppercase"),
    pytest.param("application/vnd.x+json", b'{"v": true}', id="vendor-json"),
    pytest.param("application/problem+json", b"null", id="problem-json"),
    pytest.param("application/json", b"{not json", id="malformed"),
    pytest.param("application/json", b"", id="empty"),
    pytest.param("application/json", b"\xff\xfe\x00", id="not-utf8"),
    pytest.param("application/vnd.x+json", b"{", id="vendor-malformed"),
    pytest.param("text/plain", b'{"a": 1}', id="text-plain"),
    pytest.param("text/json", b'{"a": 1}', id="text-json"),
    pytest.param("application/x-www-form-urlencoded", b"a=1", id="form"),
    pytest.param("application/jsonx", b"{}", id="jsonx"),
    pytest.param(None, b'{"a": 1}', id="no-content-type"),
]


@pytest.mark.parametrize(("content_type", "body"), JSON_CASES)
async def test_get_json_answers_as_flask(content_type: str | None, body: bytes) -> None:
    headers = {"content-type": content_type} if content_type else {}

    legacy, ported = await both("POST", "/echo", content=body, headers=headers)

    assert ported.status_code == legacy.status_code
    assert ported.content == legacy.content


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 200), ("text/plain", 415), ("application/json; x=y", 400)],
)
async def test_get_json_status(content_type: str, status: int) -> None:
    body = b'{"a": 1}' if status != 400 else b"{"

    _legacy, ported = await both(
        "POST", "/echo", content=body, headers={"content-type": content_type}
    )

    assert ported.status_code == status


@pytest.mark.parametrize(
    "query",
    [
        "",
        "n=5",
        "n=abc",
        "n=",
        "n=5&n=7",
        "n=%207%20",
        "f=1.5",
        "f=x",
        "s=a&s=b",
        "s=",
        "s",
        "s=a+b%26c",
        "d=given",
        "x=1&y=2&x=3",
    ],
)
async def test_arg_and_args_answer_as_flask(query: str) -> None:
    legacy, ported = await both("GET", f"/args?{query}")

    assert ported.status_code == legacy.status_code == 200
    assert ported.content == legacy.content


def test_arg_gives_the_first_of_repeated_values() -> None:
    request = Request({"type": "http", "query_string": b"n=5&n=7", "headers": []})

    assert compat.arg(request, "n", type=int) == 5
    assert compat.arg(request, "n") == "5"
    assert compat.arg(request, "m", "dflt") == "dflt"
    assert compat.args(request) == {"n": "5"}


def test_arg_conversion_failure_gives_the_default() -> None:
    request = Request({"type": "http", "query_string": b"n=abc", "headers": []})

    assert compat.arg(request, "n", 0, type=int) == 0
    assert compat.arg(request, "n", type=int) is None


@pytest.mark.parametrize("root_path", ["", "/shop"])
async def test_url_for_answers_as_flask(root_path: str) -> None:
    legacy, ported = await both("GET", "/products/7", root_path=root_path)

    assert ported.json() == legacy.json() == {"url": f"{root_path}/products/7"}


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json;charset=utf-8", True),
        (" APPLICATION/JSON ", True),
        ("application/merge-patch+json", True),
        ("application/json-seq", False),
        ("text/json", False),
        ("text/x+json", False),
        ("", False),
        (None, False),
    ],
)
def test_is_json_is_werkzeugs(content_type: str | None, expected: bool) -> None:
    headers = [("Content-Type", content_type)] if content_type is not None else []
    werkzeug = WerkzeugRequest(EnvironBuilder(headers=headers).get_environ())

    assert compat.is_json(content_type) is werkzeug.is_json is expected
