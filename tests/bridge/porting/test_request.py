"""The compat helpers answer what Flask answers, for the same requests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse
from flask import Blueprint, Flask, jsonify, request, url_for
from starlette.routing import NoMatchFound
from starlette.types import Message
from werkzeug.exceptions import BadRequest

from bridge import URLForError
from bridge._porting import request as compat
from bridge._porting.error_envelope import install_error_envelope
from bridge._porting.responses import FlaskJSONResponse
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


async def both(
    method: str,
    path: str,
    root_path: str = "",
    apps: tuple[Flask, FastAPI] | None = None,
    **kwargs: Any,
) -> list[httpx.Response]:
    legacy_wsgi, ported_asgi = apps or (legacy_app(), ported_app())
    with httpx.Client(
        transport=httpx.WSGITransport(app=legacy_wsgi, script_name=root_path),
        base_url="http://testserver",
    ) as legacy_client:
        legacy = legacy_client.request(method, path, **kwargs)  # PATH_INFO after SCRIPT_NAME
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ported_asgi, root_path=root_path),
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


async def test_a_body_that_does_not_parse_is_a_400_chained_to_the_decoding_error() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"a": ', "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    with pytest.raises(HTTPException) as caught:
        await compat.get_json(Request(scope, receive))

    assert caught.value.status_code == 400
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)  # for the server's log


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


# (endpoint, values, Flask's answer at the script root). Each pair of apps
# below declares the same routes, Flask's with blueprints and FastAPI's with
# routers included under the same prefixes.
URL_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("item", {"i": 1, "page": 2}, "/items/1?page=2"),
    (
        "item",
        {"i": 1, "q": None, "tags": ["a", "b c", None, "é"], "none": []},
        "/items/1?tags=a&tags=b+c&tags=%C3%A9",
    ),
    ("item", {"i": 1, "x": "&=+#?/", "ключ": "значение", "t": (1, 2)}, None),
    ("item", {"i": 1, "b": b"x y", "on": True, "f": 0.1}, None),
    ("item", {"i": "7"}, "/items/7"),
    ("users", {}, "/users/"),
    ("users", {"page": 2, "q": "x"}, "/users/page/2?q=x"),
    ("item", {"i": True}, "/items/1"),
    ("item", {"i": -3}, "/items/-3"),
    ("catalog.sku", {"s": "a b#é"}, "/catalog/sku/a%20b%23%C3%A9"),
    ("catalog.sku", {"s": "a/b?c%d&e=f"}, "/catalog/sku/a/b%3Fc%25d&e=f"),
    ("catalog.sku", {"s": "日本 語", "a": 1, "b": 2, "c": 3}, None),
    ("catalog.sku", {"s": 42}, "/catalog/sku/42"),
    ("catalog.sku", {"s": 271828182845904}, None),
    ("catalog.sku", {"s": "x", "_anchor": "a b#é?/%"}, "/catalog/sku/x#a%20b#%C3%A9?/%"),
    ("catalog.sku", {"s": "x", "_anchor": ""}, "/catalog/sku/x#"),
    ("catalog.file", {"p": "a/b c/../é.txt"}, "/catalog/files/a/b%20c/../%C3%A9.txt"),
    ("catalog.price", {"x": 1.5}, "/catalog/price/1.5"),
    ("catalog.price", {"x": 3}, "/catalog/price/3.0"),
    ("catalog.price", {"x": 0.1, "cur": "€"}, "/catalog/price/0.1?cur=%E2%82%AC"),
    ("catalog.by_uuid", {"u": uuid.UUID(int=7)}, None),
    ("catalog.unicode_static", {"s": "1"}, "/catalog/%C3%A9t%C3%A9%20x/1"),
    ("catalog.index", {}, "/catalog/"),
    ("catalog.index", {"q": "ü", "n": [1, None, 2]}, "/catalog/?q=%C3%BC&n=1&n=2"),
    ("shop.orders.line", {"order_id": 5, "line": 2, "verbose": True}, None),
    (
        "shop.orders.line",
        {"line": 2, "order_id": 5, "_anchor": "top"},
        "/shop/orders/5/lines/2#top",
    ),
]


def legacy_url_app() -> Flask:
    app = Flask(__name__)

    @app.get("/probe/<int:case>")
    def probe(case: int) -> str:
        endpoint, values, _ = URL_CASES[case]
        return url_for(endpoint, **values)

    @app.get("/items/<int:i>", endpoint="item")
    def item(i: int) -> str:
        return ""

    # Two rules for one endpoint: Werkzeug builds with the one that uses more values.
    app.add_url_rule("/users/", "users", defaults={"page": 1})
    app.add_url_rule("/users/page/<int:page>", "users")

    catalog = Blueprint("catalog", __name__, url_prefix="/catalog")
    catalog.add_url_rule("/", "index")
    catalog.add_url_rule("/sku/<s>", "sku")
    catalog.add_url_rule("/files/<path:p>", "file")
    catalog.add_url_rule("/price/<float:x>", "price")
    catalog.add_url_rule("/by-uuid/<uuid:u>", "by_uuid")
    catalog.add_url_rule("/été x/<s>", "unicode_static")
    app.register_blueprint(catalog)

    orders = Blueprint("orders", __name__, url_prefix="/orders")
    orders.add_url_rule("/<int:order_id>/lines/<int:line>", "line")
    shop = Blueprint("shop", __name__, url_prefix="/shop")
    shop.register_blueprint(orders)
    app.register_blueprint(shop)
    return app


def ported_url_app() -> FastAPI:
    app = FastAPI()

    @app.get("/probe/{case:int}")
    def probe(request: Request, case: int) -> PlainTextResponse:
        endpoint, values, _ = URL_CASES[case]
        return PlainTextResponse(compat.url_for(request, endpoint, **values))

    @app.get("/items/{i:int}", name="item")
    def item() -> None: ...

    app.add_api_route("/users/", item, name="users")
    app.add_api_route("/users/page/{page:int}", item, name="users")

    catalog = APIRouter()
    catalog.add_api_route("/", item, name="catalog.index")
    catalog.add_api_route("/sku/{s}", item, name="catalog.sku")
    catalog.add_api_route("/files/{p:path}", item, name="catalog.file")
    catalog.add_api_route("/price/{x:float}", item, name="catalog.price")
    catalog.add_api_route("/by-uuid/{u:uuid}", item, name="catalog.by_uuid")
    catalog.add_api_route("/été x/{s}", item, name="catalog.unicode_static")
    app.include_router(catalog, prefix="/catalog")

    orders = APIRouter()
    orders.add_api_route("/{order_id:int}/lines/{line:int}", item, name="shop.orders.line")
    shop = APIRouter()
    shop.include_router(orders, prefix="/orders")
    app.include_router(shop, prefix="/shop")
    return app


@pytest.mark.parametrize("root_path", ["", "/mount", "/with space/"])
@pytest.mark.parametrize(
    "case", [pytest.param(i, id=f"{c[0]}-{i}") for i, c in enumerate(URL_CASES)]
)
async def test_url_for_builds_flasks_url(case: int, root_path: str) -> None:
    apps = (legacy_url_app(), ported_url_app())

    legacy, ported = await both("GET", f"/probe/{case}", root_path, apps)

    assert legacy.status_code == ported.status_code == 200
    assert ported.content == legacy.content
    expected = URL_CASES[case][2]
    if expected is not None:  # Flask's answer, written out where it shows the rule
        assert legacy.text == root_path.rstrip("/") + expected


@pytest.mark.parametrize(
    ("name", "values"),
    [("nowhere", {}), ("catalog.sku", {}), ("catalog.sku", {"s": None}), ("item", {"j": 1})],
)
def test_url_for_without_a_route_is_no_match(name: str, values: dict[str, Any]) -> None:
    request = Request({"type": "http", "app": ported_url_app(), "headers": []})

    with pytest.raises(NoMatchFound):
        compat.url_for(request, name, **values)


def test_url_for_remembers_which_values_are_path_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = ported_url_app()
    calls: list[str] = []
    url_path_for = app.url_path_for

    def counting(name: str, /, **path_params: Any) -> Any:
        calls.append(name)
        return url_path_for(name, **path_params)

    monkeypatch.setattr(app, "url_path_for", counting)
    request = Request({"type": "http", "app": app, "headers": []})
    values: dict[str, Any] = {"s": "x", "a": 1, "b": 2, "c": 3, "d": 4}

    first = compat.url_for(request, "catalog.sku", **values)
    searched = len(calls)
    again = compat.url_for(request, "catalog.sku", **values)

    assert first == again == "/catalog/sku/x?a=1&b=2&c=3&d=4"
    assert searched > 1
    assert len(calls) == searched + 1


def test_url_for_bounds_the_search() -> None:
    request = Request({"type": "http", "app": ported_url_app(), "headers": []})
    eight: dict[str, Any] = {"s": "x", **{f"v{i}": i for i in range(7)}}
    query = "&".join(f"v{i}={i}" for i in range(7))

    # Names that cannot be path parameters are not searched.
    odd_name: dict[str, Any] = {"not-a-name": 1}
    assert compat.url_for(request, "catalog.sku", **eight, **odd_name) == (
        f"/catalog/sku/x?{query}&not-a-name=1"
    )
    with pytest.raises(URLForError, match="at most 8 values"):
        compat.url_for(request, "catalog.sku", **eight, v7=7)


def test_url_for_refuses_what_it_does_not_reproduce() -> None:
    request = Request({"type": "http", "app": ported_url_app(), "headers": []})

    with pytest.raises(URLForError, match="_method") as caught:
        compat.url_for(request, "item", i=1, _method="GET")
    assert isinstance(caught.value, TypeError)  # what callers caught before


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000]
)
async def test_json_nested_past_the_recursion_limit_is_a_400(body: bytes) -> None:
    # json.loads raises RecursionError, not ValueError: it escaped as a 500.
    transport = httpx.ASGITransport(app=ported_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/echo", content=body, headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert response.json() == error_body(400, "Bad Request", BadRequest.description)
