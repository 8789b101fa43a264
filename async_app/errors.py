"""The shop's domain errors as the envelope, as the legacy app's handler renders them."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request

from bridge import FlaskJSONResponse
from shop.errors import DomainError, error_body


def install_domain_errors(app: FastAPI) -> None:
    """Answer :class:`~shop.errors.DomainError` with its status and the envelope.

    The request's transaction is already rolled back: the session dependency
    saw the exception first.
    """

    async def domain_error(_request: Request, exc: Exception) -> FlaskJSONResponse:
        assert isinstance(exc, DomainError)
        code = exc.status_code
        return FlaskJSONResponse(
            error_body(code, HTTPStatus(code).phrase, exc.message), status_code=code
        )

    app.add_exception_handler(DomainError, domain_error)
