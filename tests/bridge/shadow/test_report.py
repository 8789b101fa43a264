"""``flask2fastapi shadow CASES``: the report, the exit status and the database left alone.

Runs the command on :mod:`tests.bridge.shadow_apps`, in-process (click's
``CliRunner``) and against two real ``python -m bridge serve`` processes, on the
test database of ``database_settings``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import Engine

from bridge._cli import main
from bridge._porting.database import DatabaseSettings
from bridge._shadow.changes import DatabaseState
from bridge._shadow.recorder import ChangeRecorder
from tests.bridge import shadow_apps
from tests.bridge.apps import stop
from tests.bridge.test_cli import assert_config_error, free_port, invoke, wait_until_serving

ROOT = Path(__file__).resolve().parents[3]  # where `tests.bridge.shadow_apps` imports from
APPS = """\
[apps]
flask = "tests.bridge.shadow_apps:create_flask"
fastapi = "tests.bridge.shadow_apps:create_port"
"""
GET_ROUTE = "GET /notes/<int:note_id>"
POST_ROUTE = "POST /notes"
CASES: list[dict[str, Any]] = [
    {"method": "GET", "path": "/notes/1"},
    {"method": "GET", "path": "/notes/999", "name": "a missing note"},
    {"method": "POST", "path": "/notes", "json": {"text": "hello"}},
    # Starts where the first POST started: the note and the count it wrote are undone.
    {"method": "POST", "path": "/notes", "json": {"text": "again"}},
]


# -- Helpers ------------------------------------------------------------------


@pytest.fixture
def recorder(
    database_settings: DatabaseSettings, sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ChangeRecorder]:
    """The shadow apps' tables with their first rows; dropped afterwards.

    The Flask apps the command builds are kept, to dispose of their engines:
    the command cannot know of an app's own engine, and in-process its pooled
    connections would outlive the test.
    """
    flask_apps: list[Flask] = []
    create_flask = shadow_apps.create_flask

    def keeping_flask(settings: DatabaseSettings | None = None) -> Flask:
        flask_apps.append(create_flask(settings))
        return flask_apps[-1]

    monkeypatch.setattr(shadow_apps, "create_flask", keeping_flask)
    shadow_apps.create_schema(database_settings)
    yield ChangeRecorder(sync_engine, tables=list(shadow_apps.metadata.tables))
    for app in flask_apps:
        app.extensions["engine"].dispose()
    shadow_apps.metadata.drop_all(sync_engine)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "migration.toml"
    path.write_text(APPS, encoding="utf-8")
    return path


def write_cases(tmp_path: Path, cases: list[dict[str, Any]] = CASES) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(case) + "\n" for case in cases), encoding="utf-8")
    return path


def database_env(settings: DatabaseSettings) -> dict[str, str | None]:
    """The environment that points the command (and the apps) at the test database."""
    return {"DATABASE_URL": settings.url, "DATABASE_ASYNC_DRIVER": settings.async_driver}


def invoke_shadow(
    settings: DatabaseSettings, cases: Path, manifest: Path, *args: str, port: str = "good"
) -> Result:
    """``flask2fastapi shadow`` in-process, on the test database, with the port *port*."""
    env = {**database_env(settings), "SHADOW_PORT": port}
    return CliRunner().invoke(
        main, ["shadow", str(cases), "--manifest", str(manifest), *args], env=env
    )


@contextmanager
def unclosed() -> Iterator[list[str]]:
    """Collects the ResourceWarnings of what the block leaves unclosed (sockets, connections)."""
    leaks: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)  # other warnings stay errors
        try:
            yield leaks
        finally:
            gc.collect()  # what the block dropped in reference cycles
    leaks += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def run_shadow(
    settings: DatabaseSettings, cases: Path, manifest: Path, *args: str, port: str = "good"
) -> Result:
    """:func:`invoke_shadow`, failing if the run leaves a socket or connection open."""
    with unclosed() as leaks:
        result = invoke_shadow(settings, cases, manifest, *args, port=port)
    assert leaks == [], leaks
    return result


def assert_exit(result: Result, code: int) -> None:
    """The command exited with *code* of its own accord, not by crashing."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output


def table(stdout: str) -> dict[str, list[int]]:
    """The per-route table: route -> [cases, same, different, noise]; checks its layout."""
    lines = stdout.split("\n\n", 1)[0].splitlines()
    assert lines[0].split() == ["route", "cases", "same", "different", "noise"], stdout
    assert lines[-1].startswith("total "), stdout
    # Route names are left-aligned, counts right-aligned under their headers.
    assert len({len(line) for line in lines}) == 1, stdout
    rows = {}
    for line in lines[1:]:
        route, *counts = line.rsplit(maxsplit=4)
        rows[route.strip()] = [int(count) for count in counts]
    return rows


def dump(recorder: ChangeRecorder) -> DatabaseState:
    """Every row of the three tables, and their sequences on PostgreSQL."""
    state = recorder.snapshot()
    assert state.rows["shadow_notes"], "the schema's first rows are missing"
    return state


def proposed(stdout: str) -> str:
    """The manifest rules that the report proposes after the A/A run, or ``""``."""
    _, found, after = stdout.partition("The A/A run found noise")
    return after.split("\n\n", 1)[1].strip() if found else ""


def first_difference(stdout: str) -> list[str]:
    """The first block after the table, if it reports a difference: the case, then each one."""
    blocks = stdout.rstrip("\n").split("\n\n")[1:]
    if not blocks or blocks[0].startswith("The A/A run found noise"):
        return []
    return blocks[0].splitlines()


# -- A faithful port ----------------------------------------------------------


def test_a_faithful_port_exits_0_with_the_table_and_the_proposed_rules(
    recorder: ChangeRecorder, database_settings: DatabaseSettings, tmp_path: Path, manifest: Path
) -> None:
    before = dump(recorder)

    result = run_shadow(database_settings, write_cases(tmp_path), manifest)

    assert_exit(result, 0)
    assert table(result.stdout) == {
        GET_ROUTE: [2, 2, 0, 0],
        POST_ROUTE: [2, 0, 0, 2],  # the random token: noise that the A/A run found
        "total": [4, 2, 0, 2],
    }
    assert first_difference(result.stdout) == []
    proposals = proposed(result.stdout)
    assert 'vary = { "$.created_at" = "instant", "$.token" = "token" }' in proposals
    assert POST_ROUTE in proposals
    assert GET_ROUTE not in proposals
    assert dump(recorder) == before


def test_json_writes_each_case_outcome_and_the_route_counts(
    recorder: ChangeRecorder, database_settings: DatabaseSettings, tmp_path: Path, manifest: Path
) -> None:
    report = tmp_path / "report.json"

    result = run_shadow(database_settings, write_cases(tmp_path), manifest, "--json", str(report))

    assert_exit(result, 0)
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["different"] == 0
    assert [(c["case"], c["route"], c["outcome"]) for c in data["cases"]] == [
        ("cases.jsonl:1 GET /notes/1", GET_ROUTE, "same"),
        ("cases.jsonl:2 a missing note", GET_ROUTE, "same"),
        ("cases.jsonl:3 POST /notes", POST_ROUTE, "noise"),
        ("cases.jsonl:4 POST /notes", POST_ROUTE, "noise"),
    ]
    [created_at, token] = data["cases"][2]["noise"]
    assert created_at.startswith("$.created_at: ")
    assert token.startswith("$.token: ")
    assert all(case["differences"] == [] for case in data["cases"])
    counts = ["route", "cases", "same", "different", "noise"]
    assert [[route[key] for key in counts] for route in data["routes"]] == [
        [GET_ROUTE, 2, 2, 0, 0],
        [POST_ROUTE, 2, 0, 0, 2],
    ]
    assert data["proposed_rules"] == proposed(result.stdout)
    assert table(result.stdout)["total"] == [4, 2, 0, 2]  # the table is still printed


def test_without_the_aa_run_the_token_is_a_difference(
    recorder: ChangeRecorder, database_settings: DatabaseSettings, tmp_path: Path, manifest: Path
) -> None:
    result = run_shadow(database_settings, write_cases(tmp_path), manifest, "--no-aa")

    assert_exit(result, 1)
    assert table(result.stdout)[POST_ROUTE] == [2, 0, 2, 0]
    first, created_at, token = first_difference(result.stdout)
    assert first == "POST /notes: cases.jsonl:3 POST /notes"
    assert created_at.startswith("  $.created_at: legacy ")
    assert token.startswith("  $.token: legacy ")
    assert proposed(result.stdout) == ""  # nothing ran twice, so nothing is proposed


# -- Broken ports -------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "route", "counts", "first", "where"),
    [
        pytest.param(
            "wrong-field",
            GET_ROUTE,
            [2, 1, 1, 0],
            "GET /notes/<int:note_id>: cases.jsonl:1 GET /notes/1",
            '  $.text: legacy "first", async "FIRST"',
            id="wrong-field",
        ),
        pytest.param(
            "skips-write",
            POST_ROUTE,
            [2, 0, 2, 0],
            "POST /notes: cases.jsonl:3 POST /notes",
            "  rows shadow_counters[1].value: legacy 1, async 0",
            id="skips-write",
        ),
        pytest.param(
            "extra-row",
            POST_ROUTE,
            [2, 0, 2, 0],
            "POST /notes: cases.jsonl:3 POST /notes",
            "  rows shadow_notes",
            id="extra-row",
        ),
    ],
)
def test_a_broken_port_exits_1_and_prints_where_it_first_differs_leaving_the_db_alone(
    recorder: ChangeRecorder,
    database_settings: DatabaseSettings,
    tmp_path: Path,
    manifest: Path,
    port: str,
    route: str,
    counts: list[int],
    first: str,
    where: str,
) -> None:
    before = dump(recorder)

    result = run_shadow(database_settings, write_cases(tmp_path), manifest, port=port)

    assert_exit(result, 1)
    rows = table(result.stdout)
    assert rows[route] == counts
    assert rows["total"][2] == counts[2]  # the other route is fine
    assert first_difference(result.stdout)[0] == first
    assert first_difference(result.stdout)[1].startswith(where), result.stdout
    assert dump(recorder) == before


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("stale-timestamp", '"2000-01-01T00:00:00.000000" (varies as instant: outside the run, '),
        ("drops-header", 'header x-app-version: legacy "1.4.2", async absent (missing in async)'),
        ("raises", "    RuntimeError: the port forgot something"),
    ],
)
def test_a_planted_bug_exits_1_and_the_report_names_it(
    recorder: ChangeRecorder,
    database_settings: DatabaseSettings,
    tmp_path: Path,
    manifest: Path,
    port: str,
    expected: str,
) -> None:
    report = tmp_path / "report.json"
    result = run_shadow(
        database_settings, write_cases(tmp_path), manifest, "--json", str(report), port=port
    )

    assert_exit(result, 1)
    assert expected in result.stdout, result.stdout
    if port == "raises":
        errors = json.loads(report.read_text(encoding="utf-8"))["cases"][2]["errors"]
        assert [error["side"] for error in errors] == ["async"]
        assert "RuntimeError: the port forgot something" in errors[0]["traceback"]


# -- Progress and errors ------------------------------------------------------


def test_progress_goes_to_stderr_one_line_per_case_when_few(
    recorder: ChangeRecorder, database_settings: DatabaseSettings, tmp_path: Path, manifest: Path
) -> None:
    result = run_shadow(database_settings, write_cases(tmp_path), manifest, "--no-db")

    assert_exit(result, 0)
    assert result.stderr.splitlines() == [f"shadow: {n}/4 cases" for n in (1, 2, 3, 4)]
    assert "shadow:" not in result.stdout


def test_progress_is_a_line_per_tenth_and_the_last(
    recorder: ChangeRecorder, database_settings: DatabaseSettings, tmp_path: Path, manifest: Path
) -> None:
    cases = write_cases(tmp_path, [{"method": "GET", "path": "/notes/1"}] * 25)

    result = run_shadow(database_settings, cases, manifest, "--no-aa", "--no-db")

    assert_exit(result, 0)
    done = [*range(2, 25, 2), 25]
    assert result.stderr.splitlines() == [f"shadow: {n}/25 cases" for n in done]


@pytest.mark.parametrize(
    ("lines", "fragments"),
    [
        pytest.param(None, ["cases.jsonl", "no such file"], id="missing-file"),
        pytest.param(
            [json.dumps(CASES[0]), '{"method": "GET", "path": "/notes/1"'],
            ["cases.jsonl:2: not valid JSON"],
            id="bad-json",
        ),
        pytest.param(
            [json.dumps(CASES[0]), "", json.dumps({"verb": "GET", "path": "/notes/1"})],
            ["cases.jsonl:3: unknown key 'verb'"],
            id="unknown-key",
        ),
    ],
)
def test_an_unreadable_cases_file_is_one_line_and_exit_2(
    tmp_path: Path, manifest: Path, lines: list[str] | None, fragments: list[str]
) -> None:
    cases = tmp_path / "cases.jsonl"
    if lines is not None:
        cases.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/unused.sqlite3"}

    result = invoke("shadow", str(cases), "--manifest", str(manifest), env=env)

    assert_config_error(result, *fragments)
    assert not (tmp_path / "unused.sqlite3").exists()  # stopped before touching a database


def test_a_legacy_url_without_an_async_url_is_one_line_and_exit_2(
    tmp_path: Path, manifest: Path
) -> None:
    cases = write_cases(tmp_path)

    result = invoke(
        "shadow", str(cases), "--manifest", str(manifest), "--legacy-url", "http://127.0.0.1:9"
    )

    assert_config_error(result, "--legacy-url", "--async-url")


# -- --no-db ------------------------------------------------------------------


def test_no_db_compares_responses_only_so_a_skipped_write_goes_unseen(
    recorder: ChangeRecorder, database_settings: DatabaseSettings, tmp_path: Path, manifest: Path
) -> None:
    # Without --no-db the same port fails: see the "skips-write" broken port above.
    before = dump(recorder)

    result = run_shadow(
        database_settings, write_cases(tmp_path), manifest, "--no-db", port="skips-write"
    )

    assert_exit(result, 0)
    assert table(result.stdout)[POST_ROUTE] == [2, 0, 0, 2]
    # Nor is anything undone: each POST case wrote a note on each of its three sends,
    # and the counter moved on the legacy sends only.
    after = dump(recorder)
    assert len(after.rows["shadow_notes"]) == len(before.rows["shadow_notes"]) + 6
    assert after.rows["shadow_counters"][(1,)]["value"] == 4


# -- Remote mode: two real servers --------------------------------------------


class Server(NamedTuple):
    """A running ``python -m bridge serve``."""

    url: str
    process: subprocess.Popen[str]

    def side(self, path: str) -> str:
        """Which side of this hybrid answers *path*."""
        return httpx.get(self.url + path, timeout=5).headers["x-bridge-side"]


@contextmanager
def serving(manifest: Path, settings: DatabaseSettings, port: str = "good") -> Iterator[Server]:
    """``python -m bridge serve`` on a free port, terminated when the block exits."""
    number = free_port()
    env = {**os.environ, "SHADOW_PORT": port}
    for name, value in database_env(settings).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(number),
         "--manifest", str(manifest), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        yield Server(f"http://127.0.0.1:{number}", process)
    finally:
        stderr = stop(process)
    assert "Traceback" not in stderr, stderr


LEGACY_ROUTES = """\
[routes]
"GET /notes/<int:note_id>" = "legacy"
"POST /notes" = "legacy"
"GET /whoami" = "legacy"
"""
ASYNC_ROUTES = """\
[routes]
"GET /notes/<int:note_id>" = "async"
"POST /notes" = "async"
"""


@pytest.mark.parametrize(("port", "code"), [("good", 0), ("wrong-field", 1)])
def test_remote_mode_compares_two_running_servers(
    recorder: ChangeRecorder,
    database_settings: DatabaseSettings,
    tmp_path: Path,
    port: str,
    code: int,
) -> None:
    legacy_manifest = tmp_path / "legacy.toml"
    legacy_manifest.write_text(APPS + LEGACY_ROUTES, encoding="utf-8")
    async_manifest = tmp_path / "async.toml"
    async_manifest.write_text(APPS + ASYNC_ROUTES, encoding="utf-8")
    cases = write_cases(tmp_path)
    before = dump(recorder)
    with ExitStack() as stack:
        # Both start before either is waited for.
        legacy = stack.enter_context(serving(legacy_manifest, database_settings))
        ported = stack.enter_context(serving(async_manifest, database_settings, port))
        deadline = time.monotonic() + 30
        for server in (legacy, ported):
            wait_until_serving(f"{server.url}/whoami", server.process, deadline)
        # The servers are what the test says they are.
        assert legacy.side("/notes/1") == "legacy"
        assert ported.side("/notes/1") == "async"

        with unclosed() as leaks:
            result = invoke_shadow(
                database_settings, cases, async_manifest,
                "--legacy-url", legacy.url, "--async-url", ported.url,
            )  # fmt: skip

    assert_exit(result, code)
    rows = table(result.stdout)
    assert rows[POST_ROUTE] == [2, 0, 0, 2]
    if port == "good":
        assert rows[GET_ROUTE] == [2, 2, 0, 0]
    else:
        assert rows[GET_ROUTE] == [2, 1, 1, 0]
        assert first_difference(result.stdout)[1] == '  $.text: legacy "first", async "FIRST"'
    assert dump(recorder) == before
    # The run closed its connections to the servers (an unclosed socket warns when freed).
    assert leaks == [], leaks
