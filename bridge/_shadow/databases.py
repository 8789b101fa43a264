"""Whether the two sides of a shadow run use one database, checked before any request.

A Flask app whose engine points elsewhere than ``DATABASE_URL`` (a relative
SQLite path that Flask-SQLAlchemy resolves under ``instance/``, a stale
``SQLALCHEMY_DATABASE_URI``) makes every difference a false one, and its
writes land where the run neither records nor restores them. So the run
refuses to start instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from flask import Flask
from sqlalchemy import URL

from bridge._exceptions import ConfigurationError

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def database_identity(url: URL) -> tuple[object, ...]:
    """What names one database, whatever the driver: backend, host, port, name, user."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ":memory:"
        if database != ":memory:" and not database.startswith("file:"):
            database = os.path.realpath(database)
        return backend, database
    host = (url.host or "localhost").lower()
    host = "localhost" if host in _LOCAL_HOSTS else host
    return backend, host, url.port or _DEFAULT_PORTS.get(backend), url.database, url.username


def flask_database_url(flask_app: Flask) -> URL | None:
    """The URL of the Flask app's default Flask-SQLAlchemy engine, if it has one."""
    extension = flask_app.extensions.get("sqlalchemy")
    if extension is None:
        return None
    with flask_app.app_context():
        engine = extension.engines.get(None)
    return None if engine is None else engine.url


def check_same_database(urls: Iterable[tuple[str, URL | None]]) -> None:
    """Raise :class:`ConfigurationError` naming the first two of *urls* that differ.

    Each item is ``(who, url)``; a ``None`` url is not known and not checked.
    """
    known = [(who, url) for who, url in urls if url is not None]
    for who, url in known[1:]:
        first, first_url = known[0]
        if database_identity(url) != database_identity(first_url):
            raise ConfigurationError(
                f"{who} uses {url.render_as_string()} but {first} uses "
                f"{first_url.render_as_string()}: both sides of a shadow run must use one "
                "database; point SQLALCHEMY_DATABASE_URI at DATABASE_URL "
                "(DatabaseSettings.flask_config() does)"
            )
