"""One ``DATABASE_URL`` for both sides, and the engines built from it.

The legacy side runs a sync driver (pysqlite, or psycopg 3 for PostgreSQL), the
ported side an async one (aiosqlite; asyncpg by default for PostgreSQL, psycopg
when asked). :class:`DatabaseSettings` derives both URLs and checks the drivers
before anything binds a port, so an unusable URL stops start-up with one line.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .exceptions import ConfigurationError, DatabaseURLError

AsyncDriver = Literal["asyncpg", "psycopg"]

DEFAULT_DATABASE_URL = "sqlite:///flask2fastapi.sqlite3"

_POSTGRES_NAMES = {"postgresql", "postgres"}
_POSTGRES_DRIVERS = {None, "psycopg", "asyncpg", "psycopg2"}
_SQLITE_DRIVERS = {None, "pysqlite", "aiosqlite"}
_DRIVER_MODULES = {
    "pysqlite": "sqlite3",
    "aiosqlite": "aiosqlite",
    "psycopg": "psycopg",
    "asyncpg": "asyncpg",
}
_ENV_PREFIX = "DATABASE_"


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is and how each side pools its connections.

    ``url`` is what the user gives, for example ``postgresql://app@db/shop`` or
    ``sqlite:///shop.sqlite3``; :attr:`sync_url` and :attr:`async_url` are derived.
    """

    url: str = DEFAULT_DATABASE_URL
    async_driver: AsyncDriver | None = None
    # pool_size and max_overflow are SQLAlchemy's defaults: each side of each
    # worker opens up to 15 connections. The timeout is shorter than
    # SQLAlchemy's 30 s so that a saturated pool answers 503 while clients wait.
    pool_size: int = 5
    max_overflow: int = 10
    pool_recycle: int = 1800
    pool_pre_ping: bool = True
    pool_timeout: float = 10.0
    sqlite_busy_timeout: float = 30.0

    def __post_init__(self) -> None:
        # Parsing here means a bad URL fails where the settings are made.
        self._parsed  # noqa: B018

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatabaseSettings:
        """Read ``DATABASE_URL`` and ``DATABASE_*`` pool options from the environment."""
        env = os.environ if environ is None else environ
        options: dict[str, Any] = {}
        for name, kind in _ENV_OPTIONS.items():
            raw = env.get(_ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                options[name] = _parse_option(_ENV_PREFIX + name.upper(), raw, kind)
        return cls(**options)

    def with_url(self, url: str) -> DatabaseSettings:
        return replace(self, url=url)

    @cached_property
    def _parsed(self) -> tuple[URL, str, AsyncDriver | None]:
        try:
            url = make_url(self.url)
        except ArgumentError:
            raise DatabaseURLError(
                f"cannot parse database URL {self.url!r}: "
                "use sqlite:///path/to/file.sqlite3 or postgresql://user@host:5432/dbname",
                url=self.url,
            ) from None
        backend, _, driver = url.drivername.partition("+")
        if backend == "sqlite" and (driver or None) in _SQLITE_DRIVERS:
            if not url.database or url.database == ":memory:":
                raise DatabaseURLError(
                    "an in-memory SQLite database cannot be shared by the sync and async sides: "
                    "give a file, such as sqlite:///app.sqlite3",
                    url=self.url,
                )
            return _absolute_sqlite(url), "sqlite", None
        if backend in _POSTGRES_NAMES and (driver or None) in _POSTGRES_DRIVERS:
            from_url: AsyncDriver | None = driver if driver in ("asyncpg", "psycopg") else None  # type: ignore[assignment]
            if from_url and self.async_driver and from_url != self.async_driver:
                raise DatabaseURLError(
                    f"the URL asks for {from_url} but the async driver option says "
                    f"{self.async_driver}: drop one of them",
                    url=self.url,
                )
            return url, "postgresql", self.async_driver or from_url or "asyncpg"
        raise DatabaseURLError(
            f"unsupported database URL scheme {url.drivername!r}: "
            "use sqlite:///path/to/file.sqlite3 or postgresql://user@host:5432/dbname",
            url=self.url,
        )

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._parsed[1]

    @property
    def sync_url(self) -> URL:
        url, backend, _ = self._parsed
        if backend == "sqlite":
            return url.set(drivername="sqlite+pysqlite")
        return _postgres_query(url.set(drivername="postgresql+psycopg"), "psycopg")

    @property
    def async_url(self) -> URL:
        url, backend, driver = self._parsed
        if backend == "sqlite":
            return url.set(drivername="sqlite+aiosqlite")
        assert driver is not None
        return _postgres_query(url.set(drivername=f"postgresql+{driver}"), driver)

    def check_drivers(self) -> None:
        """Raise :class:`DatabaseURLError` if a driver either side needs is missing."""
        for url in (self.sync_url, self.async_url):
            driver = url.drivername.partition("+")[2]
            module = _DRIVER_MODULES[driver]
            if importlib.util.find_spec(module) is None:
                package = "psycopg[binary]" if driver == "psycopg" else driver
                raise DatabaseURLError(
                    f"the database driver {driver} is not installed: pip install '{package}'",
                    url=self.url,
                )

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_engine`` and ``create_async_engine``.

        The same numbers apply to each side's pool; Flask-SQLAlchemy takes them as
        ``SQLALCHEMY_ENGINE_OPTIONS``.
        """
        options: dict[str, Any] = {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_recycle": self.pool_recycle,
            "pool_pre_ping": self.pool_pre_ping,
            "pool_timeout": self.pool_timeout,
        }
        if self.backend == "sqlite":
            options["connect_args"] = {"timeout": self.sqlite_busy_timeout}
        return options

    def flask_config(self) -> dict[str, Any]:
        """The Flask-SQLAlchemy configuration keys for the legacy side."""
        self.ensure_sqlite_directory()
        return {
            "SQLALCHEMY_DATABASE_URI": self.sync_url.render_as_string(hide_password=False),
            "SQLALCHEMY_ENGINE_OPTIONS": self.engine_options(),
        }

    def ensure_sqlite_directory(self) -> None:
        """Create the folder of a SQLite file, which the driver will not do."""
        if self.backend == "sqlite":
            database = self.sync_url.database
            assert database is not None
            Path(database).parent.mkdir(parents=True, exist_ok=True)

    def create_async_engine(self, **overrides: Any) -> AsyncEngine:
        """The async side's engine; dispose it when the application shuts down."""
        self.check_drivers()
        self.ensure_sqlite_directory()
        engine = create_async_engine(self.async_url, **{**self.engine_options(), **overrides})
        if self.backend == "sqlite":
            configure_sqlite(engine.sync_engine)
        return engine


def configure_sqlite(engine: Engine) -> None:
    """Give each SQLite connection the pragmas both sides rely on.

    Foreign keys are off in SQLite by default; WAL lets the sync and async sides
    read while the other writes.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


def _absolute_sqlite(url: URL) -> URL:
    # Flask-SQLAlchemy reads a relative SQLite path from the app's instance
    # folder, the async side from the working directory: anchor it to the
    # working directory here, so that both sides open the same file.
    database = url.database or ""
    if database.startswith("file:") or os.path.isabs(database):
        return url
    return url.set(database=os.path.abspath(database))


def _postgres_query(url: URL, driver: str) -> URL:
    # libpq spells TLS as sslmode, asyncpg as ssl: accept either from the user.
    query = dict(url.query)
    if driver == "asyncpg" and "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    elif driver == "psycopg" and "ssl" in query:
        query["sslmode"] = query.pop("ssl")
    return url.set(query=query)


_ENV_OPTIONS: dict[str, type] = {
    "url": str,
    "async_driver": str,
    "pool_size": int,
    "max_overflow": int,
    "pool_recycle": int,
    "pool_pre_ping": bool,
    "pool_timeout": float,
    "sqlite_busy_timeout": float,
}


def _parse_option(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
    if name == "DATABASE_ASYNC_DRIVER":
        if raw not in ("asyncpg", "psycopg"):
            raise ConfigurationError(f"{name} must be asyncpg or psycopg, got {raw!r}")
        return raw
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {what}, got {raw!r}") from None
