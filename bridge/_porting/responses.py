"""JSON responses byte for byte as Flask's ``jsonify`` writes them.

Flask sorts keys, escapes non-ASCII, writes compact separators and ends the
body with a newline; Starlette's ``JSONResponse`` does none of these. Clients
that hash, sign or cache bodies notice, so ports return
:class:`FlaskJSONResponse` explicitly. Making it the ``default_response_class``
is not enough for routes that return a dict: FastAPI passes such a dict
through ``jsonable_encoder`` first, which writes dates as ISO 8601 where
``jsonify`` writes HTTP dates.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import uuid
from datetime import date
from typing import Any

from starlette.responses import JSONResponse, Response
from werkzeug.http import http_date
from werkzeug.urls import iri_to_uri
from werkzeug.utils import redirect


def flask_default(value: Any) -> Any:
    """Flask's fallback encoder: dates as HTTP dates, decimals and UUIDs as strings."""
    if isinstance(value, date):
        return http_date(value)
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One encoder for every response: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=flask_default, sort_keys=True, separators=(",", ":"))


def flask_json_dumps(content: Any) -> bytes:
    """``jsonify(content).data`` outside debug mode."""
    return (_ENCODER.encode(content) + "\n").encode()


class FlaskJSONResponse(JSONResponse):
    """A ``JSONResponse`` whose body is what Flask's ``jsonify`` would write."""

    def render(self, content: Any) -> bytes:
        return flask_json_dumps(content)


def flask_redirect(location: str, code: int = 302) -> Response:
    """Flask's ``redirect(location, code)``: the same status, ``Location`` and HTML body.

    The body escapes ``location`` as written; the header is the URI Werkzeug
    sends, which it makes from the IRI only when writing the response
    (``Response.get_wsgi_headers``), so ``legacy.headers`` still holds the IRI.
    """
    legacy = redirect(location, code)
    return Response(
        legacy.get_data(),
        status_code=code,
        headers={"Location": iri_to_uri(legacy.headers["Location"])},
        media_type=legacy.headers["Content-Type"],
    )
