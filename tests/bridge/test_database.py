from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from bridge.database import DatabaseSettings
from bridge.exceptions import ConfigurationError, DatabaseURLError


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
    settings = DatabaseSettings(url="postgresql://db/shop?application_name=web&sslmode=disable")

    assert dict(settings.async_url.query) == {"application_name": "web", "ssl": "disable"}


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
            "DATABASE_MAX_OVERFLOW": "0",
            "DATABASE_POOL_RECYCLE": "60",
            "DATABASE_POOL_PRE_PING": "off",
            "DATABASE_POOL_TIMEOUT": "2.5",
            "UNRELATED": "x",
        }
    )

    assert settings == DatabaseSettings(
        url="postgresql://db/shop",
        async_driver="psycopg",
        pool_size=3,
        max_overflow=0,
        pool_recycle=60,
        pool_pre_ping=False,
        pool_timeout=2.5,
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
    monkeypatch.setattr("bridge.database.importlib.util.find_spec", missing(module))

    with pytest.raises(DatabaseURLError, match=f"driver {module} is not installed") as caught:
        DatabaseSettings(url=url).check_drivers()

    assert hint in str(caught.value)


def test_check_drivers_passes_when_the_drivers_are_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bridge.database.importlib.util.find_spec", missing("asyncpg"))

    DatabaseSettings(url="postgresql://db/shop", async_driver="psycopg").check_drivers()
    DatabaseSettings(url="sqlite:///a.db").check_drivers()


def test_create_async_engine_checks_drivers_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.database.importlib.util.find_spec", missing("asyncpg"))

    with pytest.raises(DatabaseURLError, match="asyncpg is not installed"):
        DatabaseSettings(url="postgresql://db/shop").create_async_engine()


def test_flask_config_for_postgresql() -> None:
    settings = DatabaseSettings(url="postgresql://app@db/shop", pool_size=2, pool_timeout=3.0)

    assert settings.flask_config() == {
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://app@db/shop",
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": 2,
            "max_overflow": 10,
            "pool_recycle": 1800,
            "pool_pre_ping": True,
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
