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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from bridge._cli import main
from tests.bridge.apps import stop

LEGACY_SOURCE = """
    from flask import Flask, request

    def create_app():
        app = Flask(__name__, static_folder=None)

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


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    # serve --database-url sets DATABASE_URL for its workers: keep it from the next test.
    saved = dict(os.environ)
    try:
        return CliRunner().invoke(main, list(args), env=env)
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
    """A ``python -m bridge serve`` process, stopped: its exit status and stderr."""

    returncode: int | None = None
    stderr: str = ""


@contextmanager
def serving(project: Project, database_url: str) -> Iterator[tuple[httpx.Client, Served]]:
    """Serve the project's manifest over TCP; a client for it, and how the server ended."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port),
         "--manifest", str(project.manifest), "--log-level", "warning"],
        cwd=project.folder,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    served = Served()
    try:
        wait_until_serving(f"{base}/api/items", process, time.monotonic() + 30)
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
    # uvicorn re-raises SIGTERM once it has shut down cleanly.
    assert served.returncode in (0, -signal.SIGTERM)
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
    assert served.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in served.stderr


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(project: Project) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", "--port", str(port))
    assert_config_error(result, f"cannot listen on 127.0.0.1:{port}", "--port")


@pytest.mark.parametrize(
    ("args", "access_log"), [((), False), (("--access-log",), True), (("--no-access-log",), False)]
)
@pytest.mark.parametrize("workers", ["1", "3"])
def test_serve_logs_no_request_unless_asked_and_workers_import_the_public_factory(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    access_log: bool,
    workers: str,
) -> None:
    import uvicorn

    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))

    result = invoke("serve", "--port", str(free_port()), "--workers", workers, *args)

    assert result.exit_code == 0, result.output
    [(app, options)] = calls
    assert options["access_log"] is access_log
    if workers == "1":
        assert type(app).__name__ == "HybridApp"
    else:
        assert (app, options["factory"], options["workers"]) == ("bridge:hybrid_from_env", True, 3)
