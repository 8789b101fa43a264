"""The demo shop's routes ported to FastAPI and async SQLAlchemy.

Each port answers exactly as its legacy route in ``legacy_flask_app`` does:
the same statuses, headers, JSON bytes and error envelope, through the same
repositories, serializers and validation in :mod:`shop`. The hybrid server
sends a route here once ``migration.toml`` says ``async``.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from bridge import (
    AsyncDatabase,
    DatabaseSettings,
    FlaskJSONResponse,
    FlaskSessionConfig,
    FlaskSessionMiddleware,
    install_error_envelope,
)
from shop.config import secret_key as configured_secret_key
from shop.errors import POOL_TIMEOUT_MESSAGE, error_body

from . import auth, catalog, orders
from .errors import install_domain_errors
from .security import load_current_user


def create_app(
    settings: DatabaseSettings | None = None, *, secret_key: str | None = None
) -> FastAPI:
    """Build the app; the database and secret key come from the environment by default."""
    database = AsyncDatabase(settings)
    app = FastAPI(
        lifespan=database.lifespan,
        default_response_class=FlaskJSONResponse,
        # Flask answers /api/products/ with 404, never a redirect; nor may the port.
        redirect_slashes=False,
        # The legacy app serves no docs; a port must not add URLs the legacy app lacks.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Flask's before_request loads the user for every request; so does the port.
        dependencies=[Depends(load_current_user)],
    )
    database.install(app)
    install_error_envelope(app, error_body, messages={503: POOL_TIMEOUT_MESSAGE})
    install_domain_errors(app)
    app.include_router(auth.router)
    app.include_router(catalog.router)
    app.include_router(orders.router)
    # The legacy app sets no other SESSION_COOKIE_* key; an app that does passes
    # its whole Flask config here, so the cookie keeps every attribute.
    cookie = FlaskSessionConfig.from_flask_config(
        {"SECRET_KEY": secret_key or configured_secret_key()}
    )
    app.add_middleware(FlaskSessionMiddleware, config=cookie)
    return app
