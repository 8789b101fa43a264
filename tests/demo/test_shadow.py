"""Shadow comparison of the demo, through the pytest plugin: the demo's one
equivalence suite.

``shadow_cases.jsonl`` holds requests to every route of the demo, ported or not
(an unported route is answered by the legacy app on both sides, through the
hybrid on the port side), with bad input, missing items, every kind of user and
writes. The clock of the models is frozen, as in the other demo tests, so each
case must give the same answer to the byte on both sides and the same rows,
without the manifest's rules; the tests with a ticking clock show that those
rules absorb what a running clock changes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import URL, Engine, create_engine

import async_app
import async_app.catalog
import async_app.orders
import legacy_flask_app
import shop.models
from bridge._cli import main
from bridge._porting.database import DatabaseSettings
from bridge._serving.manifest import Manifest, RouteState, load_manifest
from bridge._shadow.cases import Case, load_cases
from bridge._shadow.compare import Difference, Snapshot
from bridge._shadow.recorder import ChangeRecorder
from bridge._shadow.redact import REDACTED
from bridge._shadow.runner import Outcome, Sender, route_of
from bridge.pytest_plugin import Shadow, shadow_cases
from legacy_flask_app.extensions import db
from shop.models import Base
from tests.bridge.apps import stop
from tests.bridge.test_cli import free_port, wait_until_serving
from tests.conftest import checked_out

from . import broken_ports
from .conftest import SECRET_KEY

CASES = Path(__file__).with_name("shadow_cases.jsonl")
# The response headers clients of the shop rely on.
CLIENT_HEADERS = (
    "content-type",
    "location",
    "allow",
    "retry-after",
    "vary",
    "content-disposition",
    "cache-control",
    "www-authenticate",
)
# The legacy app salts each password hash anew, so two of its answers differ there.
SALTED = re.compile(r"^rows users\[\d+\]\.password_hash$")
ORDER = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 8, "quantity": 1}]}


@pytest.fixture
def shadow_manifest() -> Manifest:
    return load_manifest(Path(__file__).parents[2] / "migration.toml")


@pytest.fixture
def shadow_apps(
    database_settings: DatabaseSettings, reset_database: None
) -> Iterator[tuple[Flask, Any]]:
    legacy = legacy_flask_app.create_app(
        {**database_settings.flask_config(), "SECRET_KEY": SECRET_KEY, "SEED_DEMO_DATA": False}
    )
    yield legacy, async_app.create_app(database_settings, secret_key=SECRET_KEY)
    with legacy.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def session_recorders() -> Iterator[dict[URL, ChangeRecorder]]:
    """Recorders of databases that outlive a test (the session's PostgreSQL schema):
    reflecting the tables there takes a tenth of a second, too long for every test."""
    recorders: dict[URL, ChangeRecorder] = {}
    yield recorders
    for recorder in recorders.values():
        recorder.engine.dispose()


@pytest.fixture
def shadow_recorder(
    database_settings: DatabaseSettings,
    sync_engine: Engine,
    reset_database: None,
    session_recorders: dict[URL, ChangeRecorder],
) -> Iterator[ChangeRecorder]:
    if database_settings.backend == "sqlite":  # a file of the test's own
        yield ChangeRecorder(sync_engine, tables=list(Base.metadata.tables))
        return
    url = database_settings.sync_url
    if url not in session_recorders:
        engine = create_engine(url, pool_size=1)
        session_recorders[url] = ChangeRecorder(engine, tables=list(Base.metadata.tables))
    recorder = session_recorders[url]
    yield recorder
    leaked = checked_out(recorder.engine)
    assert leaked == 0, f"the recorder left {leaked} connection(s) checked out"


class Keeping(Sender):
    """Sends as *sender* does and keeps every snapshot, to compare them to the byte."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.errors = sender.errors  # the same list: the runner reads and clears it
        self.snapshots: list[Snapshot] = []

    async def __call__(self, request: httpx.Request) -> Snapshot:
        snapshot = await self.sender(request)
        self.snapshots.append(snapshot)
        return snapshot

    async def aclose(self) -> None:
        await self.sender.aclose()


def cookie_shape(set_cookie: str) -> tuple[str, ...]:
    """A Set-Cookie header without its signed value: name, emptiness and attributes.

    The value is signed with a timestamp, so it differs from second to second;
    whether it is empty (a deletion) and every attribute must match.
    """
    first, *attributes = [part.strip() for part in set_cookie.split(";")]
    name, _, value = first.partition("=")
    return (
        name,
        "deleted" if value in ("", '""') else "set",
        *sorted(
            a.lower() for a in attributes if not a.lower().startswith("expires=") or "1970" in a
        ),
    )


def as_sent(snapshot: Snapshot) -> tuple[Any, ...]:
    """What a client gets, as sent: status, the headers it relies on, cookies and body bytes.

    Transport headers such as Date, Server and Content-Length are left out, and the
    order of the headers does not matter.
    """
    headers = sorted((name, value) for name, value in snapshot.headers if name in CLIENT_HEADERS)
    cookies = [cookie_shape(value) for value in snapshot.values("set-cookie")]
    return snapshot.status, headers, cookies, snapshot.body


def salted_alike(difference: Difference) -> bool:
    """A password hash that differs by its random salt only, not by its method."""
    method = [str(value).split("$", 1)[0] for value in (difference.legacy, difference.port)]
    return bool(SALTED.match(difference.where)) and method[0] == method[1]


@pytest.mark.parametrize("case", shadow_cases(CASES))
def test_every_shadow_case_of_the_demo_passes(
    shadow: Shadow, shadow_manifest: Manifest, case: Case
) -> None:
    shadow.runner.manifest = dataclasses.replace(shadow_manifest, rules={})
    shadow.runner.aa = True  # the A/A run tells a salt from a difference
    legacy = shadow.runner.legacy = Keeping(shadow.runner.legacy)
    port = shadow.runner.port = Keeping(shadow.runner.port)
    result = shadow.check(case)
    assert all(salted_alike(noise) for noise in result.noise), result.report()
    assert as_sent(port.snapshots[-1]) == as_sent(legacy.snapshots[0])


def case_routes() -> list[str]:
    """The route (manifest key) each case of the demo reaches, in the file's order."""
    flask_app = legacy_flask_app.create_app(
        {"SQLALCHEMY_DATABASE_URI": "sqlite://", "SEED_DEMO_DATA": False}
    )
    return [route_of(flask_app.url_map, case) for case in load_cases(CASES)]


def test_the_cases_cover_every_ported_route_five_times(shadow_manifest: Manifest) -> None:
    counts = Counter(case_routes())
    ported = [
        str(key) for key, state in shadow_manifest.routes.items() if state is RouteState.ASYNC
    ]
    assert {route: counts[route] for route in ported if counts[route] < 5} == {}


def test_a_port_that_changes_a_field_fails_with_its_path(
    shadow: Shadow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        async_app.catalog, "product_json", broken_ports.product_json_with_shouted_name
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        shadow.check("GET", "/api/products/3")
    report = str(failed.value)
    assert '$.name: legacy "Designing Data Systems", async "DESIGNING DATA SYSTEMS"' in report


def test_a_port_that_forgets_the_stock_decrement_fails_with_the_rows(
    shadow: Shadow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(async_app.orders, "repo", broken_ports.FORGETFUL_REPOSITORIES)
    with pytest.raises(pytest.fail.Exception) as failed:
        shadow.check("POST", "/api/orders", user="alice@example.com", json=ORDER)
    report = str(failed.value)
    assert "rows products[1].stock" in report
    assert "rows products[8].stock" in report


class TickingDatetime(datetime):
    """A clock that moves one second each time it is read."""

    ticks = 0

    @classmethod
    def now(cls, tz: Any = None) -> TickingDatetime:
        cls.ticks += 1
        return cls.fromtimestamp(1_750_000_000 + cls.ticks, tz)


@pytest.fixture
def ticking_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shop.models, "datetime", TickingDatetime)


# The demo's writes that stamp the time, and where a ticking clock shows on them.
STAMPED_WRITES = [
    pytest.param(
        {"method": "POST", "path": "/api/orders", "user": "alice@example.com", "json": ORDER},
        {"$.created_at", "rows orders[4].created_at", "rows products[1].updated_at"},
        id="orders",
    ),
    pytest.param(
        {
            "method": "POST",
            "path": "/api/products/3/reviews",
            "user": "bob@example.com",
            "json": {"rating": 4, "body": "Solid."},
        },
        {"$.created_at", "rows reviews[4].created_at"},
        id="reviews",
    ),
]


@pytest.mark.usefixtures("ticking_clock")
@pytest.mark.parametrize(("write", "stamped"), STAMPED_WRITES)
def test_the_timestamp_rules_absorb_writes_made_at_different_times(
    shadow: Shadow, write: dict[str, Any], stamped: set[str]
) -> None:
    shadow.runner.aa = False  # the rules alone, not the noise, must absorb the clock
    result = shadow.run(Case.from_mapping(write))
    assert result.outcome is Outcome.SAME, result.report()


@pytest.mark.usefixtures("ticking_clock")
@pytest.mark.parametrize(("write", "stamped"), STAMPED_WRITES)
def test_without_the_timestamp_rules_writes_differ_where_time_is_stamped(
    shadow: Shadow, shadow_manifest: Manifest, write: dict[str, Any], stamped: set[str]
) -> None:
    shadow.runner.manifest = dataclasses.replace(shadow_manifest, rules={})
    shadow.runner.aa = False
    result = shadow.run(Case.from_mapping({**write, "name": "no rules"}))
    assert result.outcome is Outcome.DIFFERENT
    assert {d.where for d in result.differences} >= stamped, result.report()


@pytest.mark.usefixtures("ticking_clock")
def test_without_rules_the_aa_run_proposes_that_timestamps_vary_as_instants(
    shadow: Shadow, shadow_manifest: Manifest
) -> None:
    shadow.runner.manifest = dataclasses.replace(shadow_manifest, rules={})
    result = shadow.run("POST", "/api/orders", user="alice@example.com", json=ORDER)
    assert result.outcome is Outcome.NOISE, result.report()
    # Narrowed to an instant, not ignored: a port writing a wrong time still fails.
    assert ("$.created_at", "instant") in result.proposed.vary
    assert "$.created_at" not in result.proposed.ignore
    assert {"orders.created_at", "products.updated_at"} <= set(result.proposed.ignore_columns)


def shadow_env(settings: DatabaseSettings) -> dict[str, str]:
    env = {"DATABASE_URL": settings.url, "SECRET_KEY": SECRET_KEY}
    if settings.async_driver:
        env["DATABASE_ASYNC_DRIVER"] = settings.async_driver
    return env


def test_the_cli_passes_on_a_case_of_every_demo_route(
    database_settings: DatabaseSettings,
    reset_database: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Each case is checked above; the CLI must list every route and pass.
    first_cases: dict[str, str] = {}
    lines = [line for line in CASES.read_text().splitlines() if line.strip()]
    for line, route in zip(lines, case_routes(), strict=True):
        first_cases.setdefault(route, line)
    cases = tmp_path / "one_per_route.jsonl"
    cases.write_text("\n".join(first_cases.values()) + "\n")
    for name, value in shadow_env(database_settings).items():
        monkeypatch.setenv(name, value)
    args = ["shadow", str(cases), "--manifest", str(Path(__file__).parents[2] / "migration.toml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    output = result.stdout.splitlines()
    rows = [" ".join(line.split()) for line in output]
    routes = len(first_cases)
    # Registering salts a new password hash: the A/A run calls that noise, and
    # proposes the rule that silences it; every other case is the same.
    assert f"total {routes} {routes - 1} 0 1" in rows
    assert "POST /api/auth/register (not ported) 1 0 0 1" in rows
    assert output[-1] == (
        '"POST /api/auth/register" = { state = "legacy", ignore_columns = ["users.password_hash"] }'
    )


def test_the_cli_fails_on_a_port_that_forgets_the_stock(
    database_settings: DatabaseSettings, reset_database: None, tmp_path: Path
) -> None:
    demo = (Path(__file__).parents[2] / "migration.toml").read_text()
    broken = demo.replace(
        'fastapi = "async_app:create_app"',
        'fastapi = "tests.demo.broken_ports:create_app_forgetting_stock"',
    )
    manifest = tmp_path / "migration.toml"
    manifest.write_text(broken)
    orders = tmp_path / "orders.jsonl"
    orders.write_text(
        '{"method": "GET", "path": "/api/products/1"}\n'
        '{"method": "POST", "path": "/api/orders", "user": "alice@example.com", '
        '"json": {"items": [{"product_id": 1, "quantity": 2}]}, "name": "places an order"}\n'
    )
    process = subprocess.run(
        [sys.executable, "-m", "bridge", "shadow", str(orders), "--manifest", str(manifest)],
        cwd=Path(__file__).parents[2],
        env={**os.environ, **shadow_env(database_settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1, process.stderr
    assert "POST /api/orders: orders.jsonl:2 places an order" in process.stdout
    assert "rows products[1].stock: legacy 10, async 12 (legacy 12 → 10, async unchanged)" in (
        process.stdout
    )


def test_a_difference_becomes_a_pytest_case_that_fails_until_the_port_is_fixed(
    database_settings: DatabaseSettings, reset_database: None, tmp_path: Path
) -> None:
    root = Path(__file__).parents[2]
    demo = (root / "migration.toml").read_text()
    manifest = tmp_path / "migration.toml"
    manifest.write_text(
        demo.replace(
            'fastapi = "async_app:create_app"',
            'fastapi = "tests.demo.broken_ports:create_app_forgetting_stock"',
        )
    )
    cases = tmp_path / "orders.jsonl"
    cases.write_text(
        '{"method": "GET", "path": "/api/products/1"}\n'
        '{"method": "POST", "path": "/api/orders", "user": "alice@example.com", '
        '"json": {"items": [{"product_id": 1, "quantity": 2}]}, "name": "places an order"}\n'
    )
    module = tmp_path / "tests" / "test_shadow_regressions.py"
    env = {**os.environ, **shadow_env(database_settings), "PYTHONPATH": str(root)}

    def run(*args: str, cwd: Path = root) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True
        )

    export = ["bridge", "shadow", str(cases), "--manifest", str(manifest)]
    shadowed = run(*export, "--export-failures", str(module))
    assert shadowed.returncode == 1, shadowed.stderr
    assert f"Kept 1 new of the 1 differing cases in {module.with_suffix('.jsonl')}" in (
        shadowed.stdout
    )
    # Only the case that differs is kept, once however many runs find it.
    assert run(*export, "--export-failures", str(module)).returncode == 1
    [kept] = load_cases(module.with_suffix(".jsonl"))
    assert (kept.method, kept.path, kept.user) == ("POST", "/api/orders", "alice@example.com")

    pytest_args = ["pytest", "-q", "-p", "no:cacheprovider", str(module)]
    failing = run(*pytest_args, cwd=tmp_path)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "rows products[1].stock: legacy 10, async 12" in failing.stdout
    assert "1 failed" in failing.stdout

    manifest.write_text(demo)  # the port fixed: the manifest names the good app again
    passing = run(*pytest_args, cwd=tmp_path)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "1 passed" in passing.stdout


def test_export_failures_takes_a_test_module_only(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"method": "GET", "path": "/"}\n')
    args = ["shadow", str(cases), "--export-failures", str(tmp_path / "regressions.py")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr == (
        "flask2fastapi: error: --export-failures writes a pytest module: "
        "name it test_*.py, not 'regressions.py'\n"
    )


def test_recorded_traffic_from_several_workers_replays_anonymous_and_redacted(
    tmp_path: Path,
) -> None:
    root = Path(__file__).parents[2]
    recorded = tmp_path / "recorded.jsonl"
    env = {
        **{key: value for key, value in os.environ.items() if key != "SECRET_KEY"},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    }
    port = free_port()
    record = ["--record", str(recorded), "--record-rate", "1", "--record-methods", "GET,POST"]
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2", *record],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    secret = "Bearer not-for-the-file"
    try:
        wait_until_serving(f"{base}/api/health", process, time.monotonic() + 90)
        with httpx.Client(base_url=base) as http:
            for _ in range(4):
                http.get("/api/products?sort=-price", headers={"Authorization": secret})
            http.get("/api/orders", headers={"Cookie": "session=not-for-the-file-either"})
            login = {"email": "alice@example.com", "password": "password123"}
            assert http.post("/api/auth/login", json=login).status_code == 200
    finally:
        stop(process)
    text = recorded.read_text()
    assert "not-for-the-file" not in text and "password123" not in text
    cases = load_cases(recorded)
    # The wait above asked for the health once it answered: that request too.
    assert sorted(f"{case.method} {case.path}" for case in cases) == [
        "GET /api/health",
        "GET /api/orders",
        *["GET /api/products?sort=-price"] * 4,
        "POST /api/auth/login",
    ]
    assert all(case.headers.get("authorization") in (None, REDACTED) for case in cases)
    replayed = subprocess.run(
        [sys.executable, "-m", "bridge", "shadow", str(recorded)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    rows = [" ".join(line.split()) for line in replayed.stdout.splitlines()]
    # Anonymous: the order list is refused alike on both sides, and the login
    # with a redacted email and password fails alike.
    assert "GET /api/orders 1 1 0 0" in rows
    assert "POST /api/auth/login 1 1 0 0" in rows
