from __future__ import annotations

import json

import pytest

from bridge._exceptions import ManifestError
from bridge._serving.manifest import parse_manifest
from bridge._shadow.redact import REDACTED, Redactor


def test_secret_headers_are_replaced_whatever_their_case() -> None:
    pairs = [("Authorization", "Bearer abc"), ("cookie", "session=x"), ("Accept", "*/*")]

    assert Redactor().header_pairs(pairs) == [
        ("Authorization", REDACTED),
        ("cookie", REDACTED),
        ("Accept", "*/*"),
    ]


def test_json_fields_are_replaced_at_any_depth_by_part_of_their_name() -> None:
    body = {
        "user": {"Email": "ann@example.com", "new_password": "hunter2", "name": "Ann"},
        "items": [{"refreshToken": "r1", "qty": 2}],
        "token": {"nested": "whole value goes"},
    }

    redacted = json.loads(Redactor().body(json.dumps(body).encode(), "application/json"))

    assert redacted == {
        "user": {"Email": REDACTED, "new_password": REDACTED, "name": "Ann"},
        "items": [{"refreshToken": REDACTED, "qty": 2}],
        "token": REDACTED,
    }


def test_forms_and_query_strings_keep_their_other_fields() -> None:
    redactor = Redactor()

    form = redactor.body(b"email=a%40b.c&next=%2Fhome", "application/x-www-form-urlencoded")
    assert form == b"email=[redacted]&next=%2Fhome"
    assert redactor.query("page=2&access_token=abc") == "page=2&access_token=[redacted]"
    assert redactor.query("") == ""


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"password": "x"', "application/json"),  # does not parse
        (b"--b\r\nContent-Disposition: form-data; name=password\r\n\r\nx", "multipart/form-data"),
        (b"\x89PNG\r\n", "image/png"),
    ],
)
def test_bodies_that_cannot_be_read_field_by_field_are_not_kept(
    body: bytes, content_type: str
) -> None:
    redacted = Redactor().body(body, content_type)

    assert redacted == f"[{len(body)} bytes of {content_type}, not kept]".encode()


def test_text_is_kept() -> None:
    assert Redactor().body(b"<p>Not found</p>", "text/html; charset=utf-8") == b"<p>Not found</p>"


def test_the_manifest_adds_names_to_the_defaults() -> None:
    manifest = parse_manifest(
        '[shadow]\nredact_fields = ["SSN_last4", "dob"]\nredact_headers = ["X-Session"]\n'
    )

    redactor = manifest.redactor
    assert redactor.is_secret_field("dob") and redactor.is_secret_field("password")
    assert redactor.is_secret_header("x-session") and redactor.is_secret_header("cookie")
    assert not redactor.is_secret_field("name")


def test_the_manifest_refuses_a_redact_list_that_is_not_names() -> None:
    with pytest.raises(ManifestError, match=r"redact_fields must be a list of names"):
        parse_manifest('[shadow]\nredact_fields = "password"\n')
