"""``flask2fastapi``: run the hybrid server and list where each route stands.

Configuration errors print one line on stderr and exit with status 2, before
any port is bound. Each command imports the apps and the async stack when it
runs, so ``--help`` and a missing manifest answer without loading them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from bridge._exceptions import BridgeError, ConfigurationError, ManifestError
from bridge._serving.manifest import Manifest, load_manifest
from bridge._shadow.cases import load_cases

if TYPE_CHECKING:
    from bridge._rollout.commands import Outcome
    from bridge._rollout.store import RolloutStore
    from bridge._serving.hybrid import HybridApp
    from bridge._serving.routing import RouteTable

DEFAULT_MANIFEST = "migration.toml"
EXIT_CONFIG_ERROR = 2
STARTUP_FAILURE = 3  # uvicorn's status when the app fails to start

# Session keys published in documentation or in this repository: anyone can sign
# a session cookie with them. Flask's tutorial ("dev"), its quickstart and its
# configuration page, the demo's own key, and the placeholder an earlier
# docker-compose.yml of this repository set.
PUBLIC_SECRET_KEYS: frozenset[str | bytes] = frozenset(
    {
        "dev",
        b'_5#y2L"F4Q8z\n\xec]/',
        "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
        "flask2fastapi-dev-only-secret-key",
        "change-me-to-the-flask-apps-secret-key",
    }
)
DEVELOPMENT_KEY_WARNING = (
    "WARNING: serving with a published development SECRET_KEY, as [bridge] "
    "allow_development_key allows: anyone who can reach this server can sign a session "
    "cookie and act as any user. Set SECRET_KEY before anyone else can connect."
)

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
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto "
    "when the peer is one of --forwarded-allow-ips.",
)
@click.option(
    "--forwarded-allow-ips",
    envvar="FORWARDED_ALLOW_IPS",
    help="Comma-separated addresses or networks of the proxies to trust, or '*'; "
    "default $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="Seconds a client has to send a request's headers, then 408; "
    "default [bridge] header_timeout, else 60.",
)
@click.option(
    "--timeout-keep-alive",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    metavar="SECONDS",
    help="Seconds an idle connection is kept open for the next request.",
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
    proxy_headers: bool,
    forwarded_allow_ips: str | None,
    header_timeout: float | None,
    timeout_keep_alive: int,
    access_log: bool,
) -> None:
    """Run the hybrid server with uvicorn."""
    from bridge._serving.hybrid import MANIFEST_ENV, build_hybrid
    from bridge._serving.protocol import HEADER_TIMEOUT_ENV, PROTOCOL

    with _config_errors():
        if database_url:
            os.environ["DATABASE_URL"] = database_url
        _check_proxy_options(proxy_headers, forwarded_allow_ips)
        manifest = load_manifest(_manifest_path(manifest_path))
        _check_ports(manifest)
        # Built here even with several workers: a bad manifest or app fails
        # before the port is bound, and the apps' first start (a demo database
        # being created) happens once, not once per worker.
        app = build_hybrid(manifest)
        try:
            _check_secret_keys(app, manifest.options.allow_development_key, host)
            _check_port_free(host, port)
        finally:
            if workers > 1:
                app.close()  # the workers build their own: the parent keeps no connection
    # Workers are new processes: what they read, they read from the environment.
    os.environ[MANIFEST_ENV] = str(manifest.path)
    os.environ[HEADER_TIMEOUT_ENV] = str(
        manifest.options.header_timeout if header_timeout is None else header_timeout
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "lifespan": "on",
        "http": PROTOCOL,
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
        "timeout_keep_alive": timeout_keep_alive,
        "access_log": access_log,
    }
    if workers == 1:
        _run_one(app, options)
    else:  # each worker imports the app again, through the public factory
        import uvicorn

        with _metrics_folder(manifest):
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


# The rollout: where each route stands on the running servers, and the
# operator's moves. The bodies are in bridge/_rollout/commands.py.

route_argument = click.argument("route_text", metavar="ROUTE")
actor_option = click.option(
    "--actor", help="Who makes the change, as the events record it; default the OS user."
)
store_url_option = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    help="Overrides DATABASE_URL, where the rollout store is unless [rollout] database says.",
)


@main.command()
@manifest_option
@store_url_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def status(manifest_path: str | None, database_url: str | None, as_json: bool) -> None:
    """List every Flask route: its state in the manifest and on the servers, the requests
    each side served, the shadow's comparisons and any demotion."""
    from bridge._rollout import commands

    with _config_errors():
        manifest = _rollout_manifest(manifest_path, database_url)
        routes = route_table(manifest).routes
        with _rollout_store(manifest) as store:
            rows = commands.status(routes, manifest, store)
    click.echo(json.dumps(rows, indent=2) if as_json else commands.status_table(rows))


@main.command()
@route_argument
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["shadow", "canary", "async"]),
    help="The state to move the route to.",
)
@click.option(
    "--percent",
    type=click.FloatRange(0, 100, min_open=True),
    help="With --to canary: the share of users the port serves.",
)
@click.option("--force", is_flag=True, help="Promote even below the match-rate bar.")
@actor_option
@manifest_option
@store_url_option
def promote(
    route_text: str,
    target: str,
    percent: float | None,
    force: bool,
    actor: str | None,
    manifest_path: str | None,
    database_url: str | None,
) -> None:
    """Move ROUTE ("GET /rule", as in the manifest) to shadow, canary or async on every worker.

    Refused, with status 1, while the shadow's match rate is below [rollout]
    promote_match_rate over promote_min_compared requests, unless --force.
    """
    from bridge._rollout import commands
    from bridge._serving.manifest import RouteState

    with _config_errors():
        manifest = _rollout_manifest(manifest_path, database_url)
        route = commands.find_route(route_text, route_table(manifest).routes)
        with _rollout_store(manifest) as store:
            outcome = commands.promote(
                store,
                manifest,
                route,
                to=RouteState(target),
                percent=percent,
                force=force,
                actor=actor or commands.default_actor(),
            )
    _print_outcome(outcome)


@main.command()
@route_argument
@click.option("--reason", default="demoted by an operator", show_default=True)
@actor_option
@manifest_option
@store_url_option
def demote(
    route_text: str,
    reason: str,
    actor: str | None,
    manifest_path: str | None,
    database_url: str | None,
) -> None:
    """Send ROUTE back to legacy on every worker until it is cleared or promoted."""
    from bridge._rollout import commands

    with _config_errors():
        manifest = _rollout_manifest(manifest_path, database_url)
        route = commands.find_route(route_text, route_table(manifest).routes)
        with _rollout_store(manifest) as store:
            outcome = commands.demote(
                store, manifest, route, reason=reason, actor=actor or commands.default_actor()
            )
    _print_outcome(outcome)


@main.command()
@route_argument
@actor_option
@manifest_option
@store_url_option
def clear(
    route_text: str, actor: str | None, manifest_path: str | None, database_url: str | None
) -> None:
    """Drop ROUTE's demotion or promotion: the manifest's state applies again."""
    from bridge._rollout import commands

    with _config_errors():
        manifest = _rollout_manifest(manifest_path, database_url)
        route = commands.find_route(route_text, route_table(manifest).routes)
        with _rollout_store(manifest) as store:
            outcome = commands.clear(
                store, manifest, route, actor=actor or commands.default_actor()
            )
    _print_outcome(outcome)


@main.command()
@click.argument("route_text", metavar="[ROUTE]", required=False)
@click.option(
    "--case",
    "case_id",
    type=int,
    metavar="ID",
    help="Print mismatch ID as a line of a shadow cases file instead.",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@manifest_option
@store_url_option
def mismatches(
    route_text: str | None,
    case_id: int | None,
    limit: int,
    as_json: bool,
    manifest_path: str | None,
    database_url: str | None,
) -> None:
    """List the newest recorded mismatches of the live shadow, of ROUTE or of every route.

    Each shows the request, both answers and the difference, with secrets
    redacted. ``mismatches --case ID >> cases.jsonl`` turns one into a case
    that ``flask2fastapi shadow cases.jsonl`` runs.
    """
    from bridge._rollout import commands

    with _config_errors():
        if case_id is not None and route_text is not None:
            raise ConfigurationError("give ROUTE or --case ID, not both")
        manifest = _rollout_manifest(manifest_path, database_url)
        key = None
        if route_text is not None:
            key = commands.find_route(route_text, route_table(manifest).routes).key
        with _rollout_store(manifest) as store:
            if case_id is not None:
                found = store.mismatch(case_id)
                if found is None:
                    raise ConfigurationError(
                        f"no mismatch #{case_id}: flask2fastapi mismatches lists them"
                    )
                case, notes = commands.mismatch_case(found)
                click.echo(commands.case_line(case))
                for note in notes:
                    click.echo(f"flask2fastapi: note: {note}", err=True)
                return
            recorded = store.mismatches(key, limit=limit)
    if as_json:
        click.echo(json.dumps([commands.mismatch_json(m) for m in recorded], indent=2))
    elif recorded:
        click.echo("\n\n".join(commands.mismatch_text(m) for m in recorded))
    else:
        click.echo("no mismatch recorded", err=True)


def _rollout_manifest(manifest_path: str | None, database_url: str | None) -> Manifest:
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    return load_manifest(_manifest_path(manifest_path))


@contextmanager
def _rollout_store(manifest: Manifest) -> Iterator[RolloutStore]:
    """The rollout store the servers use; its database's errors as one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from bridge._rollout.commands import open_store

    try:
        store = open_store(manifest)
        try:
            yield store
        finally:
            store.dispose()
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigurationError(
            f"cannot use the rollout store ({cause}): check [rollout] database, else DATABASE_URL"
        ) from exc


def _print_outcome(outcome: Outcome) -> None:
    if outcome.ok:
        click.echo(outcome.text)
    else:
        click.echo(f"flask2fastapi: {outcome.text}", err=True)
        sys.exit(1)


@main.command()
@click.argument("endpoint")
@manifest_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the route here instead of printing it.",
)
@click.option(
    "--cases",
    "cases_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the starter shadow cases here; default next to --out, as NAME.cases.jsonl.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def port(
    endpoint: str, manifest_path: str | None, out: str | None, cases_path: str | None, force: bool
) -> None:
    """Write a FastAPI route to fill in for the Flask view ENDPOINT, and its shadow cases.

    ENDPOINT is the view's endpoint name, as `flask2fastapi routes` lists it
    (such as catalog.get_product).
    """
    from bridge._porting.scaffold import scaffold_port
    from bridge._serving.loading import load_fastapi_app, load_flask_app

    with _config_errors():
        manifest = load_manifest(_manifest_path(manifest_path))
        if cases_path is None and out is not None:
            cases_path = str(Path(out).with_suffix(".cases.jsonl"))
        targets = [Path(p) for p in (out, cases_path) if p is not None]
        existing = [str(p) for p in targets if p.exists()]
        if existing and not force:
            raise ConfigurationError(f"{existing[0]} exists: give --force to overwrite it")
        flask_app = load_flask_app(manifest.flask_app, manifest.path)
        fastapi_app = None
        if manifest.fastapi_app:
            fastapi_app = load_fastapi_app(manifest.fastapi_app, manifest.path)
        scaffold = scaffold_port(flask_app, endpoint, fastapi_app)
        if out is None:
            click.echo(scaffold.route, nl=False)
        else:
            _write_new(out, scaffold.route)
        if cases_path is not None:
            _write_new(cases_path, scaffold.cases)


def _write_new(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write {path} ({exc.strerror}): give a path in a folder that exists"
        ) from exc
    click.echo(f"wrote {path}", err=True)


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
    """The Flask app's routes checked against the manifest and the ports.

    The apps alone, not the server around them: what only serving needs (the
    metrics token, the rollout store) is not asked for.
    """
    from bridge._serving.hybrid import dispose_flask_engines
    from bridge._serving.loading import load_fastapi_app, load_flask_app
    from bridge._serving.routing import RouteTable

    manifest.check_apps()
    flask_app = load_flask_app(manifest.flask_app, manifest.path)
    fastapi_app = load_fastapi_app(manifest.fastapi_app, manifest.path)
    dispose_flask_engines(flask_app)
    return RouteTable(flask_app.url_map, fastapi_app.routes, manifest)


@contextmanager
def _metrics_folder(manifest: Manifest) -> Iterator[None]:
    """With metrics on, the folder where the workers add up their metrics.

    prometheus-client's multiprocess mode: each worker writes its counts to
    files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape reads them all. A fresh
    private folder, removed when the server stops, unless the variable is set.
    """
    from bridge._rollout.metrics import MULTIPROC_ENV

    if manifest.rollout.metrics_path is None or os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="flask2fastapi-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def _run_one(app: HybridApp, options: dict[str, Any]) -> None:
    """Serve in this process as ``uvicorn.run`` does, except that a stop by SIGTERM exits 0.

    uvicorn shuts down gracefully on SIGTERM, then raises the signal again with
    the previous handler, so the process ends killed by it (status 143). A
    supervisor reads that as a crash; gunicorn exits 0. The handler installed
    here is that previous handler: it stops the server if the signal comes
    before uvicorn listens for it, and does nothing once the server is stopping.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, **options))

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not server.should_exit:
            server.handle_exit(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    with suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has stopped gracefully
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _check_proxy_options(proxy_headers: bool, forwarded_allow_ips: str | None) -> None:
    """Refuse trusted proxies given on the command line while proxy headers are off.

    gunicorn reads X-Forwarded-Proto from ``--forwarded-allow-ips`` without being
    asked; here nothing is read without ``--proxy-headers``, so the option alone
    would do nothing. FORWARDED_ALLOW_IPS in the environment is no such mistake.
    """
    given = click.get_current_context().get_parameter_source("forwarded_allow_ips")
    if forwarded_allow_ips and not proxy_headers and given is ParameterSource.COMMANDLINE:
        raise ConfigurationError(
            "--forwarded-allow-ips does nothing while proxy headers are off: "
            "add --proxy-headers, or drop --forwarded-allow-ips"
        )


def _check_secret_keys(app: HybridApp, allow_development_key: bool, host: str) -> None:
    """Refuse to serve session cookies anyone can sign; warn when the manifest allows it.

    The Flask app's ``SECRET_KEY`` and its fallbacks sign and verify the session
    cookie, and so does every :class:`FlaskSessionMiddleware` of the FastAPI
    app. A missing key is always refused. A published development key is
    refused unless the manifest sets ``allow_development_key`` and the server
    listens on a loopback address, where only this machine can send a cookie.
    """
    keys = _session_keys(app)
    if not keys[0]:
        raise ConfigurationError(
            "the Flask app has no SECRET_KEY: give it the key it has in production "
            "(the demo reads the SECRET_KEY environment variable)"
        )
    public = [key for key in keys if _is_public(key)]
    if not public:
        return
    if not allow_development_key:
        raise ConfigurationError(
            f"the session key {public[0]!r} is a published development key: anyone "
            "can sign a session cookie with it: set the app's SECRET_KEY to a secret "
            "(python -c 'import secrets; print(secrets.token_hex())')"
        )
    if not _is_loopback(host):
        raise ConfigurationError(
            f"the session key {public[0]!r} is a published development key, allowed "
            f"by [bridge] allow_development_key on a loopback --host only, not on {host}: "
            "set the app's SECRET_KEY to a secret"
        )
    click.secho(DEVELOPMENT_KEY_WARNING, err=True, fg="red", bold=True)


def _session_keys(app: HybridApp) -> list[str | bytes]:
    """The Flask app's ``SECRET_KEY`` first, then every other key that verifies cookies."""
    from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionMiddleware

    config = app.flask_app.config
    keys: list[str | bytes] = [config.get("SECRET_KEY") or ""]
    keys += config.get("SECRET_KEY_FALLBACKS") or []
    for factory, args, kwargs in app.fastapi_app.user_middleware:
        if factory is FlaskSessionMiddleware:
            cookie: FlaskSessionConfig = kwargs.get("config") or args[0]
            keys += [cookie.secret_key, *cookie.secret_key_fallbacks]
    return keys


def _is_public(key: str | bytes) -> bool:
    from itsdangerous.encoding import want_bytes  # how the signer reads a key

    return want_bytes(key) in {want_bytes(public) for public in PUBLIC_SECRET_KEYS}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
