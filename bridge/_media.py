"""Media types, read as Werkzeug reads a request's ``Content-Type``.

The request idioms (a 415 unless the body is JSON) and the shadow comparison
(JSON bodies compared as JSON) ask the same question; both ask it here, and
here asks :func:`werkzeug.http.parse_options_header`, so quoting, parameter
case and whitespace are read exactly as the legacy app reads them.
"""

from __future__ import annotations

from werkzeug.http import parse_options_header


def parse_media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """The mimetype, lower-cased as Werkzeug's ``Request.mimetype``, and its parameters.

    Parameter names are lower-cased and quoted values unquoted; an empty or
    missing header is ``("", {})``.
    """
    mimetype, parameters = parse_options_header(content_type)
    return mimetype.lower(), parameters


def is_json(content_type: str | None) -> bool:
    """Werkzeug's ``Request.is_json``: ``application/json`` or ``application/*+json``."""
    mimetype, _ = parse_media_type(content_type)
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
