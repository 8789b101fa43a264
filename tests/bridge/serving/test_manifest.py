from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bridge._exceptions import ConfigurationError, ManifestError
from bridge._serving.manifest import (
    BridgeOptions,
    LoginRule,
    RolloutOptions,
    RouteKey,
    RoutePlan,
    RouteState,
    load_manifest,
    parse_manifest,
)

VALID = """
[apps]
flask = "legacy:create_app"
fastapi = "ported:app"

[bridge]
side_header = false
wsgi_threads = 8
max_body_size = 1024

[routes]
"GET /api/products" = "async"
"get /api/products/<int:product_id>" = "legacy"
"POST /api/orders" = { state = "async" }
"DELETE /api/orders/<int:order_id>" = {}
"""


def test_valid_manifest_is_parsed() -> None:
    manifest = parse_manifest(VALID, path="migration.toml")

    assert manifest.flask_app == "legacy:create_app"
    assert manifest.fastapi_app == "ported:app"
    assert manifest.options == BridgeOptions(side_header=False, wsgi_threads=8, max_body_size=1024)
    assert manifest.routes == {
        RouteKey("GET", "/api/products"): RouteState.ASYNC,
        RouteKey("GET", "/api/products/<int:product_id>"): RouteState.LEGACY,
        RouteKey("POST", "/api/orders"): RouteState.ASYNC,
        RouteKey("DELETE", "/api/orders/<int:order_id>"): RouteState.LEGACY,
    }
    assert manifest.path == "migration.toml"


def test_async_routes_are_the_routes_fastapi_answers() -> None:
    manifest = parse_manifest(VALID)

    assert manifest.async_routes == [
        RouteKey("GET", "/api/products"),
        RouteKey("POST", "/api/orders"),
    ]


def test_a_manifest_naming_only_the_flask_app_is_complete() -> None:
    manifest = parse_manifest(
        '[apps]\nflask = "legacy:create_app"\n[routes]\n"GET /x" = "legacy"\n'
    )

    assert manifest.fastapi_app is None
    manifest.check_apps()


def test_an_async_route_needs_a_fastapi_app() -> None:
    manifest = parse_manifest(
        '[apps]\nflask = "legacy:create_app"\n[routes]\n"GET /x" = "legacy"\n"POST /y" = "async"\n',
        path="migration.toml",
    )

    with pytest.raises(ManifestError) as caught:
        manifest.check_apps()

    assert str(caught.value) == (
        "migration.toml: route POST /y is async but [apps] names no fastapi app: "
        'add fastapi = "package:create_app", or set the route to legacy'
    )


def test_table_form_state_equals_string_form() -> None:
    table = parse_manifest('[routes]\n"POST /x" = { state = "async" }\n')
    string = parse_manifest('[routes]\n"POST /x" = "async"\n')

    assert table.routes == string.routes == {RouteKey("POST", "/x"): RouteState.ASYNC}


def test_unlisted_routes_are_legacy() -> None:
    manifest = parse_manifest('[routes]\n"GET /x" = "async"\n')

    assert manifest.state("GET", "/x") is RouteState.ASYNC
    assert manifest.state("POST", "/x") is RouteState.LEGACY
    assert manifest.state("GET", "/y") is RouteState.LEGACY


def test_empty_manifest_has_the_documented_defaults() -> None:
    manifest = parse_manifest("")

    assert manifest.flask_app is None
    assert manifest.fastapi_app is None
    assert manifest.routes == {}
    assert manifest.options.side_header is True
    assert manifest.options.wsgi_threads == 8
    assert manifest.options.max_body_size == 16 * 1024 * 1024
    assert manifest.options.header_timeout == 60.0
    assert manifest.options.allow_development_key is False


def test_server_options_are_read_from_the_bridge_table() -> None:
    options = parse_manifest(
        "[bridge]\nheader_timeout = 2.5\nallow_development_key = true\n"
    ).options

    assert options == BridgeOptions(header_timeout=2.5, allow_development_key=True)
    assert parse_manifest("[bridge]\nheader_timeout = 30\n").options.header_timeout == 30.0


def test_partial_bridge_table_keeps_the_other_defaults() -> None:
    options = parse_manifest("[bridge]\nwsgi_threads = 3\n").options

    assert options == BridgeOptions(wsgi_threads=3)


def test_load_manifest_reads_the_file_and_keeps_its_path(tmp_path: Path) -> None:
    path = tmp_path / "migration.toml"
    path.write_text(VALID, encoding="utf-8")

    manifest = load_manifest(path)

    assert manifest.path == str(path)
    assert manifest.state("POST", "/api/orders") is RouteState.ASYNC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[routes\n", "not valid TOML", id="bad-toml"),
        pytest.param("[app]\nflask = 'x:y'\n", "unknown key 'app' in the top level", id="top-key"),
        pytest.param("[apps]\nflsk = 'x:y'\n", "unknown key 'flsk' in [apps]", id="apps-key"),
        pytest.param(
            "[bridge]\nthreads = 4\n", "unknown key 'threads' in [bridge]", id="bridge-key"
        ),
        pytest.param(
            '[routes]\n"GET /x" = { state = "async", when = 1 }\n',
            "unknown key 'when'",
            id="route-table-key",
        ),
        pytest.param('[routes]\n"GET /x" = "ported"\n', "state 'ported'", id="unknown-state"),
        pytest.param('[routes]\n"GET /x" = 1\n', "state 1", id="non-string-state"),
        pytest.param('[routes]\n"GET /x" = { state = "done" }\n', "state 'done'", id="table-state"),
        pytest.param('[routes]\n"FETCH /x" = "async"\n', "'FETCH /x'", id="bad-method"),
        pytest.param('[routes]\n"GET x" = "async"\n', "'GET x'", id="rule-without-slash"),
        pytest.param('[routes]\n"GET" = "async"\n', "'GET'", id="no-rule"),
        pytest.param(
            '[routes]\n"GET /x" = "async"\n"get  /x" = "legacy"\n',
            "route GET /x is listed twice",
            id="duplicate",
        ),
        pytest.param("routes = 1\n", "[routes] must be a table", id="routes-not-table"),
        pytest.param("[apps]\nflask = 1\n", "[apps] flask must be an import string", id="app-int"),
        pytest.param("[apps]\nfastapi = ' '\n", "[apps] fastapi must be", id="app-blank"),
        pytest.param(
            "[bridge]\nside_header = 'yes'\n", "side_header must be true or false", id="sh"
        ),
        pytest.param("[bridge]\nwsgi_threads = true\n", "wsgi_threads must be", id="bool-for-int"),
        pytest.param("[bridge]\nwsgi_threads = 0\n", "wsgi_threads must be", id="zero"),
        pytest.param("[bridge]\nmax_body_size = 1.5\n", "max_body_size must be", id="float"),
        pytest.param("[bridge]\nmax_body_size = '1M'\n", "max_body_size must be", id="string"),
        pytest.param(
            "[bridge]\nheader_timeout = 0\n", "header_timeout must be a number of seconds", id="ht0"
        ),
        pytest.param("[bridge]\nheader_timeout = -1.5\n", "header_timeout must be", id="ht-neg"),
        pytest.param("[bridge]\nheader_timeout = inf\n", "header_timeout must be", id="ht-inf"),
        pytest.param("[bridge]\nheader_timeout = nan\n", "header_timeout must be", id="ht-nan"),
        pytest.param("[bridge]\nheader_timeout = '60s'\n", "header_timeout must be", id="ht-str"),
        pytest.param(
            "[bridge]\nallow_development_key = 1\n",
            "allow_development_key must be true or false",
            id="adk-int",
        ),
        pytest.param(
            '[routes]\n"GET /x" = { state = "async", ignore = ["items[0"] }\n',
            "items[0",
            id="bad-json-path",
        ),
        pytest.param(
            '[routes]\n"GET /x" = { state = "async", tolerance = "small" }\n',
            "tolerance",
            id="bad-tolerance",
        ),
        pytest.param("[shadow]\nlogn = 1\n", "unknown key 'logn' in [shadow]", id="shadow-key"),
        pytest.param(
            '[shadow]\nlogin = { session_key = "user_id" }\n',
            "[shadow] login must be",
            id="login-without-query",
        ),
        pytest.param('[shadow]\nlogin = "user_id"\n', "[shadow] login must be", id="login-string"),
    ],
)
def test_every_error_is_one_line_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, path="m.toml")

    message = str(caught.value)
    assert problem in message
    assert message.startswith("m.toml: ")
    assert "\n" not in message
    assert caught.value.path == "m.toml"


def test_manifest_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        parse_manifest("[bridge]\nwsgi_threads = -1\n")


def test_missing_file_is_a_manifest_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(ManifestError, match="no such file") as caught:
        load_manifest(path)

    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_unreadable_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read the file") as caught:
        load_manifest(tmp_path)  # a directory
    assert isinstance(caught.value.__cause__, OSError)


def test_invalid_toml_carries_the_parsers_error() -> None:
    with pytest.raises(ManifestError, match="not valid TOML") as caught:
        parse_manifest('[routes]\n"GET /x" = \n')
    assert isinstance(caught.value.__cause__, tomllib.TOMLDecodeError)


def test_route_key_is_normalised() -> None:
    assert RouteKey.parse("  patch   /x/<id>  ") == RouteKey("PATCH", "/x/<id>")
    assert str(RouteKey("GET", "/x")) == "GET /x"


def test_a_route_table_carries_its_comparison_rules() -> None:
    manifest = parse_manifest(
        """
        [routes]
        "POST /api/orders" = { state = "async", datetimes = ["$.created_at"], tolerance = 0.5 }
        "GET /api/products" = "async"

        [routes."GET /api/categories"]
        state = "legacy"
        unordered = ["$.items"]
        ignore_headers = ["etag"]
        """
    )
    orders = manifest.rules[RouteKey("POST", "/api/orders")]
    assert (orders.datetimes, orders.tolerance) == (("$.created_at",), 0.5)
    assert manifest.state("POST", "/api/orders") is RouteState.ASYNC
    categories = manifest.rules[RouteKey("GET", "/api/categories")]
    assert (categories.unordered, categories.ignore_headers) == (("$.items",), ("etag",))
    assert manifest.state("GET", "/api/categories") is RouteState.LEGACY
    assert RouteKey("GET", "/api/products") not in manifest.rules


def test_the_shadow_login_rule_is_parsed() -> None:
    manifest = parse_manifest(
        '[shadow]\nlogin = { session_key = "uid", query = "SELECT id FROM u WHERE e = :user" }\n'
    )
    assert manifest.login == LoginRule(session_key="uid", query="SELECT id FROM u WHERE e = :user")
    assert parse_manifest("").login is None


ROLLOUT = """
[routes]
"GET /a" = { state = "canary", percent = 12.5 }
"GET /b" = { state = "shadow", sample = 0.1, timeout = 2, ignore = ["$.at"] }
"POST /c" = { state = "shadow", shadow_writes = true }
"GET /d" = "shadow"

[rollout]
bucket_key = "session:user_id"
error_rate = 0.1
min_requests = 20
metrics_path = "/_bridge/metrics"
"""


def test_rollout_states_and_options_are_parsed() -> None:
    manifest = parse_manifest(ROLLOUT)

    assert manifest.plan("GET", "/a") == RoutePlan(RouteState.CANARY, percent=12.5)
    assert manifest.plan("GET", "/b") == RoutePlan(RouteState.SHADOW, sample=0.1, timeout=2.0)
    assert manifest.rules[RouteKey("GET", "/b")].ignore == ("$.at",)
    assert manifest.plan("POST", "/c").shadow_writes is True
    assert manifest.plan("GET", "/d") == RoutePlan(RouteState.SHADOW)
    assert manifest.plan("GET", "/unlisted") == RoutePlan(RouteState.LEGACY)
    assert manifest.state("GET", "/a") is RouteState.CANARY
    assert manifest.async_routes == [
        RouteKey("GET", "/a"),
        RouteKey("GET", "/b"),
        RouteKey("POST", "/c"),
        RouteKey("GET", "/d"),
    ]
    rollout = manifest.rollout
    assert (rollout.bucket_key, rollout.error_rate, rollout.min_requests) == (
        "session:user_id",
        0.1,
        20,
    )
    assert rollout.metrics_path == "/_bridge/metrics"
    assert (rollout.sample, rollout.window) == (RolloutOptions.sample, RolloutOptions.window)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ('{ state = "canary" }', r"is a canary: give the share of users it serves"),
        ('{ state = "canary", percent = 0 }', r"percent must be a number above 0 to 100, got 0"),
        ('{ state = "canary", percent = 101 }', r"percent must be a number above 0 to 100"),
        ('{ state = "async", percent = 5 }', r"percent does not apply to a route in state async"),
        ('{ state = "shadow", sample = 1.5 }', r"sample must be a number from 0 to 1, got 1.5"),
        ('{ state = "canary", percent = 5, sample = 1 }', r"sample does not apply"),
        ('{ state = "shadow", shadow_writes = true }', r"shadow_writes applies to methods that"),
        ('{ state = "shadow", timeout = 0 }', r"timeout must be a number of seconds above 0"),
        ('"beta"', r"has state 'beta': use one of legacy, shadow, canary, async"),
    ],
)
def test_bad_rollout_plans_are_refused(route: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(f'[routes]\n"GET /a" = {route}\n')


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('bucket_key = "user"', r'bucket_key must be "client", "session:KEY"'),
        ('bucket_key = "header:"', r"bucket_key must be"),
        ("error_rate = 2", r"\[rollout\] error_rate must be a number from 0 to 1"),
        ("min_requests = 0", r"\[rollout\] min_requests must be a whole number above 0"),
        ('metrics_path = "metrics"', r'metrics_path must start with "/"'),
        ("window = -1", r"window must be a number of seconds above 0"),
        ("flap = true", r"unknown key 'flap' in \[rollout\]"),
    ],
)
def test_bad_rollout_options_are_refused(line: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(f"[rollout]\n{line}\n")


def test_a_shadow_or_canary_route_needs_the_fastapi_app() -> None:
    manifest = parse_manifest('[apps]\nflask = "x:app"\n[routes]\n"GET /a" = "shadow"\n')

    with pytest.raises(
        ManifestError, match=r"route GET /a is shadow but \[apps\] names no fastapi"
    ):
        manifest.check_apps()
