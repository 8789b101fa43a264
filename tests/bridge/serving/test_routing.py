from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.routing import Route
from starlette.types import Scope
from werkzeug.exceptions import SecurityError
from werkzeug.routing import Map, MapAdapter, Rule

from bridge._exceptions import ManifestError
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import Manifest, RouteKey, RouteState, parse_manifest
from bridge._serving.routing import (
    RouteTable,
    Target,
    async_serves,
    bind_request,
    sample_path,
)
from tests.bridge.apps import http_scope


def legacy_app() -> Flask:
    app = Flask(__name__, static_folder=None)

    @app.get("/products")
    def list_products() -> str:
        return "legacy"

    @app.post("/products")
    def create_product() -> str:
        return "legacy"

    @app.get("/products/<int:product_id>")
    def get_product(product_id: int) -> str:
        return "legacy"

    @app.get("/orders/")
    def list_orders() -> str:
        return "legacy"

    @app.get("/reports")
    def reports() -> str:
        return "legacy"

    @app.get("/feed")
    def feed() -> str:
        return "legacy"

    return app


def ported_app() -> FastAPI:
    app = FastAPI()

    @app.get("/products")
    def list_products() -> str:
        return "async"

    @app.get("/products/{product_id:int}")
    def get_product(product_id: int) -> str:
        return "async"

    @app.get("/orders/")
    def list_orders() -> str:
        return "async"

    @app.delete("/reports")
    def delete_reports() -> str:
        return "async, but Flask has no DELETE /reports"

    @app.get("/health")
    def health() -> str:
        return "async only"

    @app.api_route("/feed", methods=["GET", "HEAD"])
    def feed() -> str:
        return "async"

    return app


TableFactory = Callable[..., RouteTable]


@pytest.fixture(params=["url_map", "flask_app"])
def table(request: pytest.FixtureRequest) -> Iterator[TableFactory]:
    """Builds the table of the two apps above, bound to each request either from
    the URL map alone (the default) or by the Flask app, as the hybrid binds it."""
    hybrids: list[HybridApp] = []

    def make(manifest_text: str = "") -> RouteTable:
        manifest = parse_manifest(manifest_text)
        if request.param == "url_map":
            return RouteTable(legacy_app().url_map, ported_app().routes, manifest)
        hybrids.append(HybridApp(legacy_app(), ported_app(), manifest))
        return hybrids[-1].routes

    yield make
    for hybrid in hybrids:
        hybrid.legacy.shutdown()


ALL_ASYNC = """
[routes]
"GET /products" = "async"
"GET /products/<int:product_id>" = "async"
"GET /orders/" = "async"
"GET /feed" = "async"
"""


def bound_rule(rule: str) -> Rule:
    url_map = Map([Rule(rule, endpoint="endpoint")])
    return next(url_map.iter_rules())


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("/api/products", "/api/products"),
        ("/api/products/<int:product_id>", "/api/products/1"),
        ("/api/products/<product_id>", "/api/products/1"),
        ("/prices/<float:amount>", "/prices/1.5"),
        ("/orders/<uuid:order_id>", "/orders/00000000-0000-0000-0000-000000000000"),
        ("/files/<path:name>/raw", "/files/1/raw"),
        ("/a/<int:x>/b/<y>", "/a/1/b/1"),
    ],
)
def test_sample_path_is_a_path_the_rule_matches(rule: str, path: str) -> None:
    assert sample_path(bound_rule(rule)) == path
    assert Map([Rule(rule, endpoint="e")]).bind("h").match(path)[0] == "e"


@pytest.mark.parametrize(
    ("method", "path", "served"),
    [
        ("GET", "/products/1", True),
        ("GET", "/products/x", False),
        ("POST", "/products/1", False),
        ("GET", "/v2/ping", True),
        ("HEAD", "/products/1", False),
    ],
)
def test_async_serves_needs_a_full_match(method: str, path: str, served: bool) -> None:
    app = FastAPI()
    app.add_api_route("/products/{product_id:int}", lambda product_id: product_id)
    sub = FastAPI()
    sub.add_api_route("/ping", lambda: "pong")
    app.mount("/v2", sub)

    assert async_serves(app.routes, method, path) is served


@pytest.mark.parametrize(
    ("flask_rule", "fastapi_path"),
    [
        ("/reports.<any(csv, json):fmt>", "/reports.{fmt}"),
        ("/<string(length=2):lang>/about", "/{lang}/about"),
    ],
)
def test_rules_with_builtin_converters_can_be_ported(flask_rule: str, fastapi_path: str) -> None:
    flask_app = Flask(__name__, static_folder=None)
    flask_app.add_url_rule(flask_rule, "legacy", lambda **kwargs: "legacy")
    fastapi_app = FastAPI()
    fastapi_app.add_api_route(fastapi_path, lambda **kwargs: "async")
    manifest = parse_manifest(f'[routes]\n"GET {flask_rule}" = "async"\n')

    routes = RouteTable(flask_app.url_map, fastapi_app.routes, manifest)

    assert [route.ported for route in routes.routes] == [True]


def test_unlisted_routes_are_legacy_even_when_ported(table: TableFactory) -> None:
    routes = table()

    assert routes.side_for(http_scope("GET", "/products")) is RouteState.LEGACY
    assert routes.side_for(http_scope("GET", "/products/3")) is RouteState.LEGACY


def test_async_state_sends_requests_to_fastapi(table: TableFactory) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("GET", "/products")) is RouteState.ASYNC
    assert routes.side_for(http_scope("POST", "/products")) is RouteState.LEGACY  # not listed
    assert routes.side_for(http_scope("GET", "/orders/")) is RouteState.ASYNC


def test_flask_int_rule_and_starlette_int_route_match_the_same_requests(
    table: TableFactory,
) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("GET", "/products/42")) is RouteState.ASYNC
    # Neither converter accepts these: Flask answers its own 404.
    assert routes.side_for(http_scope("GET", "/products/abc")) is RouteState.LEGACY
    assert routes.side_for(http_scope("GET", "/products/-1")) is RouteState.LEGACY


def test_async_state_goes_legacy_when_fastapi_does_not_match_the_request() -> None:
    flask_app = Flask(__name__, static_folder=None)
    flask_app.add_url_rule("/files/<path:name>", "file", lambda name: name)
    fastapi_app = FastAPI()
    fastapi_app.add_api_route("/files/{name}", lambda name: name)  # no slashes in {name}
    manifest = parse_manifest('[routes]\n"GET /files/<path:name>" = "async"\n')
    routes = RouteTable(flask_app.url_map, fastapi_app.routes, manifest)

    assert routes.side_for(http_scope("GET", "/files/a.txt")) is RouteState.ASYNC
    assert routes.side_for(http_scope("GET", "/files/dir/a.txt")) is RouteState.LEGACY


def test_routes_list_state_and_port_of_every_flask_method(table: TableFactory) -> None:
    routes = {route.key: route for route in table(ALL_ASYNC).routes}

    assert set(routes) == {
        RouteKey("GET", "/products"),
        RouteKey("POST", "/products"),
        RouteKey("GET", "/products/<int:product_id>"),
        RouteKey("GET", "/orders/"),
        RouteKey("GET", "/reports"),
        RouteKey("GET", "/feed"),
    }
    assert routes[RouteKey("GET", "/products/<int:product_id>")].ported
    assert routes[RouteKey("GET", "/products/<int:product_id>")].state is RouteState.ASYNC
    assert routes[RouteKey("GET", "/products/<int:product_id>")].endpoint == "get_product"
    assert not routes[RouteKey("POST", "/products")].ported
    assert not routes[RouteKey("GET", "/reports")].ported  # FastAPI has DELETE only


def test_manifest_key_matching_no_flask_rule_names_the_route_and_the_closest_rules() -> None:
    manifest = parse_manifest(
        '[routes]\n"GET /product/<int:product_id>" = "legacy"\n', path="m.toml"
    )

    with pytest.raises(ManifestError) as caught:
        RouteTable(legacy_app().url_map, ported_app().routes, manifest)

    message = str(caught.value)
    assert message.startswith("m.toml: route GET /product/<int:product_id> matches no rule")
    assert "closest: GET /products/<int:product_id>" in message
    assert "\n" not in message


def test_manifest_key_with_wrong_method_is_an_error(table: TableFactory) -> None:
    with pytest.raises(ManifestError, match="route DELETE /products matches no rule"):
        table('[routes]\n"DELETE /products" = "legacy"\n')


def test_async_key_without_a_fastapi_port_is_an_error(table: TableFactory) -> None:
    with pytest.raises(ManifestError) as caught:
        table('[routes]\n"POST /products" = "async"\n')

    message = str(caught.value)
    assert "route POST /products is async but the FastAPI app has no POST route" in message


def test_legacy_key_without_a_fastapi_port_is_fine(table: TableFactory) -> None:
    routes = table('[routes]\n"POST /products" = "legacy"\n')

    assert routes.side_for(http_scope("POST", "/products")) is RouteState.LEGACY


def test_request_matching_no_flask_rule_goes_to_fastapi_when_it_fully_matches(
    table: TableFactory,
) -> None:
    routes = table()

    assert routes.side_for(http_scope("GET", "/health")) is RouteState.ASYNC
    assert routes.side_for(http_scope("POST", "/health")) is RouteState.LEGACY  # partial match
    assert routes.side_for(http_scope("GET", "/nowhere")) is RouteState.LEGACY


def test_method_not_allowed_stays_legacy_even_when_fastapi_has_the_method(
    table: TableFactory,
) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("DELETE", "/reports")) is RouteState.LEGACY
    assert routes.side_for(http_scope("PUT", "/products")) is RouteState.LEGACY


def test_trailing_slash_redirect_stays_legacy(table: TableFactory) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("GET", "/orders")) is RouteState.LEGACY


def test_head_follows_get_only_when_fastapi_answers_head(table: TableFactory) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("HEAD", "/feed")) is RouteState.ASYNC
    # FastAPI's @app.get does not answer HEAD, so Flask keeps it.
    assert routes.side_for(http_scope("HEAD", "/products")) is RouteState.LEGACY


def test_head_of_a_legacy_get_stays_legacy(table: TableFactory) -> None:
    routes = table()

    assert routes.side_for(http_scope("HEAD", "/feed")) is RouteState.LEGACY


def test_options_stays_legacy(table: TableFactory) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("OPTIONS", "/products")) is RouteState.LEGACY


def test_starlette_routes_and_mounts_count_as_ports() -> None:
    flask_app = Flask(__name__, static_folder=None)
    flask_app.add_url_rule("/api/v2/ping", "ping", lambda: "legacy")
    flask_app.add_url_rule("/plain", "plain", lambda: "legacy")
    sub = FastAPI()
    sub.add_api_route("/ping", lambda: "async")
    fastapi_app = FastAPI()
    fastapi_app.mount("/api/v2", sub)
    fastapi_app.router.routes.append(Route("/plain", lambda request: None))
    manifest = parse_manifest('[routes]\n"GET /api/v2/ping" = "async"\n"GET /plain" = "async"\n')

    routes = RouteTable(flask_app.url_map, fastapi_app.routes, manifest)

    assert routes.side_for(http_scope("GET", "/api/v2/ping")) is RouteState.ASYNC
    assert routes.side_for(http_scope("GET", "/plain")) is RouteState.ASYNC
    # Starlette's Route answers HEAD wherever it answers GET.
    assert routes.side_for(http_scope("HEAD", "/plain")) is RouteState.ASYNC


def test_root_path_is_stripped_before_matching(table: TableFactory) -> None:
    routes = table(ALL_ASYNC)

    assert routes.side_for(http_scope("GET", "/products", root_path="/shop")) is RouteState.ASYNC
    assert routes.side_for(http_scope("POST", "/products", root_path="/shop")) is RouteState.LEGACY
    assert routes.side_for(http_scope("GET", "/health", root_path="/shop")) is RouteState.ASYNC
    assert routes.side_for(http_scope("GET", "/orders", root_path="/shop")) is RouteState.LEGACY


def test_manifest_state_is_looked_up_by_rule_not_by_path() -> None:
    manifest = Manifest(routes={RouteKey("GET", "/products/<int:product_id>"): RouteState.ASYNC})
    routes = RouteTable(legacy_app().url_map, ported_app().routes, manifest)

    assert routes.match_rule(http_scope("GET", "/products/7")) is not None
    assert routes.side_for(http_scope("GET", "/products/7")) is RouteState.ASYNC
    assert routes.side_for(http_scope("GET", "/products")) is RouteState.LEGACY


def host_app() -> Flask:
    app = Flask(__name__, static_folder=None, host_matching=True)
    app.add_url_rule("/x", "x", lambda: "legacy", host="example.com")
    return app


def served_everywhere() -> FastAPI:
    app = FastAPI()
    app.add_api_route("/x", lambda: "async")
    app.add_api_route("/y", lambda: "async")
    return app


@pytest.mark.parametrize(
    ("scheme", "host", "matches"),
    [
        ("http", b"example.com", True),
        ("http", b"example.com:80", True),
        ("http", b"EXAMPLE.COM", True),
        ("https", b"example.com:443", True),
        ("http", b"example.com:8080", False),
        ("https", b"example.com:80", False),
    ],
)
def test_default_binding_reads_the_host_as_werkzeug_does(
    scheme: str, host: bytes, matches: bool
) -> None:
    manifest = parse_manifest('[routes]\n"GET /x" = "legacy"\n')
    routes = RouteTable(host_app().url_map, served_everywhere().routes, manifest)
    scope = {**http_scope("GET", "/x"), "scheme": scheme, "headers": [(b"host", host)]}

    assert (routes.match_rule(scope) is not None) is matches
    assert routes.side_for(scope) is (RouteState.LEGACY if matches else RouteState.ASYNC)


def test_default_binding_without_a_host_header_uses_the_server_address() -> None:
    manifest = parse_manifest('[routes]\n"GET /x" = "legacy"\n')
    routes = RouteTable(host_app().url_map, served_everywhere().routes, manifest)
    scope = {**http_scope("GET", "/x"), "headers": [], "server": ("example.com", 80)}

    assert routes.side_for(scope) is RouteState.LEGACY


def test_the_binder_given_decides_which_rule_matches() -> None:
    flask_app = Flask(__name__, static_folder=None, subdomain_matching=True)
    flask_app.add_url_rule("/y", "y", lambda: "legacy", subdomain="api")
    manifest = parse_manifest('[routes]\n"GET /y" = "legacy"\n')
    bound: list[str] = []

    def bind(scope: Scope) -> MapAdapter:
        bound.append(scope["path"])
        return flask_app.url_map.bind(
            "example.com", subdomain="api", default_method=scope["method"], path_info="/y"
        )

    routes = RouteTable(flask_app.url_map, served_everywhere().routes, manifest, bind=bind)

    assert routes.side_for(http_scope("GET", "/y")) is RouteState.LEGACY
    assert bound == ["/y"]


@pytest.mark.parametrize("refusal", [SecurityError("untrusted host"), None])
def test_a_request_the_binder_refuses_stays_legacy(refusal: SecurityError | None) -> None:
    def bind(scope: Scope) -> MapAdapter | None:
        if refusal is not None:
            raise refusal
        return None

    manifest = parse_manifest('[routes]\n"GET /x" = "legacy"\n')
    routes = RouteTable(host_app().url_map, served_everywhere().routes, manifest, bind=bind)

    assert routes.side_for(http_scope("GET", "/x")) is RouteState.LEGACY
    assert routes.side_for(http_scope("GET", "/y")) is RouteState.LEGACY  # FastAPI serves it


def counting_binder(url_map: Map, bound: list[str]) -> Callable[[Scope], MapAdapter]:
    def bind(scope: Scope) -> MapAdapter:
        bound.append(scope["path"])
        return bind_request(url_map, scope)

    return bind


def test_the_side_of_a_request_is_decided_once_and_remembered() -> None:
    flask_app = legacy_app()
    bound: list[str] = []
    routes = RouteTable(
        flask_app.url_map,
        ported_app().routes,
        parse_manifest(ALL_ASYNC),
        bind=counting_binder(flask_app.url_map, bound),
    )

    sides = [routes.side_for(http_scope("GET", "/products")) for _ in range(3)]
    posted = routes.side_for(http_scope("POST", "/products"))

    assert sides == [RouteState.ASYNC] * 3
    assert posted is RouteState.LEGACY
    assert bound == ["/products", "/products"]  # once per method


@pytest.mark.parametrize(
    ("change", "value"),
    [("scheme", "https"), ("headers", [(b"host", b"other.example")]), ("root_path", "/shop")],
)
def test_each_part_of_the_request_that_routing_reads_is_decided_apart(
    change: str, value: object
) -> None:
    flask_app = legacy_app()
    bound: list[str] = []
    routes = RouteTable(
        flask_app.url_map,
        ported_app().routes,
        parse_manifest(ALL_ASYNC),
        bind=counting_binder(flask_app.url_map, bound),
    )
    scope = http_scope("GET", "/products")
    other = {**scope, change: value}
    if change == "root_path":
        other["path"] = "/shop/products"

    routes.side_for(scope)
    routes.side_for(other)

    assert len(bound) == 2


def test_host_matching_is_decided_per_host_though_the_path_is_the_same() -> None:
    manifest = parse_manifest('[routes]\n"GET /x" = "legacy"\n')
    routes = RouteTable(host_app().url_map, served_everywhere().routes, manifest)

    def side(host: bytes) -> RouteState:
        return routes.side_for({**http_scope("GET", "/x"), "headers": [(b"host", host)]})

    assert [side(b"example.com"), side(b"other.example"), side(b"example.com")] == [
        RouteState.LEGACY,
        RouteState.ASYNC,
        RouteState.LEGACY,
    ]


def test_without_a_host_header_the_server_address_is_part_of_the_decision() -> None:
    manifest = parse_manifest('[routes]\n"GET /x" = "legacy"\n')
    routes = RouteTable(host_app().url_map, served_everywhere().routes, manifest)

    def side(server: list[object]) -> RouteState:  # a list, as some servers give it
        return routes.side_for({**http_scope("GET", "/x"), "headers": [], "server": server})

    assert side(["example.com", 80]) is RouteState.LEGACY
    assert side(["other.example", 80]) is RouteState.ASYNC


def test_the_remembered_answers_are_bounded_and_the_oldest_go_first() -> None:
    flask_app = legacy_app()
    bound: list[str] = []
    routes = RouteTable(
        flask_app.url_map,
        ported_app().routes,
        parse_manifest(ALL_ASYNC),
        bind=counting_binder(flask_app.url_map, bound),
        memo_size=2,
    )

    for path in ["/products/1", "/products/2", "/products/3", "/products/3", "/products/1"]:
        assert routes.side_for(http_scope("GET", path)) is RouteState.ASYNC

    assert bound == ["/products/1", "/products/2", "/products/3", "/products/1"]


def test_reloading_the_manifest_forgets_the_remembered_answers() -> None:
    routes = RouteTable(legacy_app().url_map, ported_app().routes, parse_manifest(ALL_ASYNC))
    before = routes.side_for(http_scope("GET", "/products"))

    routes.reload(parse_manifest('[routes]\n"GET /products" = "legacy"\n'))

    assert before is RouteState.ASYNC
    assert routes.side_for(http_scope("GET", "/products")) is RouteState.LEGACY
    assert routes.manifest.routes == {RouteKey("GET", "/products"): RouteState.LEGACY}


def test_a_manifest_that_does_not_fit_is_refused_and_the_old_one_stays() -> None:
    routes = RouteTable(legacy_app().url_map, ported_app().routes, parse_manifest(ALL_ASYNC))

    with pytest.raises(ManifestError, match="GET /nowhere"):
        routes.reload(parse_manifest('[routes]\n"GET /nowhere" = "async"\n'))

    assert routes.side_for(http_scope("GET", "/products")) is RouteState.ASYNC
    assert routes.manifest.routes[RouteKey("GET", "/products")] is RouteState.ASYNC


ROLLING = """
[routes]
"GET /products" = { state = "canary", percent = 10 }
"GET /products/<int:product_id>" = "shadow"
"GET /feed" = "async"
"""


def test_target_names_the_route_its_state_and_whether_the_port_has_it(
    table: TableFactory,
) -> None:
    routes = table(ROLLING)

    assert routes.target_for(http_scope("GET", "/products")) == Target(
        RouteKey("GET", "/products"), RouteState.CANARY, ported=True
    )
    assert routes.target_for(http_scope("GET", "/products/7")) == Target(
        RouteKey("GET", "/products/<int:product_id>"), RouteState.SHADOW, ported=True
    )
    # Unlisted, and listed but not ported: a route still, so an override can name it.
    assert routes.target_for(http_scope("POST", "/products")) == Target(
        RouteKey("POST", "/products"), RouteState.LEGACY, ported=False
    )
    assert routes.target_for(http_scope("GET", "/orders/")) == Target(
        RouteKey("GET", "/orders/"), RouteState.LEGACY, ported=True
    )


def test_head_follows_its_get_and_automatic_options_belongs_to_no_route(
    table: TableFactory,
) -> None:
    routes = table(ROLLING)

    head = routes.target_for(http_scope("HEAD", "/feed"))
    options = routes.target_for(http_scope("OPTIONS", "/feed"))

    assert head == Target(RouteKey("GET", "/feed"), RouteState.ASYNC, ported=True)
    assert options.key is None
    assert options.state is RouteState.LEGACY
    assert options.label == "(unmatched)"


def test_requests_flask_answers_itself_belong_to_no_route(table: TableFactory) -> None:
    routes = table(ROLLING)

    for scope in (
        http_scope("DELETE", "/reports"),  # 405
        http_scope("GET", "/orders"),  # the redirect to /orders/
        http_scope("GET", "/nowhere"),  # 404
    ):
        assert routes.target_for(scope) == Target(None, RouteState.LEGACY, ported=False)
    assert routes.target_for(http_scope("GET", "/health")) == Target(
        None, RouteState.ASYNC, ported=True
    )


def test_a_shadow_or_canary_key_without_a_port_is_an_error(table: TableFactory) -> None:
    with pytest.raises(ManifestError, match="route POST /products is shadow but the FastAPI"):
        table('[routes]\n"POST /products" = "shadow"\n')
    with pytest.raises(ManifestError, match="route POST /products is canary but the FastAPI"):
        table('[routes]\n"POST /products" = { state = "canary", percent = 5 }\n')
