from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bridge._exceptions import ManifestError
from bridge._shadow.compare import (
    MISSING,
    Comparison,
    Difference,
    Rules,
    Snapshot,
    compare_json,
    compare_responses,
    generalize,
    is_ignored,
)
from bridge._shadow.jsonpath import JSONPathError

JSON = ("content-type", "application/json")
TEXT = ("content-type", "text/plain; charset=utf-8")
NO_RULES = Rules()


def answer(body: str | bytes, *headers: tuple[str, str], status: int = 200) -> Snapshot:
    content = body.encode() if isinstance(body, str) else body
    return Snapshot(status, headers or (JSON,), content)


def json_answer(data: Any, *headers: tuple[str, str], status: int = 200) -> Snapshot:
    return answer(json.dumps(data), JSON, *headers, status=status)


def differences(legacy: Snapshot, port: Snapshot, rules: Rules = NO_RULES) -> list[Difference]:
    return list(compare_responses(legacy, port, rules).differences)


def wheres(legacy: Snapshot, port: Snapshot, rules: Rules = NO_RULES) -> list[str]:
    return [d.where for d in differences(legacy, port, rules)]


# Snapshots


def test_snapshot_from_httpx_keeps_repeated_headers_in_order_with_lower_case_names() -> None:
    response = httpx.Response(
        201,
        headers=[
            ("Set-Cookie", "a=1"),
            ("Content-Type", "application/json"),
            ("Set-Cookie", "b=2"),
        ],
        content=b'{"ok":true}',
    )

    snapshot = Snapshot.from_httpx(response)

    assert snapshot.status == 201
    assert snapshot.body == b'{"ok":true}'
    assert snapshot.headers[:3] == (
        ("set-cookie", "a=1"),
        ("content-type", "application/json"),
        ("set-cookie", "b=2"),
    )
    assert snapshot.values("Set-Cookie") == ["a=1", "b=2"]


def test_snapshot_lower_cases_header_names_given_directly() -> None:
    assert Snapshot(200, (("Content-Type", "text/html"),)).headers == (
        ("content-type", "text/html"),
    )


# Status


def test_identical_answers_are_the_same() -> None:
    comparison = compare_responses(json_answer({"a": 1}), json_answer({"a": 1}))

    assert comparison.same
    assert comparison.report() == "same"


def test_status_codes_are_compared_exactly() -> None:
    assert differences(json_answer({}), json_answer({}, status=201)) == [
        Difference("status", 200, 201)
    ]


# JSON bodies


def test_key_order_and_whitespace_do_not_matter_in_json() -> None:
    legacy = answer('{"a":1,"b":{"c":[1,2],"d":null}}\n')
    port = answer('{ "b": { "d": null, "c": [1, 2] },\n  "a": 1 }')

    assert compare_responses(legacy, port).same


def test_a_missing_key_is_reported_with_its_path() -> None:
    found = differences(
        json_answer({"user": {"id": 1, "email": "a@b.c"}}), json_answer({"user": {"id": 1}})
    )

    assert found == [Difference("$.user.email", "a@b.c", MISSING, "missing in async")]


def test_an_extra_key_is_reported_with_its_path() -> None:
    found = differences(json_answer({"id": 1}), json_answer({"id": 1, "debug": None}))

    assert found == [Difference("$.debug", MISSING, None, "extra in async")]


@pytest.mark.parametrize(
    ("legacy", "port", "note"),
    [
        (1, 1.0, "int vs float"),
        (1.0, 1, "float vs int"),
        (1, "1", "int vs string"),
        (1, True, "int vs bool"),
        (True, 1, "bool vs int"),
        (0, False, "int vs bool"),
        (0.0, False, "float vs bool"),
        (None, 0, "null vs int"),
        (None, "", "null vs string"),
        ("true", True, "string vs bool"),
        ({}, [], "object vs array"),
        ([], None, "array vs null"),
    ],
)
def test_a_type_change_is_a_difference_even_where_python_says_equal(
    legacy: Any, port: Any, note: str
) -> None:
    found = differences(json_answer({"v": legacy}), json_answer({"v": port}))

    assert found == [Difference("$.v", legacy, port, note)]
    assert type(found[0].legacy) is type(legacy)
    assert type(found[0].port) is type(port)


def test_float_formatting_that_changes_the_value_or_the_type_is_a_difference() -> None:
    assert differences(answer('{"p":1.0}'), answer('{"p":1}')) == [
        Difference("$.p", 1.0, 1, "float vs int")
    ]
    assert differences(answer('{"p":0.3}'), answer('{"p":0.30000000000000004}')) == [
        Difference("$.p", 0.3, 0.1 + 0.2, "differs by 5.55e-17")
    ]


def test_the_same_float_written_differently_is_the_same_data() -> None:
    assert compare_responses(answer('{"p":1.10}'), answer('{"p":1.1}')).same
    assert compare_responses(answer('{"p":1e2}'), answer('{"p":100.0}')).same


def test_values_of_the_same_type_are_compared() -> None:
    assert differences(json_answer({"name": "Tea"}), json_answer({"name": "tea"})) == [
        Difference("$.name", "Tea", "tea")
    ]
    assert differences(json_answer({"n": 10}), json_answer({"n": 12})) == [
        Difference("$.n", 10, 12, "differs by 2")
    ]
    assert differences(json_answer({"ok": True}), json_answer({"ok": False})) == [
        Difference("$.ok", True, False)
    ]


def test_paths_name_list_elements_and_keys_that_are_not_identifiers() -> None:
    legacy = {"items": [{"price": 1}, {"price": 2}], "odd key": 1, "x": {"0": 1, "a.b": 1}}
    port = {"items": [{"price": 1}, {"price": 3}], "odd key": 2, "x": {"0": 2, "a.b": 2}}

    assert wheres(json_answer(legacy), json_answer(port)) == [
        "$.items[1].price",
        '$["odd key"]',
        '$.x["0"]',
        '$.x["a.b"]',
    ]


def test_a_reordered_list_is_one_difference_saying_so() -> None:
    found = differences(
        json_answer({"tags": ["a", "b", "c"]}), json_answer({"tags": ["c", "a", "b"]})
    )

    assert found == [Difference("$.tags", ["a", "b", "c"], ["c", "a", "b"], "list order differs")]


def test_a_list_with_other_elements_is_compared_element_by_element() -> None:
    found = differences(json_answer({"tags": ["a", "b", "c"]}), json_answer({"tags": ["a", "x"]}))

    assert found == [
        Difference("$.tags[1]", "b", "x"),
        Difference("$.tags[2]", "c", MISSING, "missing in async"),
    ]
    assert wheres(json_answer([1]), json_answer([1, 2])) == ["$[1]"]


def test_differences_come_in_document_order() -> None:
    legacy = {"a": 1, "b": {"c": 1, "d": [1, 2]}, "e": 1}
    port = {"e": 2, "b": {"d": [1, 3], "c": 2}, "a": 2, "f": 1}

    assert wheres(json_answer(legacy), json_answer(port)) == [
        "$.a",
        "$.b.c",
        "$.b.d[1]",
        "$.e",
        "$.f",
    ]


def test_compare_json_starts_at_the_path_it_is_given() -> None:
    found = compare_json({"x": 1}, {"x": 2}, Rules(ignore=("$.data.y",)), path="$.data")

    assert found == [Difference("$.data.x", 1, 2, "differs by 1")]
    assert compare_json({"x": 1}, {"x": 2}, Rules(ignore=("$.data.x",)), path="$.data") == []


# Tolerance


def test_numbers_within_tolerance_are_equal_even_int_and_float() -> None:
    rules = Rules(tolerance=0.01)

    assert compare_json({"p": 10}, {"p": 10.0}, rules) == []
    assert compare_json({"p": 0.1 + 0.2}, {"p": 0.3}, rules) == []
    assert compare_json({"p": 10}, {"p": 10.005}, rules) == []


def test_numbers_beyond_tolerance_differ_and_say_by_how_much() -> None:
    rules = Rules(tolerance=0.01)

    assert compare_json({"p": 10}, {"p": 10.5}, rules) == [
        Difference("$.p", 10, 10.5, "int vs float, differs by 0.5")
    ]
    assert compare_json({"p": 1.0}, {"p": 1.02}, rules) == [
        Difference("$.p", 1.0, 1.02, "differs by 0.02")
    ]


def test_tolerance_includes_its_bound() -> None:
    assert compare_json([10], [10.5], Rules(tolerance=0.5)) == []
    assert compare_json([10], [10.75], Rules(tolerance=0.5)) == [
        Difference("$[0]", 10, 10.75, "int vs float, differs by 0.75")
    ]


def test_not_a_number_equals_itself_and_nothing_else() -> None:
    assert compare_responses(answer('{"p":NaN}'), answer('{"p": NaN}')).same

    [found] = compare_json([float("nan")], [1.0], Rules(tolerance=1e9))

    assert (found.where, found.port, found.note) == ("$[0]", 1.0, "differs by nan")


def test_without_tolerance_an_int_and_an_equal_float_differ() -> None:
    assert compare_json({"p": 10}, {"p": 10.0}) == [Difference("$.p", 10, 10.0, "int vs float")]


def test_tolerance_never_makes_a_bool_a_number() -> None:
    assert compare_json([True], [1], Rules(tolerance=1)) == [
        Difference("$[0]", True, 1, "bool vs int")
    ]


# Unordered lists


def test_unordered_lists_are_equal_in_any_order() -> None:
    legacy = {"items": [{"id": 1}, {"id": 2}, {"id": 2}, {"id": 3}]}
    port = {"items": [{"id": 3}, {"id": 2}, {"id": 1}, {"id": 2}]}

    assert compare_json(legacy, port, Rules(unordered=("$.items",))) == []
    assert compare_json(legacy, port) == [
        Difference("$.items", legacy["items"], port["items"], "list order differs")
    ]


def test_unordered_lists_are_compared_as_multisets() -> None:
    found = compare_json([1, 1, 2], [2, 1, 2], Rules(unordered=("$",)))

    assert found == [
        Difference("$[1]", 1, MISSING, "no match in async"),
        Difference("$[2]", MISSING, 2, "no match in legacy"),
    ]


def test_unordered_applies_only_to_the_lists_it_names() -> None:
    rules = Rules(unordered=("$.items",))
    legacy: dict[str, Any] = {"items": [{"tags": ["a", "b"]}], "other": [1, 2]}
    port: dict[str, Any] = {"items": [{"tags": ["b", "a"]}], "other": [2, 1]}

    assert compare_json(legacy, port, rules) == [
        Difference("$.items[0]", legacy["items"][0], MISSING, "no match in async"),
        Difference("$.items[0]", MISSING, port["items"][0], "no match in legacy"),
        Difference("$.other", [1, 2], [2, 1], "list order differs"),
    ]
    assert (
        compare_json(legacy, port, Rules(unordered=("$.items", "$.items[*].tags", "$.other"))) == []
    )


def test_unordered_does_not_reach_lists_below_the_place_it_names() -> None:
    legacy, port = {"a": {"tags": [1, 2]}}, {"a": {"tags": [2, 1]}}

    assert compare_json(legacy, port, Rules(unordered=("$.a",))) == [
        Difference("$.a.tags", [1, 2], [2, 1], "list order differs")
    ]


def test_unordered_elements_are_matched_under_the_other_rules() -> None:
    rules = Rules(unordered=("$.items",), ignore=("$.items[*].at",))
    legacy = {"items": [{"id": 1, "at": "x"}, {"id": 2, "at": "y"}]}
    port = {"items": [{"id": 2, "at": "z"}, {"id": 1, "at": "w"}]}

    assert compare_json(legacy, port, rules) == []
    assert compare_json(legacy, {"items": [{"id": 2, "at": "z"}, {"id": 3, "at": "w"}]}, rules) == [
        Difference("$.items[0]", {"id": 1, "at": "x"}, MISSING, "no match in async"),
        Difference("$.items[1]", MISSING, {"id": 3, "at": "w"}, "no match in legacy"),
    ]


def test_unordered_matching_finds_a_pairing_where_greedy_matching_would_not() -> None:
    # Within 0.2: 1.0 pairs with 1.15 or 0.85, but 1.3 only with 1.15.
    rules = Rules(tolerance=0.2, unordered=("$",))

    assert compare_json([1.0, 1.3], [1.15, 0.85], rules) == []
    assert compare_json([1.0, 1.3], [0.85, 0.9], rules) == [
        Difference("$[1]", 1.3, MISSING, "no match in async"),
        Difference("$[1]", MISSING, 0.9, "no match in legacy"),
    ]


def test_order_is_reported_under_rules_that_reach_inside_the_elements() -> None:
    rules = Rules(ignore=("$[*].at",))
    legacy = [{"id": 1, "at": "x"}, {"id": 2, "at": "y"}]
    port = [{"id": 2, "at": "z"}, {"id": 1, "at": "w"}]

    assert compare_json(legacy, port, rules) == [
        Difference("$", legacy, port, "list order differs")
    ]


# Datetimes


SAME_INSTANT = [
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00+00:00",
    "2024-05-01T14:00:00+02:00",
    "2024-05-01T12:00:00",
    "2024-05-01 12:00:00.000",
    "Wed, 01 May 2024 12:00:00 GMT",
]


@pytest.mark.parametrize("port", SAME_INSTANT[1:])
def test_the_same_instant_in_another_format_is_equal_only_under_datetimes(port: str) -> None:
    legacy = {"at": SAME_INSTANT[0]}

    assert compare_json(legacy, {"at": port}, Rules(datetimes=("$.at",))) == []
    assert compare_json(legacy, {"at": port}) == [Difference("$.at", SAME_INSTANT[0], port)]


def test_datetimes_applies_only_to_the_strings_it_names() -> None:
    rules = Rules(datetimes=("$.order",))
    legacy = {"order": {"at": "2024-05-01T12:00:00Z"}, "at": "2024-05-01T12:00:00Z"}
    port = {"order": {"at": "2024-05-01T12:00:00+00:00"}, "at": "2024-05-01T12:00:00+00:00"}

    assert compare_json(legacy, port, rules) == [
        Difference("$.order.at", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
        Difference("$.at", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
    ]


def test_different_instants_differ_under_datetimes() -> None:
    rules = Rules(datetimes=("$.items[*].at",))
    legacy = {"items": [{"at": "2024-05-01T12:00:00Z"}]}
    port = {"items": [{"at": "2024-05-01T12:00:00+01:00"}]}

    assert compare_json(legacy, port, rules) == [
        Difference(
            "$.items[0].at", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+01:00", "3600 s apart"
        )
    ]


def test_datetime_tolerance_allows_that_many_seconds() -> None:
    legacy, port = {"at": "2024-05-01T12:00:00Z"}, {"at": "Wed, 01 May 2024 12:00:02 GMT"}

    assert compare_json(legacy, port, Rules(datetimes=("$.at",), datetime_tolerance=2)) == []
    assert compare_json(legacy, port, Rules(datetimes=("$.at",), datetime_tolerance=1.5)) == [
        Difference("$.at", legacy["at"], port["at"], "2 s apart")
    ]


def test_a_value_that_is_not_a_datetime_at_a_datetimes_path_is_a_difference() -> None:
    rules = Rules(datetimes=("$.at",))

    assert compare_json({"at": "2024-05-01T12:00:00Z"}, {"at": "soon"}, rules) == [
        Difference("$.at", "2024-05-01T12:00:00Z", "soon", "not a date-time in async")
    ]
    assert compare_json({"at": "later"}, {"at": "soon"}, rules) == [
        Difference("$.at", "later", "soon", "not a date-time in legacy and async")
    ]
    assert compare_json({"at": "2024-05-01"}, {"at": None}, rules) == [
        Difference("$.at", "2024-05-01", None, "string vs null")
    ]


# Ignored paths


def test_ignored_paths_are_not_compared_whether_present_or_not() -> None:
    rules = Rules(ignore=("$.items[*].updated_at", "$.request_id"))
    legacy = {"items": [{"id": 1, "updated_at": "a"}], "request_id": "x"}
    port = {"items": [{"id": 1, "updated_at": "b"}]}

    assert compare_json(legacy, port, rules) == []
    assert compare_json(port, legacy, rules) == []


def test_a_comparison_that_starts_below_an_ignored_path_finds_nothing() -> None:
    rules = Rules(ignore=("$.data",))

    assert compare_json({"x": 1}, {"x": 2}, rules, path="$.data.inner") == []
    assert compare_json({"x": 1}, {"x": 2}, rules, path="$.other") != []


def test_ignoring_a_key_ignores_everything_below_it_and_nothing_beside_it() -> None:
    rules = Rules(ignore=("$.user",))
    legacy = {"user": {"name": "a", "roles": [1]}, "users": 1}
    port = {"user": {"name": "b", "roles": [2, 3]}, "users": 2}

    assert compare_json(legacy, port, rules) == [Difference("$.users", 1, 2, "differs by 1")]


def test_ignored_list_elements_may_be_missing() -> None:
    assert compare_json([1, 2, 3], [1, 9], Rules(ignore=("$[1]", "$[2]"))) == []
    assert compare_json([1, 2, 3], [1, 9], Rules(ignore=("$[1]",))) == [
        Difference("$[2]", 3, MISSING, "missing in async")
    ]


def test_descendant_patterns_ignore_a_key_at_any_depth() -> None:
    rules = Rules(ignore=("$..etag",))
    legacy = {"etag": "1", "order": {"lines": [{"etag": "2", "qty": 1}]}}
    port = {"etag": "9", "order": {"lines": [{"etag": "8", "qty": 2}]}}

    assert compare_json(legacy, port, rules) == [
        Difference("$.order.lines[0].qty", 1, 2, "differs by 1")
    ]


def test_rules_only_apply_to_json_bodies() -> None:
    rules = Rules(ignore=("$",))

    assert compare_responses(json_answer({"a": 1}), json_answer({"a": 2}), rules).same
    assert wheres(answer("a", TEXT), answer("b", TEXT), rules) == ["body"]


# Headers


@pytest.mark.parametrize(
    ("name", "legacy", "port"),
    [
        ("content-type", "application/json", "application/json; charset=utf-8"),
        ("content-type", "text/html; charset=utf-8", "text/plain; charset=utf-8"),
        ("location", "http://localhost/api/orders/1", "/api/orders/1"),
        ("vary", "Cookie", "Cookie, Accept-Encoding"),
        ("allow", "GET, HEAD, OPTIONS", "GET, HEAD, OPTIONS, POST"),
        ("allow", "GET", "get"),
        ("cache-control", "max-age=60", "max-age=120"),
        ("etag", '"abc"', 'W/"abc"'),
        ("retry-after", "1", "2"),
        ("content-disposition", 'attachment; filename="a.csv"', "inline"),
        ("www-authenticate", 'Basic realm="shop"', "Bearer"),
        ("access-control-allow-origin", "*", "http://localhost"),
        # A quoted ";" is part of the value, as Werkzeug reads it.
        ("content-type", 'text/plain; x="a;b=c"', "text/plain; x=a; b=c"),
    ],
)
def test_headers_that_matter_to_clients_are_compared(name: str, legacy: str, port: str) -> None:
    found = differences(answer("", (name, legacy)), answer("", (name, port)))

    assert found == [Difference(f"header {name}", legacy, port)]


@pytest.mark.parametrize(
    ("name", "legacy", "port"),
    [
        ("content-type", "text/html; charset=utf-8", "Text/HTML;charset=UTF-8"),
        ("content-type", "application/json; charset=utf-8", 'application/json; Charset="UTF-8"'),
        (
            "content-type",
            "multipart/form-data; boundary=x; charset=utf-8",
            'multipart/form-data; charset=utf-8; boundary="x"',
        ),
        ("vary", "Accept-Encoding, Cookie", "cookie,accept-encoding"),
        ("allow", "GET, HEAD, OPTIONS", "OPTIONS, GET, HEAD"),
        ("cache-control", "no-cache, max-age=0", "max-age=0, No-Cache"),
        ("access-control-allow-headers", "Content-Type, X-Token", "x-token, content-type"),
    ],
)
def test_header_values_are_compared_by_their_grammar(name: str, legacy: str, port: str) -> None:
    assert compare_responses(answer("", (name, legacy)), answer("", (name, port))).same


def test_a_header_on_one_side_only_is_a_difference() -> None:
    legacy = answer("", ("location", "/a"), ("etag", '"1"'))
    port = answer("", ("etag", '"1"'), ("cache-control", "no-store"))

    assert differences(legacy, port) == [
        Difference("header cache-control", MISSING, "no-store", "extra in async"),
        Difference("header location", "/a", MISSING, "missing in async"),
    ]


def test_repeated_header_lines_mean_the_same_as_one_joined_line() -> None:
    legacy = answer("", ("vary", "Cookie"), ("vary", "Accept"))
    port = answer("", ("vary", "Accept, Cookie"))

    assert compare_responses(legacy, port).same


def test_hop_by_hop_and_volatile_headers_are_not_compared_by_default() -> None:
    legacy = answer(
        "",
        ("date", "Wed, 01 May 2024 12:00:00 GMT"),
        ("server", "Werkzeug/3.0"),
        ("content-length", "10"),
        ("connection", "close"),
        ("x-bridge-side", "legacy"),
    )
    port = answer(
        "", ("server", "uvicorn"), ("transfer-encoding", "chunked"), ("x-bridge-side", "async")
    )

    assert compare_responses(legacy, port).same
    # A volatile header is compared when a rule names it; a hop-by-hop one never.
    assert differences(legacy, port, Rules(headers=("Server",))) == [
        Difference("header server", "Werkzeug/3.0", "uvicorn")
    ]


def test_every_other_header_is_compared_by_default() -> None:
    legacy = answer("", ("x-total-count", "3"), ("x-app-version", "1.4.2"))
    port = answer("", ("x-total-count", "4"))

    assert differences(legacy, port) == [
        Difference("header x-app-version", "1.4.2", MISSING, "missing in async"),
        Difference("header x-total-count", "3", "4"),
    ]


def test_ignored_headers_are_not_compared() -> None:
    legacy = answer("", ("etag", '"1"'), ("location", "/a"))
    port = answer("", ("etag", '"2"'), ("location", "/b"))

    assert wheres(legacy, port, Rules(ignore_headers=("ETag",))) == ["header location"]


def test_content_type_is_compared_even_when_both_bodies_are_json() -> None:
    legacy = answer("{}", ("content-type", "application/json"))
    port = answer("{ }", ("content-type", "application/problem+json"))

    assert differences(legacy, port) == [
        Difference("header content-type", "application/json", "application/problem+json")
    ]


# Cookies

SESSION = "session=eyJ1c2VyIjoxfQ.Zk1.abc; HttpOnly; Path=/; SameSite=Lax"


def cookies(*values: str) -> Snapshot:
    return Snapshot(200, tuple(("set-cookie", value) for value in values))


def test_cookie_values_are_never_compared() -> None:
    port = "session=eyJ1c2VyIjoxfQ.Zk2.xyz; httponly; path=/; samesite=lax"

    assert compare_responses(cookies(SESSION), cookies(port)).same


@pytest.mark.parametrize(
    ("port", "legacy_value", "port_value", "note"),
    [
        ("session=x; Path=/; SameSite=Lax", True, MISSING, "httponly on legacy only"),
        ("session=x; HttpOnly; Path=/; SameSite=Strict", "lax", "strict", "samesite differs"),
        ("session=x; HttpOnly; Path=/", "lax", MISSING, "samesite on legacy only"),
        (
            "session=x; HttpOnly; Path=/; SameSite=Lax; Secure",
            MISSING,
            True,
            "secure on async only",
        ),
        ("session=x; HttpOnly; Path=/api; SameSite=Lax", "/", "/api", "path differs"),
        ("session=x; HttpOnly; SameSite=Lax", "/", MISSING, "path on legacy only"),
        (
            "session=x; HttpOnly; Path=/; SameSite=Lax; Domain=shop.test",
            MISSING,
            "shop.test",
            "domain on async only",
        ),
        (
            "session=x; HttpOnly; Path=/; SameSite=Lax; Max-Age=60",
            MISSING,
            "60",
            "max-age on async only",
        ),
        (
            "session=x; HttpOnly; Path=/; SameSite=Lax; Partitioned",
            MISSING,
            True,
            "partitioned on async only",
        ),
        (
            "session=x; HttpOnly; Path=/; SameSite=Lax; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
            MISSING,
            True,
            "expires on async only",
        ),
    ],
)
def test_a_cookie_flag_that_differs_is_named(
    port: str, legacy_value: object, port_value: object, note: str
) -> None:
    assert differences(cookies(SESSION), cookies(port)) == [
        Difference("cookie session", legacy_value, port_value, note)
    ]


def test_cookie_attribute_names_and_domains_are_compared_as_browsers_read_them() -> None:
    legacy = cookies("a=1; Domain=.Shop.test; SECURE; Max-Age=60")
    port = cookies("a=2; domain=shop.test; secure; max-age=60")

    assert compare_responses(legacy, port).same


def test_a_deletion_against_a_set_cookie_is_a_difference() -> None:
    deletion = "session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"

    assert differences(cookies(SESSION), cookies(deletion)) == [
        Difference("cookie session", False, True, "deleted on async only")
    ]
    assert differences(cookies(deletion), cookies(SESSION)) == [
        Difference("cookie session", True, False, "deleted on legacy only")
    ]


@pytest.mark.parametrize(
    "deletion",
    [
        "session=x; Max-Age=0; Path=/",
        "session=x; Max-Age=-1; Path=/",
        "session=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/",
        "session=x; expires=Thu, 01-Jan-1970 00:00:00 GMT; Path=/",
        "session=; Path=/",
        'session=""; Path=/',
    ],
)
def test_what_counts_as_a_deletion(deletion: str) -> None:
    assert differences(cookies("session=x; Path=/"), cookies(deletion)) == [
        Difference("cookie session", False, True, "deleted on async only")
    ]


def test_a_future_expiry_or_a_positive_max_age_is_not_a_deletion() -> None:
    legacy = cookies("s=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT")
    assert compare_responses(legacy, cookies("s=y; Expires=Sat, 02 Jan 2100 00:00:00 GMT")).same
    # Max-Age wins over an Expires in the past.
    past = cookies("s=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert compare_responses(
        past, cookies("s=y; Max-Age=60; Expires=Fri, 01 Jan 2100 00:00:00 GMT")
    ).same


def test_flask_and_starlette_deletions_of_the_same_cookie_are_the_same() -> None:
    flask = "session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Path=/"
    starlette = 'session=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=lax'

    assert compare_responses(cookies(flask), cookies(starlette)).same


def test_flask_and_starlette_settings_of_the_same_cookie_are_the_same() -> None:
    # Flask adds an Expires to a Max-Age; browsers follow the Max-Age.
    flask = "theme=a; Expires=Fri, 27 Nov 2026 00:27:29 GMT; Max-Age=60; HttpOnly; Path=/"
    starlette = "theme=b; HttpOnly; Max-Age=60; Path=/"

    assert compare_responses(cookies(flask), cookies(starlette)).same
    assert differences(cookies(flask), cookies("theme=b; HttpOnly; Max-Age=30; Path=/")) == [
        Difference("cookie theme", "60", "30", "max-age differs")
    ]


def test_deletions_of_different_cookies_differ_by_path() -> None:
    legacy = cookies("session=; Max-Age=0; Path=/")
    port = cookies("session=; Max-Age=0; Path=/api")

    assert differences(legacy, port) == [Difference("cookie session", "/", "/api", "path differs")]


def test_a_cookie_set_on_one_side_only_is_described_without_its_value() -> None:
    found = differences(cookies(SESSION, "theme=dark; Path=/"), cookies(SESSION))

    assert found == [Difference("cookie theme", "theme=…; path=/", MISSING, "missing in async")]
    assert "dark" not in str(found[0])
    assert differences(cookies(), cookies("new=1")) == [
        Difference("cookie new", MISSING, "new=…", "extra in async")
    ]


def test_set_cookie_is_not_compared_as_a_header() -> None:
    legacy, port = cookies("a=1; Path=/"), cookies("a=2; Path=/")

    assert compare_responses(legacy, port, Rules(headers=("set-cookie",))).same


def test_ignoring_set_cookie_skips_cookies() -> None:
    legacy, port = cookies(SESSION), cookies("session=x; Path=/admin")

    assert not compare_responses(legacy, port).same
    assert compare_responses(legacy, port, Rules(ignore_headers=("Set-Cookie",))).same


# Text and bytes bodies


def test_a_trailing_newline_in_text_is_a_difference_shown_around_where_it_starts() -> None:
    found = differences(answer('{"a":1}\n', TEXT), answer('{"a":1}', TEXT))

    assert found == [Difference("body", '{"a":1}\n', '{"a":1}', "differs at byte 7, 8 vs 7 bytes")]
    assert str(found[0]) == (
        'body: legacy "{\\"a\\":1}\\n", async "{\\"a\\":1}" (differs at byte 7, 8 vs 7 bytes)'
    )


def test_a_long_text_is_shown_only_around_the_first_difference() -> None:
    legacy = "x" * 100 + "A" + "y" * 100
    port = "x" * 100 + "B" + "y" * 100

    [found] = differences(answer(legacy, TEXT), answer(port, TEXT))

    assert found.note == "differs at byte 100"
    assert found.legacy == "…" + "x" * 30 + "A" + "y" * 29 + "…"
    assert found.port == "…" + "x" * 30 + "B" + "y" * 29 + "…"


def test_text_positions_count_bytes_but_excerpts_keep_whole_characters() -> None:
    [found] = differences(answer("héllo wörld", TEXT), answer("héllo world", TEXT))

    assert found.note == "differs at byte 8, 13 vs 12 bytes"
    assert (found.legacy, found.port) == ("héllo wörld", "héllo world")


def test_a_json_type_with_a_body_that_is_not_json_is_compared_as_text() -> None:
    found = differences(answer('{"a": 1}'), answer("<html>oops</html>"))

    assert found == [
        Difference(
            "body",
            '{"a": 1}',
            "<html>oops</html>",
            "not JSON in async; differs at byte 0, 8 vs 17 bytes",
        )
    ]


def test_a_json_body_against_another_type_is_compared_as_text() -> None:
    legacy = answer('{"a": 1}', JSON)
    port = answer('{"a":1}', ("content-type", "text/html; charset=utf-8"))

    assert wheres(legacy, port) == ["header content-type", "body"]


def test_bodies_of_other_types_are_compared_as_bytes() -> None:
    png = ("content-type", "image/png")
    legacy, port = (
        answer(b"\x89PNG\r\n\x1a\n\x00\x01", png),
        answer(b"\x89PNG\r\n\x1a\n\x00\x02", png),
    )

    assert differences(legacy, port) == [
        Difference(
            "body", b"\x89PNG\r\n\x1a\n\x00\x01", b"\x89PNG\r\n\x1a\n\x00\x02", "differs at byte 9"
        )
    ]
    assert compare_responses(legacy, legacy).same


def test_empty_bodies_are_the_same_whatever_the_type() -> None:
    assert compare_responses(answer(b"", JSON, status=204), answer(b"", JSON, status=204)).same


# Differences and reports


def test_a_difference_is_one_readable_line() -> None:
    assert str(Difference("$.items[0].price", 10, 10.0, "int vs float")) == (
        "$.items[0].price: legacy 10, async 10.0 (int vs float)"
    )
    assert str(Difference("$.name", "a", MISSING, "missing in async")) == (
        '$.name: legacy "a", async absent (missing in async)'
    )
    assert str(Difference("$.ok", None, True)) == "$.ok: legacy null, async true"


def test_long_values_are_shortened_to_80_characters() -> None:
    line = str(Difference("$.text", "a" * 200, "b"))

    shown = line.removeprefix("$.text: legacy ").split(", async")[0]
    assert len(shown) == 80
    assert shown.endswith("…")
    assert shown.startswith('"aaaa')


def test_labels_replace_the_side_names_in_the_line_and_its_note() -> None:
    difference = Difference("$.a", 1, MISSING, "missing in async")

    assert (
        difference.render("flask", "fastapi") == "$.a: flask 1, fastapi absent (missing in fastapi)"
    )
    assert Comparison((difference,)).report("v1", "v2") == "$.a: v1 1, v2 absent (missing in v2)"


def test_the_report_lists_status_headers_cookies_then_body() -> None:
    comparison = Comparison(
        (
            Difference("$.b", 1, 2),
            Difference("cookie s", True, MISSING, "httponly on legacy only"),
            Difference("$.a", 1, 2),
            Difference("header etag", "1", "2"),
            Difference("status", 200, 201),
        )
    )

    assert [line.split(":")[0] for line in comparison.report().splitlines()] == [
        "status",
        "header etag",
        "cookie s",
        "$.b",
        "$.a",
    ]
    assert not comparison.same


def test_a_flask_error_envelope_against_fastapis_422_is_reported_in_full() -> None:
    legacy = answer(
        '{"error":{"code":400,"message":"quantity must be a positive whole number",'
        '"name":"Bad Request"}}\n',
        status=400,
    )
    port = json_answer(
        {
            "detail": [
                {
                    "type": "greater_than",
                    "loc": ["body", "quantity"],
                    "msg": "Input should be greater than 0",
                    "input": 0,
                    "ctx": {"gt": 0},
                }
            ]
        },
        status=422,
    )

    report = compare_responses(legacy, port).report().splitlines()

    assert report[0] == "status: legacy 400, async 422"
    assert report[1].startswith('$.error: legacy {"code": 400, "message": "quantity must be')
    assert report[1].endswith("(missing in async)")
    assert report[2].startswith('$.detail: legacy absent, async [{"type": "greater_than"')
    assert report[2].endswith("(extra in async)")
    assert len(report) == 3


# Rules


def test_rules_are_read_from_a_manifest_table() -> None:
    table = {
        "state": "async",
        "ignore": ["$.items[*].updated_at"],
        "unordered": ["$.items"],
        "tolerance": 1,
        "datetimes": ["$.created_at"],
        "datetime_tolerance": 0.5,
        "ignore_headers": ["ETag"],
        "headers": ["X-Total-Count"],
        "ignore_columns": ["orders.updated_at"],
    }

    rules = Rules.from_mapping(table, where='[routes."GET /x"]', other_keys=("state",))

    assert rules == Rules(
        ignore=("$.items[*].updated_at",),
        unordered=("$.items",),
        tolerance=1,
        datetimes=("$.created_at",),
        datetime_tolerance=0.5,
        ignore_headers=("etag",),
        headers=("x-total-count",),
        ignore_columns=("orders.updated_at",),
    )
    assert Rules.from_mapping({}, where="[x]") == Rules()


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"state": "async"}, "unknown key 'state' in [routes.\"GET /x\"]: expected one of"),
        ({"ignored": ["$.a"]}, "unknown key 'ignored'"),
        ({"ignore": "$.a"}, "ignore must be a list such as [\"$.items[*].updated_at\"], got '$.a'"),
        ({"ignore": [1]}, "ignore must be a list"),
        ({"unordered": ["items"]}, "unordered: bad JSON path 'items'"),
        ({"datetimes": ["$.items["]}, "datetimes: bad JSON path '$.items['"),
        ({"tolerance": -1}, "tolerance must be a number of 0 or more"),
        ({"tolerance": True}, "tolerance must be a number of 0 or more"),
        ({"tolerance": "0.1"}, "tolerance must be a number of 0 or more"),
        ({"datetime_tolerance": float("inf")}, "datetime_tolerance must be a number of 0 or more"),
        ({"headers": ["content-length"]}, "headers: 'content-length' describes the connection"),
        ({"headers": ["x total"]}, "headers: 'x total' is not a header name"),
        ({"ignore_headers": "etag"}, "ignore_headers must be a list"),
        (
            {"ignore_columns": ["updated_at"]},
            "ignore_columns: 'updated_at' is not \"table.column\"",
        ),
        ({"vary": ["$.a"]}, 'vary must be a table such as { "$.created_at" = "instant" }'),
        (
            {"vary": {"$.a": "time"}},
            "vary: '$.a' = 'time' is not a kind of variation; "
            "write one of instant, token, increasing, type",
        ),
        ({"vary": {"a": "token"}}, "vary: bad JSON path 'a'"),
    ],
)
def test_bad_rules_raise_one_line_naming_the_table_and_the_key(
    table: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        Rules.from_mapping(table, where='[routes."GET /x"]')

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith('[routes."GET /x"]') or message.startswith("unknown key")
    assert expected in message


def test_rules_made_in_code_are_checked_and_normalized() -> None:
    with pytest.raises(JSONPathError):
        Rules(ignore=("items",))
    with pytest.raises(ValueError, match="tolerance"):
        Rules(tolerance=-0.1)
    assert Rules(headers=("X-Total-Count",), ignore_headers=("ETag",)).headers == ("x-total-count",)
    assert Rules(ignore=["$.a"]).ignore == ("$.a",)  # type: ignore[arg-type]


def test_merge_is_the_union_of_both_with_the_larger_tolerances() -> None:
    ours = Rules(ignore=("$.a", "$.b"), tolerance=0.1, headers=("x-a",), datetime_tolerance=2)
    theirs = Rules(
        ignore=("$.b", "$.c"), tolerance=0.01, ignore_columns=("t.c",), datetime_tolerance=5
    )

    assert ours.merge(theirs) == Rules(
        ignore=("$.a", "$.b", "$.c"),
        tolerance=0.1,
        headers=("x-a",),
        ignore_columns=("t.c",),
        datetime_tolerance=5,
    )
    assert theirs.merge(ours).tolerance == 0.1
    assert theirs.merge(ours).datetime_tolerance == 5
    assert Rules().merge(Rules()) == Rules()


def test_generalize_and_is_ignored_propose_and_check_rules_from_noise() -> None:
    noise = [
        d.where
        for d in differences(
            json_answer({"items": [{"at": 1}, {"at": 2}]}),
            json_answer({"items": [{"at": 1}, {"at": 3}]}),
        )
    ]
    proposed = Rules(ignore=tuple(dict.fromkeys(generalize(where) for where in noise)))

    assert proposed.ignore == ("$.items[*].at",)
    assert is_ignored("$.items[7].at", proposed.ignore)
    assert not is_ignored("$.items[7].id", proposed.ignore)


def test_database_values_print_as_json_not_python_reprs() -> None:
    from datetime import datetime as naive_datetime
    from decimal import Decimal

    from bridge._shadow.compare import show_value

    row = {"id": 4, "created_at": naive_datetime(2026, 11, 27, 0, 41, 9), "price": Decimal("9.90")}
    assert show_value(row, shorten=False) == (
        '{"id": 4, "created_at": "2026-11-27T00:41:09", "price": "9.90"}'
    )
