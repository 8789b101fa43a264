"""The demo shop as a team would have it before migrating: Flask 3 + Flask-SQLAlchemy.

A JSON API with session-cookie login::

    flask --app legacy_flask_app run

Configuration comes from the environment (``SECRET_KEY``, ``DATABASE_URL`` and
the ``DATABASE_*`` pool options of :class:`bridge.DatabaseSettings`);
:func:`create_app` takes overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from bridge import DatabaseSettings, configure_sqlite, run_sync
from shop.config import secret_key
from shop.seed import is_seeded, seed

from . import auth, catalog, orders
from .errors import register_error_handlers
from .extensions import db
from .json_provider import JSONProvider
from .security import load_current_user


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; keys in *config* win over the environment and the defaults.

    ``SEED_DEMO_DATA`` (default true) creates the tables and seeds the demo data
    into an empty database.
    """
    app = Flask(__name__, static_folder=None)  # a JSON API: no /static route
    app.json = JSONProvider(app)
    app.config.from_mapping(default_config(config or {}))
    app.config.from_mapping(config or {})
    db.init_app(app)
    register_error_handlers(app)
    app.before_request(load_current_user)
    app.register_blueprint(auth.bp)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(orders.bp)
    app.add_url_rule("/api/health", "health", health, methods=["GET"])
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)
        if app.config["SEED_DEMO_DATA"]:
            _create_and_seed()
    return app


def default_config(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration before *overrides*.

    The database settings are read from the environment only when *overrides*
    has no database URI: a caller that gives one has configured the database.
    """
    config: dict[str, Any] = {
        "SECRET_KEY": secret_key(),
        "SEED_DEMO_DATA": True,
    }
    if "SQLALCHEMY_DATABASE_URI" not in overrides:
        config.update(DatabaseSettings.from_env().flask_config())
    return config


def health() -> dict[str, str]:
    """The app is up."""
    return {"status": "ok"}


def _create_and_seed() -> None:
    db.create_all()
    if not run_sync(db.session(), is_seeded()):
        run_sync(db.session(), seed())
        db.session.commit()
    db.session.remove()
