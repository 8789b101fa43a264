from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner, Result

from bridge._cli import main
from bridge._serving.protocol import HEADER_TIMEOUT_ENV, PROTOCOL
from tests.bridge.apps import stop

LEGACY_SOURCE = """
    import os

    from flask import Flask, request

    def create_app():
        app = Flask(__name__, static_folder=None)
        app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")

        @app.get("/api/items")
        def list_items():
            return {"side": "legacy"}

        @app.get("/api/items/<int:item_id>")
        def get_item(item_id):
            return {"side": "legacy", "id": item_id}

        @app.post("/api/uploads")
        def upload():
            body = request.get_data()
            return {"side": "legacy", "size": len(body), "tail": body[-4:].decode()}

        return app
"""

PORTED_SOURCE = """
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.get("/api/items")
    def list_items():
        return {"side": "async"}

    @app.post("/api/orders")
    async def upload(request: Request):
        body = await request.body()
        return {"side": "async", "size": len(body), "tail": body[-4:].decode()}
"""

MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
    fastapi = "{ported}:app"

    [routes]
    "GET /api/items" = "async"
"""

# What a user writes first: the Flask app alone, before any route is ported.
FLASK_ONLY_MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
"""

# The key the test apps read from SECRET_KEY, as a production app reads its own.
TEST_SECRET_KEY = "cli-tests-" + uuid.uuid4().hex

# A URL the async side cannot run on; the legacy app may be configured for it.
UNSUPPORTED_DATABASE_URL = "mysql+pymysql://u@h/db"


@dataclass
class Project:
    """Two test apps and a manifest naming them, in a folder of their own."""

    folder: Path
    legacy: str
    ported: str

    @property
    def manifest(self) -> Path:
        return self.folder / "migration.toml"

    def write_manifest(self, text: str) -> Path:
        self.manifest.write_text(textwrap.dedent(text), encoding="utf-8")
        return self.manifest


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    suffix = uuid.uuid4().hex[:8]
    legacy, ported = f"cli_legacy_{suffix}", f"cli_ported_{suffix}"
    (tmp_path / f"{legacy}.py").write_text(textwrap.dedent(LEGACY_SOURCE), encoding="utf-8")
    (tmp_path / f"{ported}.py").write_text(textwrap.dedent(PORTED_SOURCE), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    created = Project(tmp_path, legacy, ported)
    created.write_manifest(MANIFEST.format(legacy=legacy, ported=ported))
    yield created
    sys.modules.pop(legacy, None)
    sys.modules.pop(ported, None)


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """Run the command in-process with SECRET_KEY set, unless *env* says otherwise (None unsets)."""
    # serve --database-url sets DATABASE_URL for its workers: keep it from the next test.
    saved = dict(os.environ)
    try:
        return CliRunner().invoke(
            main, list(args), env={"SECRET_KEY": TEST_SECRET_KEY, **(env or {})}
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)


def assert_config_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("flask2fastapi: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


def row(method: str, rule: str, endpoint: str, state: str, ported: bool) -> dict[str, object]:
    return {"method": method, "rule": rule, "endpoint": endpoint, "state": state, "ported": ported}


EXPECTED_ROWS = [
    row("GET", "/api/items", "list_items", "async", True),
    row("GET", "/api/items/<int:item_id>", "get_item", "legacy", False),
    row("POST", "/api/uploads", "upload", "legacy", False),
]


def test_routes_json_lists_every_flask_route(project: Project) -> None:
    result = invoke("routes", "--json", "--manifest", str(project.manifest))

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == EXPECTED_ROWS


def test_routes_reads_migration_toml_of_the_current_folder(project: Project) -> None:
    result = invoke("routes", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["state"] == "async"


def test_routes_table(project: Project) -> None:
    result = invoke("routes", "--manifest", str(project.manifest))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["method", "rule", "endpoint", "state", "ported"]
    assert lines[1].split() == ["GET", "/api/items", "list_items", "async", "true"]
    assert lines[2].split() == ["GET", "/api/items/<int:item_id>", "get_item", "legacy", "false"]
    assert lines[3].split() == ["POST", "/api/uploads", "upload", "legacy", "false"]
    # Columns line up: every row starts its "rule" cell where the header does.
    column = lines[0].index("rule")
    assert all(line[column - 2 : column] == "  " and line[column] == "/" for line in lines[1:])


@pytest.mark.parametrize(
    ("manifest", "fragments"),
    [
        pytest.param("[routes\n", ["migration.toml", "not valid TOML"], id="bad-toml"),
        pytest.param("[bridge]\nthreads = 1\n", ["unknown key 'threads'"], id="unknown-key"),
        pytest.param(
            '[apps]\nflask = "{legacy}:create_app"\nfastapi = "{ported}:app"\n'
            '[routes]\n"GET /api/item" = "legacy"\n',
            ["route GET /api/item matches no rule", "closest: GET /api/items"],
            id="unknown-route",
        ),
        pytest.param(
            '[apps]\nflask = "{legacy}:create_app"\nfastapi = "{ported}:app"\n'
            '[routes]\n"POST /api/uploads" = "async"\n',
            ["route POST /api/uploads is async but the FastAPI app has no POST route"],
            id="async-without-port",
        ),
        pytest.param(
            '[apps]\nflask = "no_such_module_xyz:create_app"\nfastapi = "{ported}:app"\n',
            ["cannot import 'no_such_module_xyz'"],
            id="unknown-import",
        ),
        pytest.param(
            '[apps]\nflask = "{legacy}:nothing"\nfastapi = "{ported}:app"\n',
            ["has no attribute 'nothing'"],
            id="unknown-attribute",
        ),
        pytest.param(
            '[apps]\nfastapi = "{ported}:app"\n', ["[apps] flask is missing"], id="missing-app"
        ),
        pytest.param(
            '[apps]\nflask = "{legacy}:create_app"\n[routes]\n"GET /api/items" = "async"\n',
            ["route GET /api/items is async but [apps] names no fastapi app", "fastapi = "],
            id="async-without-fastapi-app",
        ),
    ],
)
def test_routes_configuration_error_is_one_line_and_exit_2(
    project: Project, manifest: str, fragments: list[str]
) -> None:
    project.write_manifest(manifest.format(legacy=project.legacy, ported=project.ported))

    assert_config_error(invoke("routes", "--manifest", str(project.manifest)), *fragments)


@pytest.mark.parametrize("command", ["routes", "serve"])
def test_no_manifest_in_the_folder_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)

    result = invoke(command)

    assert_config_error(result, f"no migration.toml in {tmp_path}", "--manifest PATH")
    assert list(tmp_path.iterdir()) == []  # no demo database written either


def test_missing_manifest_is_one_line_and_exit_2(project: Project) -> None:
    result = invoke("routes", "--manifest", str(project.folder / "nowhere.toml"))

    assert_config_error(result, "nowhere.toml", "no such file")


@pytest.mark.parametrize(
    ("env", "args", "fragments"),
    [
        pytest.param({}, ["--database-url", "sqlite://"], ["in-memory SQLite"], id="in-memory"),
        pytest.param(
            {"DATABASE_URL": "mysql://db/x"}, [], ["unsupported database URL"], id="scheme"
        ),
        pytest.param({"DATABASE_URL": "::"}, [], ["cannot parse database URL"], id="unparsable"),
        pytest.param(
            {"DATABASE_URL": "sqlite:///ok.db", "DATABASE_POOL_SIZE": "lots"},
            [],
            ["DATABASE_POOL_SIZE must be a whole number"],
            id="pool-size",
        ),
    ],
)
def test_serve_with_bad_database_configuration_is_one_line_and_exit_2(
    project: Project, env: dict[str, str], args: list[str], fragments: list[str]
) -> None:
    result = invoke("serve", "--manifest", str(project.manifest), *args, env=env)

    assert_config_error(result, *fragments)


def test_routes_of_a_flask_only_manifest_on_an_unsupported_database(project: Project) -> None:
    project.write_manifest(FLASK_ONLY_MANIFEST.format(legacy=project.legacy))

    result = invoke("routes", "--json", env={"DATABASE_URL": UNSUPPORTED_DATABASE_URL})

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {**expected, "state": "legacy", "ported": False} for expected in EXPECTED_ROWS
    ]


def test_serve_names_the_missing_fastapi_app_before_the_database(project: Project) -> None:
    project.write_manifest(
        FLASK_ONLY_MANIFEST.format(legacy=project.legacy) + '[routes]\n"GET /api/items" = "async"\n'
    )

    result = invoke(
        "serve", "--manifest", str(project.manifest), env={"DATABASE_URL": UNSUPPORTED_DATABASE_URL}
    )

    assert_config_error(result, "route GET /api/items is async but [apps] names no fastapi app")


def test_serve_with_bad_manifest_is_one_line_and_exit_2(project: Project) -> None:
    project.write_manifest('[routes]\n"GET /x" = "done"\n')

    result = invoke(
        "serve", "--manifest", str(project.manifest), env={"DATABASE_URL": "sqlite:///a.db"}
    )

    assert_config_error(result, "state 'done'")


def run_module(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=project.folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{project.folder}/db.sqlite3"},
    )


def test_python_m_bridge_routes_json(project: Project) -> None:
    completed = run_module(project, "routes", "--json")

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == EXPECTED_ROWS


def test_python_m_bridge_configuration_error(project: Project) -> None:
    project.write_manifest("[routes\n")

    completed = run_module(project, "routes")

    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1
    assert completed.stderr.startswith("flask2fastapi: error: ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # bounded by the deadline
    raise AssertionError(f"the server did not answer {url} in time")


@dataclass
class Served:
    """A ``python -m bridge serve`` process: its pid; once stopped, its exit status and stderr."""

    pid: int = 0
    returncode: int | None = None
    stderr: str = ""


@contextmanager
def serving(
    project: Project,
    database_url: str,
    *options: str,
    env: dict[str, str] | None = None,
    ready: str = "/api/items",
) -> Iterator[tuple[httpx.Client, Served]]:
    """Serve the project's manifest over TCP; a client for it, and how the server ended.

    The server is stopped with SIGTERM, as a supervisor stops it.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port),
         "--manifest", str(project.manifest), "--log-level", "warning", *options],
        cwd=project.folder,
        env={**os.environ, "SECRET_KEY": TEST_SECRET_KEY, "DATABASE_URL": database_url,
             **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    served = Served(pid=process.pid)
    try:
        wait_until_serving(f"{base}{ready}", process, time.monotonic() + 30)
        with httpx.Client(base_url=base, timeout=10) as http:
            yield http, served
    finally:
        served.stderr = stop(process)
        served.returncode = process.returncode


def test_serve_answers_both_sides_over_tcp(project: Project) -> None:
    project.write_manifest(
        MANIFEST.format(legacy=project.legacy, ported=project.ported)
        + '    "POST /api/uploads" = "legacy"\n'
    )
    with serving(project, f"sqlite:///{project.folder}/db.sqlite3") as (http, served):
        ported = http.get("/api/items")
        legacy = http.get("/api/items/3")
        legacy_upload = http.post("/api/uploads", content=iter([b"a" * 1000, b"b" * 1000, b"end!"]))
        ported_upload = http.post("/api/orders", content=iter([b"x" * 500, b"fin!"]))
        unknown = http.get("/nowhere")

    assert ported.json() == {"side": "async"}
    assert ported.headers["x-bridge-side"] == "async"
    assert legacy.json() == {"side": "legacy", "id": 3}
    assert legacy.headers["x-bridge-side"] == "legacy"
    assert legacy_upload.request.headers["transfer-encoding"] == "chunked"
    assert legacy_upload.json() == {"side": "legacy", "size": 2004, "tail": "end!"}
    assert ported_upload.json() == {"side": "async", "size": 504, "tail": "fin!"}
    assert unknown.status_code == 404
    assert unknown.headers["x-bridge-side"] == "legacy"
    # A graceful stop exits 0, as gunicorn's does: a supervisor reads anything else as a crash.
    assert served.returncode == 0
    assert "Traceback" not in served.stderr


def test_serve_a_flask_only_manifest_on_an_unsupported_database_over_tcp(
    project: Project,
) -> None:
    project.write_manifest(FLASK_ONLY_MANIFEST.format(legacy=project.legacy))

    with serving(project, UNSUPPORTED_DATABASE_URL) as (http, served):
        items = http.get("/api/items")
        item = http.get("/api/items/3")
        docs = http.get("/docs")

    assert items.json() == {"side": "legacy"}
    assert items.headers["x-bridge-side"] == "legacy"
    assert item.json() == {"side": "legacy", "id": 3}
    # The FastAPI app a manifest implies serves nothing, not even FastAPI's docs.
    assert docs.status_code == 404
    assert docs.headers["x-bridge-side"] == "legacy"
    assert served.returncode == 0
    assert "Traceback" not in served.stderr


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(project: Project) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", "--port", str(port))
    assert_config_error(result, f"cannot listen on 127.0.0.1:{port}", "--port")


@dataclass
class Handed:
    """What ``serve`` handed to uvicorn, which the test keeps from listening."""

    config: uvicorn.Config | None = None  # one process
    run: dict[str, Any] | None = None  # uvicorn.run's arguments, with --workers
    environ: dict[str, str] = field(default_factory=dict)  # as uvicorn started


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Handed]:
    """uvicorn replaced by a recorder: ``serve`` runs every check, and nothing listens."""
    handed = Handed()

    class Server:
        def __init__(self, config: uvicorn.Config) -> None:
            handed.config = config
            self.started = True
            self.should_exit = False

        def run(self) -> None:
            handed.environ = dict(os.environ)

    def run(app: object, **options: Any) -> None:
        handed.run = {"app": app, **options}
        handed.environ = dict(os.environ)

    monkeypatch.setattr(uvicorn, "Server", Server)
    monkeypatch.setattr(uvicorn, "run", run)
    sigterm = signal.getsignal(signal.SIGTERM)
    yield handed
    signal.signal(signal.SIGTERM, sigterm)  # serve installs its own


# A Flask app with a given key, and a FastAPI app whose session middleware has one.
KEYED_LEGACY = """
    from flask import Flask

    def create_app():
        app = Flask(__name__)
        app.secret_key = {key!r}
        app.config["SECRET_KEY_FALLBACKS"] = {fallbacks!r}
        return app
"""
KEYED_PORT = """
    from fastapi import FastAPI

    from bridge import FlaskSessionConfig, FlaskSessionMiddleware

    app = FastAPI()
    app.add_middleware(FlaskSessionMiddleware, config=FlaskSessionConfig(secret_key={key!r}))
"""
KEYED_MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
    fastapi = "{ported}:app"
"""
FLASK_DOCS_KEY = b'_5#y2L"F4Q8z\n\xec]/'  # Flask's quickstart


def keyed_apps(
    project: Project,
    key: str | bytes,
    *,
    fallbacks: list[str] | None = None,
    port_key: str = TEST_SECRET_KEY,
    bridge: str = "",
) -> None:
    """Point the project's manifest at apps signing sessions with these keys."""
    legacy, ported = f"{project.legacy}_keyed", f"{project.ported}_keyed"
    (project.folder / f"{legacy}.py").write_text(
        textwrap.dedent(KEYED_LEGACY.format(key=key, fallbacks=fallbacks or [])), encoding="utf-8"
    )
    (project.folder / f"{ported}.py").write_text(
        textwrap.dedent(KEYED_PORT.format(key=port_key)), encoding="utf-8"
    )
    project.write_manifest(KEYED_MANIFEST.format(legacy=legacy, ported=ported) + bridge)


@pytest.mark.parametrize("secret_key", [None, ""], ids=["unset", "empty"])
def test_serve_refuses_a_flask_app_without_a_secret_key(
    project: Project, handed: Handed, secret_key: str | None
) -> None:
    result = invoke("serve", env={"SECRET_KEY": secret_key})

    assert_config_error(result, "the Flask app has no SECRET_KEY", "SECRET_KEY environment")
    assert handed.config is None


@pytest.mark.parametrize(
    ("keys", "shown"),
    [
        pytest.param({"key": "dev"}, "'dev'", id="flask-tutorial"),
        pytest.param({"key": FLASK_DOCS_KEY}, "b'_5#y2L", id="flask-quickstart"),
        pytest.param(
            {"key": "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf"},
            "'192b9bdd",
            id="flask-config-docs",
        ),
        pytest.param({"key": "flask2fastapi-dev-only-secret-key"}, "'flask2fastapi-", id="demo"),
        pytest.param(
            {"key": "change-me-to-the-flask-apps-secret-key"}, "'change-me", id="old-compose"
        ),
        pytest.param({"key": b"dev"}, "b'dev'", id="as-bytes"),
        pytest.param({"key": TEST_SECRET_KEY, "fallbacks": ["dev"]}, "'dev'", id="fallback"),
        pytest.param({"key": TEST_SECRET_KEY, "port_key": "dev"}, "'dev'", id="port-middleware"),
    ],
)
def test_serve_refuses_a_published_development_key(
    project: Project, handed: Handed, keys: dict[str, Any], shown: str
) -> None:
    keyed_apps(project, **keys)

    result = invoke("serve")

    assert_config_error(result, f"the session key {shown}", "published development key")
    assert "set the app's SECRET_KEY to a secret" in result.stderr
    assert handed.config is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_allow_development_key_serves_on_loopback_with_a_loud_warning(
    project: Project, handed: Handed, host: str
) -> None:
    keyed_apps(project, "dev", bridge="[bridge]\nallow_development_key = true\n")

    result = invoke("serve", "--host", host, "--port", "0")

    assert result.exit_code == 0, result.output
    assert handed.config is not None
    assert result.stderr.startswith("WARNING: serving with a published development SECRET_KEY")
    assert "anyone who can reach this server can sign a session cookie" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "shop.example"])
def test_allow_development_key_is_refused_off_loopback(
    project: Project, handed: Handed, host: str
) -> None:
    keyed_apps(project, "dev", bridge="[bridge]\nallow_development_key = true\n")

    result = invoke("serve", "--host", host)

    assert_config_error(result, "allow_development_key on a loopback --host only", f"not on {host}")
    assert handed.config is None


def test_allow_development_key_does_not_excuse_a_missing_key(
    project: Project, handed: Handed
) -> None:
    keyed_apps(project, "", bridge="[bridge]\nallow_development_key = true\n")

    assert_config_error(invoke("serve"), "the Flask app has no SECRET_KEY")
    assert handed.config is None


def test_serve_with_a_secret_key_says_nothing_about_it(project: Project, handed: Handed) -> None:
    result = invoke("serve", "--port", "0")

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert handed.config is not None


def test_serve_hands_uvicorn_the_production_defaults(project: Project, handed: Handed) -> None:
    result = invoke("serve", "--port", "0")

    assert result.exit_code == 0, result.output
    config = handed.config
    assert config is not None
    assert config.http == PROTOCOL
    assert handed.environ[HEADER_TIMEOUT_ENV] == "60.0"
    assert config.proxy_headers is False
    assert config.timeout_keep_alive == 5


@pytest.mark.parametrize(
    ("bridge", "options", "seconds"),
    [
        pytest.param("header_timeout = 7\n", [], "7.0", id="manifest"),
        pytest.param("header_timeout = 7\n", ["--header-timeout", "2.5"], "2.5", id="option"),
        pytest.param("", ["--header-timeout", "12"], "12.0", id="option-alone"),
    ],
)
def test_header_timeout_comes_from_the_option_then_the_manifest(
    project: Project, handed: Handed, bridge: str, options: list[str], seconds: str
) -> None:
    project.write_manifest(
        MANIFEST.format(legacy=project.legacy, ported=project.ported) + "[bridge]\n" + bridge
    )

    result = invoke("serve", "--port", "0", *options)

    assert result.exit_code == 0, result.output
    assert handed.environ[HEADER_TIMEOUT_ENV] == seconds


def test_serve_options_reach_uvicorn(project: Project, handed: Handed) -> None:
    options = ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1"]
    result = invoke("serve", "--port", "0", *options, "--timeout-keep-alive", "75")

    assert result.exit_code == 0, result.output
    config = handed.config
    assert config is not None
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == "10.0.0.0/8,192.0.2.1"
    assert config.timeout_keep_alive == 75


def test_workers_get_the_same_options(project: Project, handed: Handed) -> None:
    result = invoke("serve", "--port", "0", "--workers", "2", "--header-timeout", "3")

    assert result.exit_code == 0, result.output
    assert handed.run is not None
    assert handed.run["workers"] == 2
    assert handed.run["http"] == PROTOCOL
    assert handed.run["proxy_headers"] is False
    assert handed.environ[HEADER_TIMEOUT_ENV] == "3.0"  # what the worker processes read


def test_forwarded_allow_ips_without_proxy_headers_is_one_line_and_exit_2(
    project: Project, handed: Handed
) -> None:
    result = invoke("serve", "--forwarded-allow-ips", "10.0.0.1")

    assert_config_error(result, "--forwarded-allow-ips does nothing", "add --proxy-headers")
    assert handed.config is None


def test_forwarded_allow_ips_from_the_environment_alone_is_no_error(
    project: Project, handed: Handed
) -> None:
    result = invoke("serve", "--port", "0", env={"FORWARDED_ALLOW_IPS": "10.0.0.1"})

    assert result.exit_code == 0, result.output
    assert handed.config is not None
    assert handed.config.proxy_headers is False


@pytest.mark.parametrize(
    ("args", "access_log"), [((), False), (("--access-log",), True), (("--no-access-log",), False)]
)
@pytest.mark.parametrize("workers", ["1", "3"])
def test_serve_logs_no_request_unless_asked_and_workers_import_the_public_factory(
    project: Project, handed: Handed, args: tuple[str, ...], access_log: bool, workers: str
) -> None:
    result = invoke("serve", "--port", "0", "--workers", workers, *args)

    assert result.exit_code == 0, result.output
    if workers == "1":
        assert handed.config is not None
        assert handed.config.access_log is access_log
        assert type(handed.config.app).__name__ == "HybridApp"
    else:
        assert handed.run is not None
        assert handed.run["access_log"] is access_log
        run = handed.run
        assert (run["app"], run["factory"], run["workers"]) == ("bridge:hybrid_from_env", True, 3)
