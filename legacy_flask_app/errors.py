"""Every error leaves as the shop's envelope (see :func:`shop.errors.error_body`).

Handlers, by what they catch:

* ``HTTPException``: Flask's and werkzeug's own errors (404 for an unknown URL,
  405, 415 from ``request.get_json()``, ``abort()``...), keeping the headers
  werkzeug attaches, such as ``Allow`` on a 405;
* :class:`~shop.errors.DomainError`: a business rule said no (400, 404, 409);
* ``bridge.PageNotFound``: ``bridge.page_args`` found a page past the end (404,
  as ``db.paginate``'s own ``abort(404)``);
* ``sqlalchemy.exc.TimeoutError``: no pooled connection came free in time (503);
* ``sqlalchemy.exc.DBAPIError``: the database is down (503) or refused a value
  of the request (400), as the port's envelope answers; any other database
  error goes on to the 500;
* ``InternalServerError``: Flask calls it for any other exception, once it has
  logged it, unless it propagates the exception (``TESTING`` or ``DEBUG``).
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, Response, current_app, jsonify
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, NotFound

from bridge import PageNotFound, is_bad_value, is_database_unavailable
from shop.errors import POOL_TIMEOUT_MESSAGE, DomainError, error_body

from .extensions import db


def register_error_handlers(app: Flask) -> None:
    """Render every error of *app* as the JSON envelope."""
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(DomainError, domain_error)
    app.register_error_handler(PageNotFound, page_not_found)
    app.register_error_handler(PoolTimeoutError, pool_timeout)
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(InternalServerError, internal_error)


def envelope(code: int, name: str, message: str) -> Response:
    """An error response with the envelope as its body."""
    response = jsonify(error_body(code, name, message))
    response.status_code = code
    return response


def http_error(error: HTTPException) -> Response:
    """Flask's or werkzeug's HTTP error as the envelope."""
    assert error.code is not None  # Flask hands errors without a code (redirects) back as is
    response = envelope(error.code, error.name, error.description or "")
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def domain_error(error: DomainError) -> Response:
    """A business rule's refusal; whatever the request wrote so far is rolled back."""
    db.session.rollback()
    return envelope(error.status_code, HTTPStatus(error.status_code).phrase, error.message)


def page_not_found(_error: PageNotFound) -> Response:
    """404 with the words of ``db.paginate``'s ``abort(404)``."""
    return http_error(NotFound())


def pool_timeout(error: PoolTimeoutError) -> Response:
    """503 when every pooled connection stayed busy for ``pool_timeout`` seconds."""
    db.session.rollback()
    return unavailable()


def database_error(error: DBAPIError) -> Response:
    """503 when the database cannot be reached, 400 when it refused a value; else a 500.

    Raising again hands the error to Flask, which logs it and answers with
    :func:`internal_error`, as for any other exception.
    """
    db.session.rollback()
    if is_database_unavailable(error):
        current_app.logger.warning("database unavailable: %s", error)
        return unavailable()
    if is_bad_value(error):
        current_app.logger.warning("the database refused a value of the request: %s", error)
        return http_error(BadRequest())
    raise error


def unavailable() -> Response:
    """The 503 a client should retry: the database is busy or down for a moment."""
    response = envelope(503, HTTPStatus.SERVICE_UNAVAILABLE.phrase, POOL_TIMEOUT_MESSAGE)
    response.headers["Retry-After"] = "1"
    return response


def internal_error(error: InternalServerError) -> Response:
    """500 for an unhandled exception; Flask has logged it (``app.log_exception``)."""
    db.session.rollback()
    return envelope(500, error.name, InternalServerError.description)
