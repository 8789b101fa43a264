"""One ``DATABASE_URL`` for both sides, and the engines built from it.

The legacy side runs a sync driver (pysqlite, or psycopg 3 for PostgreSQL), the
ported side an async one (aiosqlite; asyncpg by default for PostgreSQL, psycopg
when asked). :class:`DatabaseSettings` derives both URLs and checks the drivers
before anything binds a port, so an unusable URL stops start-up with one line.

psycopg takes libpq's URL parameters as they are. asyncpg takes some under
another name, some only as connect arguments (``connect_timeout``,
``application_name``, ``options``) and some not at all: the async URL and
:meth:`DatabaseSettings.async_engine_options` carry the first two kinds, and a
URL with the third is refused when the settings are made.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge._exceptions import ConfigurationError, DatabaseURLError
from bridge._porting.fair_pool import FairAsyncPool
from bridge._porting.lazy_begin import install_lazy_begin

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

# What SQLAlchemy's asyncpg dialect does with each URL parameter: it hands them
# all to asyncpg.connect() as keywords, except host and port, which it reads
# itself, and prepared_statement_cache_size, which is its own.
_ASYNCPG_RENAMED = {"sslmode": "ssl", "dbname": "database"}
_ASYNCPG_TAKES = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "passfile",
        "database",
        "ssl",
        "target_session_attrs",
        "prepared_statement_cache_size",
    }
)
# libpq parameters only newer asyncpg releases take (0.30 and 0.31).
_ASYNCPG_TAKES_SINCE = frozenset({"krbsrvname", "gsslib", "service", "servicefile"})
# libpq parameters asyncpg reads from libpq's environment variables only.
_ASYNCPG_FROM_ENV = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
}
_WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+\s*")


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is and how each side pools its connections.

    ``url`` is what the user gives, for example ``postgresql://app@db/shop`` or
    ``sqlite:///shop.sqlite3``; :attr:`sync_url` and :attr:`async_url` are derived.
    """

    url: str = DEFAULT_DATABASE_URL
    async_driver: AsyncDriver | None = None
    # Ten connections per side per worker, kept open: more than the legacy
    # side's 8 threads, so a legacy request never waits for one, and four
    # workers (80 connections) fit PostgreSQL's default max_connections of
    # 100. No overflow: connections opened for a burst and closed after it
    # cost a connect each. The timeout is shorter than SQLAlchemy's 30 s so
    # that a saturated pool answers 503 while clients still wait.
    pool_size: int = 10
    max_overflow: int = 0
    pool_recycle: int = 1800
    # No ping before each checkout: it costs a round trip per request (three on
    # asyncpg, which wraps it in BEGIN and ROLLBACK). Without it a connection
    # the server dropped fails the one request that finds it, and SQLAlchemy
    # then replaces every connection of the pool opened before the failure.
    pool_pre_ping: bool = False
    pool_timeout: float = 10.0
    sqlite_busy_timeout: float = 30.0
    # Off: a request's reads share its transaction, as on the legacy side. On,
    # reads before its first write skip BEGIN and COMMIT (PostgreSQL only;
    # bridge/_porting/lazy_begin.py says what that changes).
    lazy_begin: bool = False

    def __post_init__(self) -> None:
        # Parsing here means a bad URL fails where the settings are made.
        self._async_connection  # noqa: B018

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
        except ArgumentError:  # SQLAlchemy's "Could not parse SQLAlchemy URL" adds nothing
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
        """The async side's URL; build its engine with :meth:`async_engine_options`.

        With asyncpg, the URL parameters asyncpg takes only as keywords are not in
        it but in the options' ``connect_args``.
        """
        return self._async_connection[0]

    @cached_property
    def _async_connection(self) -> tuple[URL, dict[str, Any]]:
        url, backend, driver = self._parsed
        if backend == "sqlite":
            return url.set(drivername="sqlite+aiosqlite"), {}
        if driver == "asyncpg":
            return _asyncpg_connection(url, given=self.url)
        return _postgres_query(url.set(drivername="postgresql+psycopg"), "psycopg"), {}

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
        """Keyword arguments for ``create_engine``; the async side's add to them.

        The same numbers apply to each side's pool; Flask-SQLAlchemy takes them as
        ``SQLALCHEMY_ENGINE_OPTIONS``, and :meth:`async_engine_options` adds what
        the async driver needs.
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

    def async_engine_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_async_engine`` with :attr:`async_url`.

        :meth:`engine_options`, plus the connect arguments that stand for URL
        parameters the async driver takes only as keywords, and a pool that
        serves waiting requests in turn (:class:`~bridge._porting.fair_pool.FairAsyncPool`).
        """
        options = {**self.engine_options(), "poolclass": FairAsyncPool}
        return _with_connect_args(options, self._async_connection[1])

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
        # Connect arguments given here add to the ones the URL stands for.
        options = _with_connect_args(self.async_engine_options(), overrides.pop("connect_args", {}))
        engine = create_async_engine(self.async_url, **{**options, **overrides})
        if self.backend == "sqlite":
            configure_sqlite(engine.sync_engine)
        else:
            replace_closed_connections(engine.sync_engine)
            if self.lazy_begin:
                install_lazy_begin(engine.sync_engine)
        return engine


def replace_closed_connections(engine: Engine) -> None:
    """Replace a pooled connection its driver knows to be closed, before a request gets it.

    asyncpg reads its socket all along, so it knows at once when the server
    ended a connection (a restart, an idle timeout, ``pg_terminate_backend``).
    Asking it costs no round trip, unlike a pre-ping; SQLAlchemy opens a new
    connection when a checkout listener raises ``DisconnectionError``.
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)  # asyncpg
        closed = is_closed() if callable(is_closed) else getattr(driver, "closed", False)
        if closed:
            raise DisconnectionError("the database server closed this pooled connection")


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


def _asyncpg_connection(url: URL, *, given: str) -> tuple[URL, dict[str, Any]]:
    """The asyncpg URL for *url*, and the connect arguments that go with it.

    SQLAlchemy passes each URL parameter to ``asyncpg.connect()`` as a keyword
    argument of the same name, so libpq's parameters that asyncpg spells
    differently are renamed or moved to connect arguments here, and the ones it
    cannot take are refused, naming the parameter and the fix.
    """
    named = url.drivername.partition("+")[2] == "asyncpg"
    or_psycopg = "write postgresql+psycopg://" if named else "set DATABASE_ASYNC_DRIVER=psycopg"
    query = dict(url.query)
    for libpq_name, asyncpg_name in _ASYNCPG_RENAMED.items():
        if libpq_name in query:
            query[asyncpg_name] = query.pop(libpq_name)

    connect_args: dict[str, Any] = {}
    if "connect_timeout" in query:
        connect_args["timeout"] = _connect_timeout(_single(query, "connect_timeout", given), given)
    server_settings: dict[str, str] = {}
    if "options" in query:
        options = _single(query, "options", given)
        server_settings.update(_options_settings(options, or_psycopg, given))
    # The server applies application_name after options, so it wins over a -c.
    if "application_name" in query:
        server_settings["application_name"] = _single(query, "application_name", given)
    if server_settings:
        connect_args["server_settings"] = server_settings

    for name in query:
        if name in _ASYNCPG_TAKES:
            continue
        if name in _ASYNCPG_TAKES_SINCE:
            if _asyncpg_takes(name):
                continue
            fix = f"upgrade asyncpg, remove the parameter, or {or_psycopg}"
            message = f"the installed asyncpg does not take the URL parameter {name!r}: {fix}"
            raise DatabaseURLError(message, url=given)
        if name in _ASYNCPG_FROM_ENV:
            fix = f"set {_ASYNCPG_FROM_ENV[name]} in the environment instead, or {or_psycopg}"
        else:
            fix = f"remove it, or {or_psycopg}"
        raise DatabaseURLError(
            f"the asyncpg driver does not take the URL parameter {name!r}: {fix}", url=given
        )
    return url.set(drivername="postgresql+asyncpg", query=query), connect_args


def _single(query: dict[str, str | tuple[str, ...]], name: str, given: str) -> str:
    """Remove *name* from *query* and return its one value."""
    value = query.pop(name)
    if isinstance(value, tuple):
        raise DatabaseURLError(
            f"the URL gives the parameter {name!r} more than once: give it once", url=given
        )
    return value


def _connect_timeout(value: str, given: str) -> float:
    if not _WHOLE_NUMBER.fullmatch(value):
        raise DatabaseURLError(
            f"the URL parameter 'connect_timeout' must be a whole number of seconds, got {value!r}",
            url=given,
        )
    seconds = int(value)
    # 0 or less is no limit to libpq. Older asyncpg releases subtract from the
    # timeout, so None would not do there; an infinite number of seconds does.
    return float(seconds) if seconds > 0 else math.inf


def _options_settings(options: str, or_psycopg: str, given: str) -> dict[str, str]:
    """The server settings of libpq's ``options``: ``-c name=value`` or ``--name=value``.

    The server reads ``options`` as command-line switches (``process_postgres_switches``
    in its ``postgres.c``); asyncpg sends settings one by one, so the other switches
    cannot be translated.
    """
    settings: dict[str, str] = {}
    words = iter(_split_options(options))
    for word in words:
        if word == "-c":
            item = next(words, "")
            shown = f"-c {item}".rstrip()
        elif word.startswith(("-c", "--")):
            shown, item = word, word[2:]
        else:
            shown, item = word, ""
        name, equals, value = item.partition("=")
        if not name or not equals:
            raise DatabaseURLError(
                f"the asyncpg driver cannot take {shown!r} in the URL parameter 'options': "
                f"write each setting as -c name=value, or {or_psycopg}",
                url=given,
            )
        # As the server does: "-c lock-timeout=1s" sets lock_timeout.
        settings[name.replace("-", "_")] = value
    return settings


def _split_options(options: str) -> list[str]:
    # Word splitting as the server does it (pg_split_opts in postinit.c):
    # whitespace separates words and a backslash makes the next character literal.
    words: list[str] = []
    word: list[str] = []
    in_word = escaped = False
    for char in options:
        if escaped:
            word.append(char)
            escaped = False
        elif char.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            continue
        elif char == "\\":
            escaped = True
        else:
            word.append(char)
        in_word = True
    if in_word:
        words.append("".join(word))
    return words


def _asyncpg_takes(name: str) -> bool:
    # Ask the installed asyncpg, rather than keep a table of its releases.
    try:
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:
        return True  # check_drivers() says how to install it
    return name in inspect.signature(asyncpg.connect).parameters


def _with_connect_args(options: dict[str, Any], connect_args: dict[str, Any]) -> dict[str, Any]:
    if not connect_args:
        return options
    return {**options, "connect_args": {**options.get("connect_args", {}), **connect_args}}


_ENV_OPTIONS: dict[str, type] = {
    "url": str,
    "async_driver": str,
    "pool_size": int,
    "max_overflow": int,
    "pool_recycle": int,
    "pool_pre_ping": bool,
    "pool_timeout": float,
    "sqlite_busy_timeout": float,
    "lazy_begin": bool,
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
    except ValueError:  # the value and what it must be are in the message
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {what}, got {raw!r}") from None
