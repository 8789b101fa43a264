"""Media types are read as Werkzeug reads a request's Content-Type."""

from __future__ import annotations

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest

from bridge._media import is_json, parse_media_type


def werkzeug_request(content_type: str | None) -> WerkzeugRequest:
    headers = [("Content-Type", content_type)] if content_type is not None else []
    return WerkzeugRequest(EnvironBuilder(headers=headers).get_environ())


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json;charset=utf-8", True),
        (" APPLICATION/JSON ", True),
        ('application/json ; charset="utf-8"', True),
        ("Application/Problem+JSON", True),
        ('text/plain; note="application/json"', False),
        ("application/merge-patch+json", True),
        ("application/json-seq", False),
        ("text/json", False),
        ("text/x+json", False),
        ("", False),
        (None, False),
    ],
)
def test_is_json_is_werkzeugs(content_type: str | None, expected: bool) -> None:
    werkzeug = werkzeug_request(content_type)

    assert is_json(content_type) is werkzeug.is_json is expected


@pytest.mark.parametrize(
    "content_type",
    [
        'Text/HTML; Charset="UTF-8"',
        'text/plain; x="a;b=c"',
        "application/json;charset=utf-8 ; q=1",
        "",
        None,
    ],
)
def test_media_type_is_werkzeugs_mimetype_and_parameters(content_type: str | None) -> None:
    werkzeug = werkzeug_request(content_type)

    assert parse_media_type(content_type) == (werkzeug.mimetype, werkzeug.mimetype_params)
