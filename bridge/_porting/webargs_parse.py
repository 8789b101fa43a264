"""webargs for ported routes: the app's own parser and schemas, run on the port's request.

A view under ``@use_args(schema, location="json")`` answers by webargs' rules,
which are not Flask's: a body whose content type is not JSON is *missing*
(not a 415), one that does not parse is a 400 with
``{"json": ["Invalid JSON body."]}`` attached, and a schema error is a 422
carrying marshmallow's messages for the app's error handler to render.
:func:`webargs_parse` runs the parser itself inside a Flask request context
built from the ASGI request (see
:func:`~bridge._porting.flask_context.run_in_flask`), so each of these is
answered by the app's own handlers, as in Flask.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from flask import Flask

from bridge._porting.flask_context import require_extension, require_flask_app, run_in_flask


async def webargs_parse(
    request: Request,
    argmap: Any,
    *,
    location: str | None = None,
    parser: Any = None,
    flask_app: Flask | None = None,
    **options: Any,
) -> Any:
    """``parser.parse(argmap, location=location, **options)`` on this request, as in Flask.

    *parser* is the app's ``FlaskParser`` (its ``error_handler`` and
    ``DEFAULT_LOCATION`` apply), webargs' ``flaskparser.parser`` by default;
    *options* are ``parse``'s (``unknown``, ``validate``, ``error_status_code``
    ...). The Flask app is *flask_app*, else the hybrid's. A refusal is the
    app's answer, sent as it is by :func:`~bridge.install_flask_answers`.
    """
    require_extension("webargs", "webargs", "webargs_parse")
    from webargs.flaskparser import parser as default_parser

    app = require_flask_app(
        request, flask_app, "webargs_parse", "webargs_parse(..., flask_app=create_app())"
    )
    chosen = parser or default_parser
    if location is not None:
        options["location"] = location
    return await run_in_flask(request, app, lambda: chosen.parse(argmap, **options), body=True)
