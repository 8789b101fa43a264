from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask, jsonify, redirect
from markupsafe import Markup

from bridge._porting.responses import FlaskJSONResponse, flask_json_dumps, flask_redirect


@dataclasses.dataclass
class Point:
    x: int
    label: str


CONTENTS = [
    pytest.param({"b": {"z": 1, "a": [3, {"y": None, "x": True}]}, "a": 1.5}, id="nested-unsorted"),
    pytest.param({"name": "Zoë — ☃ 𝄞", "ключ": "значение"}, id="non-ascii"),
    pytest.param({"day": date(2024, 2, 29)}, id="date"),
    pytest.param({"at": datetime(2024, 2, 29, 13, 5, 9)}, id="naive-datetime"),
    pytest.param(
        {"at": datetime(2024, 2, 29, 13, 5, 9, tzinfo=timezone(timedelta(hours=2)))}, id="aware"
    ),
    pytest.param({"price": Decimal("19.90"), "tiny": Decimal("1E-7")}, id="decimal"),
    pytest.param({"id": uuid.UUID("12345678-1234-5678-1234-567812345678")}, id="uuid"),
    pytest.param({"point": Point(1, "p")}, id="dataclass"),
    pytest.param({"html": Markup("<b>&amp;</b>")}, id="markup"),
    pytest.param([1, "two", None, {"k": []}], id="list"),
    pytest.param({}, id="empty"),
    pytest.param("just a string", id="string"),
    pytest.param({"nan": float("nan"), "big": 10**30}, id="nan-bigint"),
]


def jsonify_bytes(content: Any) -> bytes:
    app = Flask(__name__)
    with app.app_context():
        return jsonify(content).get_data()


@pytest.mark.parametrize("content", CONTENTS)
def test_bytes_equal_flask_jsonify(content: Any) -> None:
    expected = jsonify_bytes(content)

    assert flask_json_dumps(content) == expected
    assert FlaskJSONResponse(content).body == expected


def test_content_type_is_flasks() -> None:
    response = FlaskJSONResponse({"a": 1})

    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(b'{"a":1}\n')


def test_unknown_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        flask_json_dumps({"x": object()})


LOCATIONS = [
    "/login",
    "/search?q=a b&x=ü",
    "https://example.test/x",
    "/produits/été",
    "/日本",
    "/a%20b/%C3%A9?already=%20quoted",
    "/path with space#frag ment é",
    "http://bücher.example:8080/ä?ö=ü#ß",
    "http://user:pä ss@[::1]:81/x",
    "//evil.example/<script>&\"'",
    "?only=query",
    "",
]


def flask_sends(location: str, code: int) -> httpx.Response:
    app = Flask(__name__)
    app.add_url_rule("/", "go", lambda: redirect(location, code))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        return client.get("/")


async def we_send(location: str, code: int) -> httpx.Response:
    app = FastAPI()
    app.add_api_route("/", lambda: flask_redirect(location, code))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/")


@pytest.mark.anyio
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("location", LOCATIONS)
async def test_flask_redirect_sends_what_flask_sends(code: int, location: str) -> None:
    legacy = flask_sends(location, code)

    ported = await we_send(location, code)

    assert ported.status_code == legacy.status_code == code
    assert ported.headers.get_list("location") == legacy.headers.get_list("location")
    assert ported.headers["content-type"] == legacy.headers["content-type"]
    assert ported.content == legacy.content


@pytest.mark.parametrize(
    ("location", "sent"),
    [("/produits/été", b"/produits/%C3%A9t%C3%A9"), ("/日本", b"/%E6%97%A5%E6%9C%AC")],
)
def test_flask_redirect_location_is_a_uri(location: str, sent: bytes) -> None:
    response = flask_redirect(location)

    assert (b"location", sent) in response.raw_headers
