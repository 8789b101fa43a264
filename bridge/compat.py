"""Flask's request idioms, with Flask's answers, for ported routes.

A port is drop-in only if bad input gets the legacy answer. FastAPI's own
parsing answers 422 with ``{"detail": [...]}``; these helpers answer as Flask
does instead:

* :func:`get_json` is ``request.get_json()``: 415 when the content type is not
  JSON, 400 when the body does not parse;
* :func:`arg` is ``request.args.get(name, default, type=...)``: a value that
  does not convert gives the default, as Werkzeug's ``MultiDict.get`` does;
* :func:`args` is ``request.args`` as a plain mapping, first value first;
* :func:`url_for` is Flask's ``url_for`` inside a request: a path with the
  script root, not an absolute URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, overload

from fastapi import HTTPException, Request
from werkzeug.exceptions import BadRequest

T = TypeVar("T")

# Werkzeug's words when get_json() meets another content type.
_NOT_JSON = (
    "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
)


def is_json(content_type: str | None) -> bool:
    """Werkzeug's ``Request.is_json``: ``application/json`` or ``application/*+json``."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


async def get_json(request: Request) -> Any:
    """The JSON body, parsed as Flask's ``request.get_json()`` parses it."""
    if not is_json(request.headers.get("content-type")):
        raise HTTPException(415, detail=_NOT_JSON)
    try:
        return json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, detail=BadRequest().description) from None


@overload
def arg(request: Request, name: str) -> str | None: ...
@overload
def arg(request: Request, name: str, default: T) -> str | T: ...
@overload
def arg(request: Request, name: str, default: T, type: Callable[[str], Any]) -> Any: ...
@overload
def arg(request: Request, name: str, *, type: Callable[[str], T]) -> T | None: ...


def arg(
    request: Request,
    name: str,
    default: Any = None,
    type: Callable[[str], Any] | None = None,
) -> Any:
    """``request.args.get(name, default, type=type)`` with Werkzeug's semantics."""
    values = request.query_params.getlist(name)
    if not values:
        return default
    value = values[0]  # Werkzeug gives the first of repeated arguments
    if type is None:
        return value
    try:
        return type(value)
    except (ValueError, TypeError):
        return default


def args(request: Request) -> dict[str, str]:
    """The query arguments, each name with its first value, as ``request.args.get`` sees them."""
    first: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        first.setdefault(name, value)
    return first


def url_for(request: Request, name: str, **path_params: Any) -> str:
    """The path of the named route, with the app's root path, as Flask's ``url_for`` gives it."""
    root_path = str(request.scope.get("root_path", ""))
    return root_path + str(request.app.url_path_for(name, **path_params))
