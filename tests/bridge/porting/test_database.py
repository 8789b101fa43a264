from __future__ import annotations

import importlib.util
import inspect
import math
import sys
import types
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import create_engine, event, text

from bridge._exceptions import ConfigurationError, DatabaseURLError
from bridge._porting.database import DatabaseSettings
from bridge._porting.fair_pool import FairAsyncPool


@pytest.mark.parametrize(
    ("url", "sync_driver", "async_driver"),
    [
        ("sqlite:////srv/app.sqlite3", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:////srv/a.db", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("sqlite+pysqlite:////srv/a.db", "sqlite+pysqlite", "sqlite+aiosqlite"),
        ("postgresql://app@db:5432/shop", "postgresql+psycopg", "postgresql+asyncpg"),
        ("postgres://app@db/shop", "postgresql+psycopg", "postgresql+asyncpg"),
        ("postgresql+psycopg://app@db/shop", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+asyncpg://app@db/shop", "postgresql+psycopg", "postgresql+asyncpg"),
        ("postgresql+psycopg2://app@db/shop", "postgresql+psycopg", "postgresql+asyncpg"),
    ],
)
def test_both_urls_are_derived_from_one(url: str, sync_driver: str, async_driver: str) -> None:
    settings = DatabaseSettings(url=url)
    rest = url.partition("://")[2]

    assert settings.sync_url.render_as_string() == f"{sync_driver}://{rest}"
    assert settings.async_url.render_as_string() == f"{async_driver}://{rest}"
    assert settings.backend == sync_driver.partition("+")[0]


def test_relative_sqlite_path_is_anchored_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = DatabaseSettings(url="sqlite:///data/app.sqlite3")

    assert settings.sync_url.database == str(tmp_path / "data" / "app.sqlite3")
    assert settings.async_url.database == settings.sync_url.database
    assert settings.flask_config()["SQLALCHEMY_DATABASE_URI"] == (
        f"sqlite+pysqlite:///{tmp_path}/data/app.sqlite3"
    )


def test_sqlite_uri_filename_is_kept() -> None:
    url = "sqlite:///file:app.db?mode=ro&uri=true"

    assert DatabaseSettings(url=url).async_url.database == "file:app.db"


def test_async_driver_option_picks_psycopg() -> None:
    settings = DatabaseSettings(url="postgresql://app@db/shop", async_driver="psycopg")

    assert settings.async_url.drivername == "postgresql+psycopg"
    assert settings.sync_url.drivername == "postgresql+psycopg"


def test_async_driver_option_agreeing_with_the_url_is_fine() -> None:
    settings = DatabaseSettings(url="postgresql+asyncpg://db/shop", async_driver="asyncpg")

    assert settings.async_url.drivername == "postgresql+asyncpg"


def test_url_driver_conflicting_with_the_option_is_refused() -> None:
    with pytest.raises(
        DatabaseURLError, match="asks for asyncpg but the async driver option says psycopg"
    ):
        DatabaseSettings(url="postgresql+asyncpg://db/shop", async_driver="psycopg")


def test_password_survives_derivation() -> None:
    settings = DatabaseSettings(url="postgresql://app:s3cret@db/shop")

    assert settings.async_url.password == "s3cret"
    assert "s3cret" in settings.flask_config()["SQLALCHEMY_DATABASE_URI"]


@pytest.mark.parametrize("given", ["sslmode", "ssl"])
def test_tls_option_is_spelled_for_each_driver(given: str) -> None:
    url = f"postgresql://db/shop?{given}=require"

    assert dict(DatabaseSettings(url=url).sync_url.query) == {"sslmode": "require"}
    assert dict(DatabaseSettings(url=url).async_url.query) == {"ssl": "require"}
    psycopg = DatabaseSettings(url=url, async_driver="psycopg")
    assert dict(psycopg.async_url.query) == {"sslmode": "require"}


def test_other_query_options_are_kept() -> None:
    settings = DatabaseSettings(url="postgresql://db/shop?target_session_attrs=any&sslmode=disable")

    assert dict(settings.async_url.query) == {"target_session_attrs": "any", "ssl": "disable"}


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+aiosqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(DatabaseURLError, match="in-memory SQLite") as caught:
        DatabaseSettings(url=url)

    assert caught.value.url == url


@pytest.mark.parametrize(
    "url", ["mysql://app@db/shop", "postgresql+pg8000://db/shop", "sqlite+pysqlcipher:///a.db"]
)
def test_unsupported_scheme_is_refused(url: str) -> None:
    with pytest.raises(DatabaseURLError, match="unsupported database URL scheme"):
        DatabaseSettings(url=url)


@pytest.mark.parametrize("url", ["not a url", "", "://db"])
def test_unparsable_url_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(DatabaseURLError, match="cannot parse database URL") as caught:
        DatabaseSettings(url=url)

    assert "\n" not in str(caught.value)


def test_url_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        DatabaseSettings(url="mysql://db/shop")


def test_from_env_reads_the_url_and_every_pool_option() -> None:
    settings = DatabaseSettings.from_env(
        {
            "DATABASE_URL": "postgresql://db/shop",
            "DATABASE_ASYNC_DRIVER": "psycopg",
            "DATABASE_POOL_SIZE": "3",
            "DATABASE_MAX_OVERFLOW": "4",
            "DATABASE_POOL_RECYCLE": "60",
            "DATABASE_POOL_PRE_PING": "on",
            "DATABASE_POOL_TIMEOUT": "2.5",
            "DATABASE_LAZY_BEGIN": "yes",
            "UNRELATED": "x",
        }
    )

    assert settings == DatabaseSettings(
        url="postgresql://db/shop",
        async_driver="psycopg",
        pool_size=3,
        max_overflow=4,
        pool_recycle=60,
        pool_pre_ping=True,
        pool_timeout=2.5,
        lazy_begin=True,
    )


def test_from_env_defaults_and_ignores_empty_values() -> None:
    assert DatabaseSettings.from_env({}) == DatabaseSettings()
    assert DatabaseSettings.from_env({"DATABASE_POOL_SIZE": "", "DATABASE_URL": ""}) == (
        DatabaseSettings()
    )


@pytest.mark.parametrize("raw", ["1", "true", "YES", " on "])
def test_from_env_reads_true(raw: str) -> None:
    assert DatabaseSettings.from_env({"DATABASE_POOL_PRE_PING": raw}).pool_pre_ping is True


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        ("DATABASE_POOL_SIZE", "many", "DATABASE_POOL_SIZE must be a whole number, got 'many'"),
        ("DATABASE_POOL_SIZE", "2.5", "DATABASE_POOL_SIZE must be"),
        ("DATABASE_MAX_OVERFLOW", "ten", "DATABASE_MAX_OVERFLOW must be a whole number"),
        ("DATABASE_POOL_TIMEOUT", "soon", "DATABASE_POOL_TIMEOUT must be a number"),
        ("DATABASE_POOL_PRE_PING", "maybe", "DATABASE_POOL_PRE_PING must be true or false"),
        ("DATABASE_LAZY_BEGIN", "sometimes", "DATABASE_LAZY_BEGIN must be true or false"),
        ("DATABASE_ASYNC_DRIVER", "pg8000", "DATABASE_ASYNC_DRIVER must be asyncpg or psycopg"),
    ],
)
def test_from_env_bad_values_are_configuration_errors(name: str, raw: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        DatabaseSettings.from_env({name: raw})

    assert "\n" not in str(caught.value)


def test_from_env_bad_url_is_a_url_error() -> None:
    with pytest.raises(DatabaseURLError):
        DatabaseSettings.from_env({"DATABASE_URL": "sqlite://"})


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/from_env")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "7")

    settings = DatabaseSettings.from_env()

    assert settings.url == "postgresql://db/from_env"
    assert settings.pool_size == 7


def missing(*modules: str) -> Any:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in modules else real(name, *args)

    return find_spec


@pytest.mark.parametrize(
    ("url", "module", "hint"),
    [
        ("postgresql://db/shop", "asyncpg", "pip install 'asyncpg'"),
        ("postgresql://db/shop", "psycopg", "pip install 'psycopg[binary]'"),
        ("sqlite:///a.db", "aiosqlite", "pip install 'aiosqlite'"),
    ],
)
def test_check_drivers_names_the_missing_driver_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, hint: str
) -> None:
    monkeypatch.setattr("bridge._porting.database.importlib.util.find_spec", missing(module))

    with pytest.raises(DatabaseURLError, match=f"driver {module} is not installed") as caught:
        DatabaseSettings(url=url).check_drivers()

    assert hint in str(caught.value)


def test_check_drivers_passes_when_the_drivers_are_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bridge._porting.database.importlib.util.find_spec", missing("asyncpg"))

    DatabaseSettings(url="postgresql://db/shop", async_driver="psycopg").check_drivers()
    DatabaseSettings(url="sqlite:///a.db").check_drivers()


def test_create_async_engine_checks_drivers_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge._porting.database.importlib.util.find_spec", missing("asyncpg"))

    with pytest.raises(DatabaseURLError, match="asyncpg is not installed"):
        DatabaseSettings(url="postgresql://db/shop").create_async_engine()


def test_flask_config_for_postgresql() -> None:
    settings = DatabaseSettings(url="postgresql://app@db/shop", pool_size=2, pool_timeout=3.0)

    assert settings.flask_config() == {
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://app@db/shop",
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": 2,
            "max_overflow": 0,
            "pool_recycle": 1800,
            "pool_pre_ping": False,
            "pool_timeout": 3.0,
        },
    }


def test_flask_config_for_sqlite_sets_busy_timeout_and_creates_the_folder(tmp_path: Path) -> None:
    database = tmp_path / "data" / "nested" / "app.sqlite3"
    settings = DatabaseSettings(url=f"sqlite:///{database}", sqlite_busy_timeout=5.0)

    config = settings.flask_config()

    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite+pysqlite:///{database}"
    assert config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {"timeout": 5.0}
    assert database.parent.is_dir()


def test_with_url_replaces_only_the_url() -> None:
    settings = DatabaseSettings(url="sqlite:///a.db", pool_size=2)

    assert settings.with_url("postgresql://db/x") == DatabaseSettings(
        url="postgresql://db/x", pool_size=2
    )


# libpq's URL parameters: psycopg takes them as they are, asyncpg partly under
# other names or as connect arguments, and the rest not at all.

LIBPQ_QUERY = "connect_timeout=5&application_name=f2f-test&options=-csearch_path%3Dpublic"


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    options = DatabaseSettings(url=url).async_engine_options()
    return dict(options.get("connect_args", {}))


def test_libpq_parameters_move_from_the_asyncpg_url_to_connect_arguments() -> None:
    settings = DatabaseSettings(url=f"postgresql://db/shop?{LIBPQ_QUERY}&sslmode=require")

    assert settings.async_url.render_as_string() == "postgresql+asyncpg://db/shop?ssl=require"
    assert settings.async_engine_options() == {
        **settings.engine_options(),
        "poolclass": FairAsyncPool,
        "connect_args": {
            "timeout": 5.0,
            "server_settings": {"application_name": "f2f-test", "search_path": "public"},
        },
    }
    assert "connect_args" not in settings.engine_options()


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "psycopg-async"])
def test_psycopg_gets_libpq_parameters_as_they_are(sync: bool) -> None:
    query = f"{LIBPQ_QUERY}&keepalives=1&sslrootcert=/ca.pem"
    settings = DatabaseSettings(url=f"postgresql://db/shop?{query}", async_driver="psycopg")

    url = settings.sync_url if sync else settings.async_url
    assert dict(url.query) == {
        "connect_timeout": "5",
        "application_name": "f2f-test",
        "options": "-csearch_path=public",
        "keepalives": "1",
        "sslrootcert": "/ca.pem",
    }
    assert settings.async_engine_options() == {
        **settings.engine_options(),
        "poolclass": FairAsyncPool,
    }


def test_the_sync_url_keeps_libpq_parameters_when_asyncpg_runs_the_async_side() -> None:
    settings = DatabaseSettings(url=f"postgresql://db/shop?{LIBPQ_QUERY}")

    assert dict(settings.sync_url.query) == {
        "connect_timeout": "5",
        "application_name": "f2f-test",
        "options": "-csearch_path=public",
    }


@pytest.mark.parametrize(
    ("given", "timeout"), [("5", 5.0), ("%2010%20", 10.0), ("0", math.inf), ("-1", math.inf)]
)
def test_connect_timeout_becomes_asyncpg_timeout(given: str, timeout: float) -> None:
    assert asyncpg_connect_args(f"postgresql://db/shop?connect_timeout={given}") == {
        "timeout": timeout
    }


@pytest.mark.parametrize("given", ["soon", "2.5", "5_0"])
def test_connect_timeout_must_be_whole_seconds(given: str) -> None:
    with pytest.raises(
        DatabaseURLError, match="'connect_timeout' must be a whole number"
    ) as caught:
        DatabaseSettings(url=f"postgresql://db/shop?connect_timeout={given}")

    assert repr(given) in str(caught.value)


def test_application_name_becomes_a_server_setting() -> None:
    assert asyncpg_connect_args("postgresql://db/shop?application_name=shop%20web") == {
        "server_settings": {"application_name": "shop web"}
    }


@pytest.mark.parametrize(
    ("options", "settings"),
    [
        ("-c search_path=public", {"search_path": "public"}),
        ("-csearch_path=public", {"search_path": "public"}),
        (
            " -c search_path=public  -cstatement_timeout=5s --lock-timeout=2s ",
            {"search_path": "public", "statement_timeout": "5s", "lock_timeout": "2s"},
        ),
        ("-c search_path=shop,\\ public", {"search_path": "shop, public"}),
        ("-c work_mem=1MB -c work_mem=2MB", {"work_mem": "2MB"}),
        ("-c geqo=", {"geqo": ""}),
    ],
)
def test_options_become_server_settings(options: str, settings: dict[str, str]) -> None:
    url = f"postgresql://db/shop?options={quote(options)}"

    assert asyncpg_connect_args(url) == {"server_settings": settings}
    assert DatabaseSettings(url=url).async_url.query == {}


def test_plus_in_options_is_a_space_as_libpq_reads_it() -> None:
    url = "postgresql://db/shop?options=-c+search_path%3Dpublic"

    assert asyncpg_connect_args(url) == {"server_settings": {"search_path": "public"}}


def test_blank_options_set_nothing() -> None:
    assert asyncpg_connect_args("postgresql://db/shop?options=%20%20") == {}


def test_application_name_parameter_wins_over_the_one_in_options() -> None:
    url = "postgresql://db/shop?application_name=web&options=-c%20application_name%3Dother"

    assert asyncpg_connect_args(url) == {"server_settings": {"application_name": "web"}}


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ("-d 5", "-d"),
        ("-c search_path", "-c search_path"),
        ("-c", "-c"),
        ("--", "--"),
        ("search_path=public", "search_path=public"),
        ("-c =public", "-c =public"),
    ],
)
def test_options_asyncpg_cannot_send_are_refused(options: str, shown: str) -> None:
    url = f"postgresql://db/shop?options={quote(options)}"

    with pytest.raises(DatabaseURLError) as caught:
        DatabaseSettings(url=url)

    assert str(caught.value) == (
        f"the asyncpg driver cannot take {shown!r} in the URL parameter 'options': "
        "write each setting as -c name=value, or set DATABASE_ASYNC_DRIVER=psycopg"
    )
    assert DatabaseSettings(url=url, async_driver="psycopg").async_url.query["options"] == options


@pytest.mark.parametrize(
    "name", ["keepalives", "fallback_application_name", "client_encoding", "sslpassword", "shop"]
)
def test_parameters_asyncpg_cannot_take_stop_the_settings(name: str) -> None:
    url = f"postgresql://db/shop?{name}=1"

    with pytest.raises(DatabaseURLError) as caught:
        DatabaseSettings.from_env({"DATABASE_URL": url})

    assert str(caught.value) == (
        f"the asyncpg driver does not take the URL parameter {name!r}: "
        "remove it, or set DATABASE_ASYNC_DRIVER=psycopg"
    )
    assert caught.value.url == url
    settings = DatabaseSettings.from_env({"DATABASE_URL": url, "DATABASE_ASYNC_DRIVER": "psycopg"})
    assert settings.async_url.query == {name: "1"}


def test_refusal_of_a_url_naming_asyncpg_says_to_name_psycopg() -> None:
    with pytest.raises(DatabaseURLError, match=r"remove it, or write postgresql\+psycopg://$"):
        DatabaseSettings(url="postgresql+asyncpg://db/shop?keepalives=1")


@pytest.mark.parametrize(
    ("name", "variable"),
    [("sslrootcert", "PGSSLROOTCERT"), ("sslcert", "PGSSLCERT"), ("sslkey", "PGSSLKEY")],
)
def test_tls_files_are_refused_pointing_to_the_environment_variable(
    name: str, variable: str
) -> None:
    with pytest.raises(DatabaseURLError) as caught:
        DatabaseSettings(url=f"postgresql://db/shop?sslmode=verify-full&{name}=/etc/pg/x.pem")

    assert str(caught.value) == (
        f"the asyncpg driver does not take the URL parameter {name!r}: set {variable} "
        "in the environment instead, or set DATABASE_ASYNC_DRIVER=psycopg"
    )


def test_a_translated_parameter_given_twice_is_refused() -> None:
    with pytest.raises(DatabaseURLError, match="gives the parameter 'application_name' more than"):
        DatabaseSettings(url="postgresql://db/shop?application_name=a&application_name=b")


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("target_session_attrs=read-write", {"target_session_attrs": "read-write"}),
        ("passfile=/home/app/.pgpass", {"passfile": "/home/app/.pgpass"}),
        ("host=db1&host=db2&user=app", {"host": ("db1", "db2"), "user": "app"}),
        ("dbname=shop", {"database": "shop"}),
        ("prepared_statement_cache_size=0", {"prepared_statement_cache_size": "0"}),
        ("service=shop", {"service": "shop"}),
    ],
)
def test_parameters_asyncpg_takes_stay_in_its_url(query: str, kept: dict[str, Any]) -> None:
    settings = DatabaseSettings(url=f"postgresql:///?{query}")

    assert dict(settings.async_url.query) == kept
    assert "connect_args" not in settings.async_engine_options()


def test_parameters_of_newer_asyncpg_releases_need_one(monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect(dsn: str | None = None, *, host: str | None = None) -> None: ...

    monkeypatch.setitem(sys.modules, "asyncpg", types.SimpleNamespace(connect=connect))

    with pytest.raises(DatabaseURLError) as caught:
        DatabaseSettings(url="postgresql://db/shop?service=shop")

    assert str(caught.value) == (
        "the installed asyncpg does not take the URL parameter 'service': upgrade asyncpg, "
        "remove the parameter, or set DATABASE_ASYNC_DRIVER=psycopg"
    )


class Connecting(Exception):
    """Stops a connection attempt once the driver's arguments are known."""


@pytest.mark.anyio
async def test_asyncpg_connect_gets_only_keywords_it_takes() -> None:
    url = f"postgresql://app@db:5433/shop?{LIBPQ_QUERY}&sslmode=require&target_session_attrs=any"
    engine = DatabaseSettings(url=url).create_async_engine(connect_args={"command_timeout": 9})
    seen: dict[str, Any] = {}

    @event.listens_for(engine.sync_engine, "do_connect")
    def _stop(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise Connecting

    with pytest.raises(Connecting):
        async with engine.connect():
            pass  # pragma: no cover
    await engine.dispose()

    assert seen == {
        "host": "db",
        "port": 5433,
        "user": "app",
        "database": "shop",
        "ssl": "require",
        "target_session_attrs": "any",
        "timeout": 5.0,
        "server_settings": {"application_name": "f2f-test", "search_path": "public"},
        "command_timeout": 9,
    }
    assert set(seen) <= set(inspect.signature(asyncpg.connect).parameters)


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.mark.anyio
async def test_libpq_parameters_reach_postgresql_on_both_sides(
    database_settings: DatabaseSettings,
) -> None:
    if database_settings.backend != "postgresql":
        pytest.skip("needs TEST_DATABASE_URL on PostgreSQL")
    settings = database_settings.with_url(with_query(database_settings.url, LIBPQ_QUERY))
    shown = text("SELECT current_setting('application_name'), current_setting('search_path')")

    engine = settings.create_async_engine()
    try:
        async with engine.connect() as connection:
            on_async = (await connection.execute(shown)).one()
    finally:
        await engine.dispose()
    sync_engine = create_engine(settings.sync_url, **settings.engine_options())
    try:
        with sync_engine.connect() as connection:
            on_sync = connection.execute(shown).one()
    finally:
        sync_engine.dispose()

    assert tuple(on_async) == tuple(on_sync) == ("f2f-test", "public")


@pytest.mark.anyio
async def test_connect_timeout_of_zero_waits_without_limit_on_asyncpg(
    database_settings: DatabaseSettings,
) -> None:
    if database_settings.async_driver != "asyncpg":
        pytest.skip("needs TEST_DATABASE_URL on PostgreSQL; asyncpg's timeout only")
    settings = database_settings.with_url(with_query(database_settings.url, "connect_timeout=0"))

    engine = settings.create_async_engine()
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
