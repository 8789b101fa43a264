"""``flask2fastapi``: run the hybrid server and list where each route stands.

Configuration errors print one line on stderr and exit with status 2, before
any port is bound. Each command imports the apps and the async stack when it
runs, so ``--help`` and a missing manifest answer without loading them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bridge._exceptions import BridgeError, ConfigurationError, ManifestError
from bridge._serving.manifest import Manifest, load_manifest
from bridge._shadow.cases import load_cases

if TYPE_CHECKING:
    from bridge._serving.routing import RouteTable

DEFAULT_MANIFEST = "migration.toml"
EXIT_CONFIG_ERROR = 2

manifest_option = click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False),
    help=f"The manifest; default ./{DEFAULT_MANIFEST}.",
)


@click.group()
@click.version_option(package_name="flask2fastapi")
def main() -> None:
    """Serve a Flask app and its FastAPI ports as one server, one route at a time."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes, each with its own legacy threads and database pools.",
)
@manifest_option
@click.option("--database-url", envvar="DATABASE_URL", help="Overrides DATABASE_URL.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log a line per request, as uvicorn does; off as under gunicorn (it costs ~20 us each).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    manifest_path: str | None,
    database_url: str | None,
    log_level: str,
    access_log: bool,
) -> None:
    """Run the hybrid server with uvicorn."""
    import uvicorn

    from bridge._serving.hybrid import MANIFEST_ENV, build_hybrid

    with _config_errors():
        if database_url:
            os.environ["DATABASE_URL"] = database_url
        manifest = load_manifest(_manifest_path(manifest_path))
        _check_ports(manifest)
        # Built here even with several workers: a bad manifest or app fails
        # before the port is bound, and the apps' first start (a demo database
        # being created) happens once, not once per worker.
        app = build_hybrid(manifest)
        _check_port_free(host, port)
    os.environ[MANIFEST_ENV] = str(manifest.path)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "lifespan": "on",
    }
    if workers == 1:
        uvicorn.run(app, **options)
    else:  # each worker imports the app again, through the public factory
        uvicorn.run("bridge:hybrid_from_env", factory=True, workers=workers, **options)


@main.command()
@manifest_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def routes(manifest_path: str | None, as_json: bool) -> None:
    """List every Flask route, its state and whether an async port exists."""
    with _config_errors():
        table = route_table(load_manifest(_manifest_path(manifest_path)))
    rows = [
        {
            "method": route.method,
            "rule": route.rule,
            "endpoint": route.endpoint,
            "state": route.state.value,
            "ported": route.ported,
        }
        for route in sorted(table.routes, key=lambda r: (r.rule, r.method))
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(_table(rows))


@main.command()
@click.argument("cases_path", metavar="CASES", type=click.Path(dir_okay=False))
@manifest_option
@click.option("--legacy-url", help="A running legacy server, instead of the app in-process.")
@click.option("--async-url", help="A running server of the ports, instead of the app in-process.")
@click.option("--database-url", envvar="DATABASE_URL", help="Overrides DATABASE_URL.")
@click.option("--no-db", is_flag=True, help="Compare responses only, not database writes.")
@click.option(
    "--aa/--no-aa",
    default=True,
    show_default=True,
    help="Run the legacy side twice to tell noise from differences.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the results as JSON to this file.",
)
def shadow(
    cases_path: str,
    manifest_path: str | None,
    legacy_url: str | None,
    async_url: str | None,
    database_url: str | None,
    no_db: bool,
    aa: bool,
    json_path: str | None,
) -> None:
    """Send every case in CASES to the legacy route and to its port, and compare.

    CASES is a JSON Lines file of requests. Prints a table per route and the
    first difference of each route that differs; exits 1 if any case differs.
    """
    from bridge._shadow.report import run_shadow

    with _config_errors():
        if (legacy_url is None) != (async_url is None):
            raise ConfigurationError("give both --legacy-url and --async-url, or neither")
        if database_url:
            os.environ["DATABASE_URL"] = database_url
        cases = load_cases(cases_path)
        manifest = load_manifest(_manifest_path(manifest_path))
        failed = run_shadow(
            cases,
            manifest,
            legacy_url=legacy_url,
            async_url=async_url,
            record_rows=not no_db,
            aa=aa,
            json_path=json_path,
        )
    sys.exit(1 if failed else 0)


def _check_ports(manifest: Manifest) -> None:
    """What the ports need, checked before any app is imported.

    Legacy routes run on whatever database the Flask app is configured for;
    only ports run on ``DATABASE_URL`` through an async driver, so only a
    manifest with an async route needs a URL the async side supports.
    """
    manifest.check_apps()
    if manifest.async_routes:
        from bridge._porting.database import DatabaseSettings

        DatabaseSettings.from_env().check_drivers()


def route_table(manifest: Manifest) -> RouteTable:
    from bridge._serving.hybrid import build_hybrid

    hybrid = build_hybrid(manifest)
    hybrid.legacy.shutdown()
    return hybrid.routes


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line, as for any configuration error, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror}): stop what uses it, "
                "or give another --port"
            ) from None


def _manifest_path(given: str | None) -> str:
    if given:
        return given
    if Path(DEFAULT_MANIFEST).is_file():
        return DEFAULT_MANIFEST
    raise ManifestError(
        f"no {DEFAULT_MANIFEST} in {Path.cwd()}: give --manifest PATH, or write one there "
        'naming your app: [apps] flask = "package:create_app"'
    )


def _table(rows: list[dict[str, Any]]) -> str:
    from bridge._table import render_table

    headers = ["method", "rule", "endpoint", "state", "ported"]
    cells = [
        [str(row[h]).lower() if h == "ported" else str(row[h]) for h in headers] for row in rows
    ]
    return render_table([headers, *cells])


@contextmanager
def _config_errors() -> Iterator[None]:
    try:
        yield
    except BridgeError as exc:
        click.echo(f"flask2fastapi: error: {exc}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)
