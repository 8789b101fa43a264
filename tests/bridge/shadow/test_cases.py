"""Shadow cases files: what a line may hold, and the errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge._exceptions import CaseFileError
from bridge._shadow.cases import Case, load_cases


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_case_keeps_every_field(tmp_path: Path) -> None:
    line = {
        "name": "places an order",
        "method": "post",
        "path": "/api/orders?x=1",
        "headers": {"X-Trace": "1"},
        "json": {"items": [{"product_id": 1, "quantity": 2}]},
        "user": "alice@example.com",
        "login": "token",
    }
    [case] = load_cases(write(tmp_path, json.dumps(line)))
    assert case == Case(
        method="POST",
        path="/api/orders?x=1",
        headers={"X-Trace": "1"},
        json={"items": [{"product_id": 1, "quantity": 2}]},
        has_json=True,
        user="alice@example.com",
        login="token",
        name="places an order",
        source="cases.jsonl:1",
    )
    assert case.label == "cases.jsonl:1 places an order"


def test_a_json_null_body_is_a_body(tmp_path: Path) -> None:
    [case] = load_cases(write(tmp_path, '{"method": "POST", "path": "/x", "json": null}'))
    assert case.has_json and case.json is None


def test_blank_lines_are_skipped_and_lines_keep_their_numbers(tmp_path: Path) -> None:
    cases = load_cases(
        write(tmp_path, '{"method": "GET", "path": "/a"}', "", '{"method": "GET", "path": "/b"}')
    )
    assert [case.source for case in cases] == ["cases.jsonl:1", "cases.jsonl:3"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{", "cases.jsonl:2: not valid JSON"),
        ("[1]", "cases.jsonl:2: a case must be a JSON object"),
        ('{"method": "GET"}', "cases.jsonl:2: path must be a string starting with /"),
        ('{"method": "FETCH", "path": "/"}', "cases.jsonl:2: method must be one of"),
        ('{"method": "GET", "path": "/", "colour": 1}', "cases.jsonl:2: unknown key 'colour'"),
        (
            '{"method": "POST", "path": "/", "json": {}, "body": "x"}',
            "give the body as json or as body",
        ),
        (
            '{"method": "GET", "path": "/", "headers": {"a": 1}}',
            "headers must be an object of strings",
        ),
        (
            '{"method": "GET", "path": "/", "user": "a", "cookie": "b"}',
            "give one of user, session and cookie",
        ),
        ('{"method": "GET", "path": "/", "session": "x"}', "session must be an object"),
        (
            '{"method": "GET", "path": "/", "user": "a", "login": "jwt"}',
            'login must be "session" or "token", got \'jwt\'',
        ),
        ('{"method": "GET", "path": "/", "login": "token"}', "login chooses how the case's user"),
    ],
)
def test_a_bad_line_is_named_with_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, '{"method": "GET", "path": "/ok"}', line)
    with pytest.raises(CaseFileError) as raised:
        load_cases(path)
    text = str(raised.value)
    assert message in text
    assert text.startswith(f"{path}:2: ")
    assert "\n" not in text


def test_a_line_that_is_not_json_carries_the_decoders_error(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="not valid JSON") as raised:
        load_cases(write(tmp_path, '{"method": "GET", "path": "/ok"}', '{"method": '))

    assert isinstance(raised.value.__cause__, json.JSONDecodeError)
    assert raised.value.__cause__.colno == 12


def test_a_bad_case_is_our_own_error_with_nothing_beneath(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="a case must be a JSON object") as raised:
        load_cases(write(tmp_path, "[1]"))

    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_an_unreadable_file_carries_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="cannot read the file") as raised:
        load_cases(tmp_path)  # a directory

    assert isinstance(raised.value.__cause__, OSError)


def test_a_missing_or_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="no such file"):
        load_cases(tmp_path / "absent.jsonl")
    with pytest.raises(CaseFileError, match="no cases"):
        load_cases(write(tmp_path, "", ""))


@pytest.mark.parametrize(
    "line",
    [
        {"method": "GET", "path": "/a"},
        {"method": "POST", "path": "/a", "json": None, "user": "u", "login": "session"},
        {"method": "POST", "path": "/a", "body": "x=1", "headers": {"Content-Type": "a/b"}},
        {"method": "GET", "path": "/a", "session": {"user_id": 2}, "name": "n"},
        {"method": "GET", "path": "/a", "cookie": "session=x"},
    ],
)
def test_a_case_written_as_a_line_reads_back_the_same(line: dict[str, object]) -> None:
    case = Case.from_mapping(line)
    assert case.to_mapping() == line
    assert Case.from_mapping(case.to_mapping()) == case
