from __future__ import annotations

import pytest

from bridge import BridgeError
from bridge._shadow.jsonpath import (
    JSONPathError,
    Segment,
    format_path,
    format_pattern,
    generalize,
    is_ignored,
    matches,
    parse_path,
    parse_pattern,
    reaches_below,
)


def test_patterns_are_parsed_into_segments() -> None:
    assert parse_pattern("$") == ()
    assert parse_pattern("$.items[0].price") == (Segment("items"), Segment(0), Segment("price"))
    assert parse_pattern("$.items[*]") == (Segment("items"), Segment(None))
    assert parse_pattern("$.*") == (Segment(None, dots=True),)
    assert parse_pattern("$..updated_at") == (Segment("updated_at", descendant=True),)
    assert parse_pattern("$..[0]") == (Segment(0, descendant=True),)


def test_quoted_names_take_either_quote_and_json_escapes() -> None:
    assert parse_path('$["odd key"]') == ("odd key",)
    assert parse_path("$['odd key']") == ("odd key",)
    assert parse_path("$['it\\'s']") == ("it's",)
    assert parse_path("$['say \"hi\"']") == ('say "hi"',)
    assert parse_path('$["a\\"b\\\\c\\u00e9"]') == ('a"b\\cé',)
    assert parse_path('$["0"]') == ("0",)
    assert parse_path("$[0]") == (0,)


def test_dotted_names_may_hold_hyphens_and_letters_beyond_ascii() -> None:
    assert parse_path("$.user-id.größe") == ("user-id", "größe")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), "$"),
        (("items", 0, "price"), "$.items[0].price"),
        (("odd key",), '$["odd key"]'),
        (("0",), '$["0"]'),
        (("a.b",), '$["a.b"]'),
        (('say "hi"',), '$["say \\"hi\\""]'),
        (("*",), '$["*"]'),
        (("user-id",), '$["user-id"]'),
        (("_private2",), "$._private2"),
    ],
)
def test_paths_are_written_with_dots_for_identifiers_and_quotes_otherwise(
    path: tuple[str | int, ...], text: str
) -> None:
    assert format_path(path) == text
    assert parse_path(text) == path


@pytest.mark.parametrize(
    "text", ["$", "$.items[*].price", "$.*.name", "$..id", "$..*", "$..[*]", '$..["a b"]', "$[3]"]
)
def test_patterns_are_written_as_they_were_read(text: str) -> None:
    assert format_pattern(parse_pattern(text)) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("items", 'must start with "$"'),
        ("$.", 'expected a name after "."'),
        ("$.0", 'expected a name after "."'),
        ("$.[0]", 'expected a name after "."'),
        ("$[", 'expected an index, "*" or a quoted name'),
        ("$[0", 'expected "]" after the index'),
        ("$[x]", 'expected an index, "*" or a quoted name'),
        ("$[-1]", "negative indexes are not supported"),
        ('$["open', "the quoted name is not closed"),
        ('$["x"', 'expected "]" after the quoted name'),
        ('$["\\q"]', "unknown escape"),
        ("$a", 'expected ".name"'),
        ("$[?(@.price)]", 'expected an index, "*" or a quoted name'),
    ],
)
def test_bad_patterns_raise_one_line_naming_the_path_and_the_problem(
    text: str, problem: str
) -> None:
    with pytest.raises(JSONPathError) as caught:
        parse_pattern(text)

    message = str(caught.value)
    assert "\n" not in message
    assert repr(text) in message
    assert problem in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BridgeError)


def test_a_concrete_path_has_no_wildcards() -> None:
    with pytest.raises(JSONPathError, match="is a pattern"):
        parse_path("$.items[*]")
    with pytest.raises(JSONPathError, match="is a pattern"):
        parse_path("$..id")


def test_a_pattern_matches_its_own_path_and_everything_below() -> None:
    pattern = parse_pattern("$.user")

    assert matches(pattern, ("user",))
    assert matches(pattern, ("user", "name"))
    assert matches(pattern, ("user", "roles", 0))
    assert not matches(pattern, ())
    assert not matches(pattern, ("username",))
    assert not matches(pattern, ("users", "name"))


def test_exact_matching_does_not_reach_below() -> None:
    pattern = parse_pattern("$.items")

    assert matches(pattern, ("items",), below=False)
    assert not matches(pattern, ("items", 0), below=False)


def test_the_root_pattern_matches_everything() -> None:
    assert matches(parse_pattern("$"), ())
    assert matches(parse_pattern("$"), ("a", 1))
    assert not matches(parse_pattern("$"), ("a",), below=False)


def test_wildcards_match_any_element_or_member_as_in_rfc_9535() -> None:
    for text in ("$.items[*].price", "$.items.*.price"):
        pattern = parse_pattern(text)
        assert matches(pattern, ("items", 7, "price"))
        assert matches(pattern, ("items", "first", "price"))
        assert not matches(pattern, ("items", 7, "cost"))
        assert not matches(pattern, ("items", "price"))


def test_an_index_matches_only_that_index_and_not_a_key_of_the_same_text() -> None:
    index, key = parse_pattern("$[0]"), parse_pattern('$["0"]')

    assert matches(index, (0,)) and not matches(index, ("0",)) and not matches(index, (1,))
    assert matches(key, ("0",)) and not matches(key, (0,))


def test_descendant_segments_match_at_any_depth_including_directly_below() -> None:
    pattern = parse_pattern("$..updated_at")

    assert matches(pattern, ("updated_at",))
    assert matches(pattern, ("items", 3, "updated_at"))
    assert matches(pattern, ("a", "b", "c", "updated_at", "nested"))
    assert not matches(pattern, ("items", 3, "created_at"))
    assert matches(parse_pattern("$.items..id"), ("items", 0, "owner", "id"))
    assert not matches(parse_pattern("$.items..id"), ("orders", 0, "id"))


def test_reaches_below_tells_whether_a_pattern_can_match_inside_a_value() -> None:
    assert reaches_below(parse_pattern("$.items[*].updated_at"), ("items",))
    assert reaches_below(parse_pattern("$.items[*]"), ("items",))
    assert not reaches_below(parse_pattern("$.items"), ("items",))
    assert not reaches_below(parse_pattern("$.orders[*].id"), ("items",))
    assert reaches_below(parse_pattern("$..id"), ("items", 0))
    assert not reaches_below(parse_pattern("$.items[0].id"), ("items", 1))


def test_generalize_replaces_every_index_with_a_wildcard() -> None:
    assert generalize("$.items[3].created_at") == "$.items[*].created_at"
    assert generalize("$[0][12]") == "$[*][*]"
    assert generalize("$.user.name") == "$.user.name"
    assert generalize('$["a[3]"][3]') == '$["a[3]"][*]'
    assert generalize("$") == "$"


def test_is_ignored_checks_a_concrete_path_against_patterns() -> None:
    patterns = ["$.items[*].updated_at", "$.meta"]

    assert is_ignored("$.items[4].updated_at", patterns)
    assert is_ignored("$.meta.request_id", patterns)
    assert not is_ignored("$.items[4].price", patterns)
    assert not is_ignored("$.metadata", patterns)
    assert not is_ignored("$.items[4].price", [])
