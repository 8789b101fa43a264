"""Flask's JSON provider, with a body nested too deep to parse as bad input (400).

Werkzeug's ``request.get_json()`` answers 400 when ``loads`` raises
``ValueError``. For a body such as ``[[[[...`` (100,000 deep) ``json.loads``
raises ``RecursionError`` instead, which Flask lets out as a 500. Any Flask app
can take this provider as it is.
"""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider


class JSONProvider(DefaultJSONProvider):
    """``DefaultJSONProvider`` whose ``loads`` raises ``ValueError`` for too deep a nesting."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("the JSON is nested deeper than the parser can follow") from exc
