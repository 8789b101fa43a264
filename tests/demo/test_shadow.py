"""Shadow comparison of every ported demo route, through the pytest plugin.

Unlike the other demo tests the clock runs: writes on the two sides get
different timestamps, and the route rules in migration.toml must absorb them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import Engine

import async_app
import async_app.catalog
import async_app.orders
import legacy_flask_app
import shop.models
from bridge._cli import main
from bridge._porting.database import DatabaseSettings
from bridge._serving.manifest import Manifest, RouteState, load_manifest
from bridge._shadow.cases import load_cases
from bridge._shadow.recorder import ChangeRecorder
from bridge._shadow.runner import Outcome, route_of
from bridge.pytest_plugin import Shadow, shadow_cases
from legacy_flask_app.extensions import db
from shop.models import Base

from . import broken_ports
from .conftest import SECRET_KEY

CASES = Path(__file__).with_name("shadow_cases.jsonl")
ORDER = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 8, "quantity": 1}]}


@pytest.fixture
def frozen_clock() -> None:
    """The clock runs here (this replaces the demo's frozen clock)."""


@pytest.fixture
def shadow_manifest() -> Manifest:
    return load_manifest(Path(__file__).parents[2] / "migration.toml")


@pytest.fixture
def shadow_apps(
    database_settings: DatabaseSettings, reset_database: Any
) -> Iterator[tuple[Flask, Any]]:
    legacy = legacy_flask_app.create_app(
        {**database_settings.flask_config(), "SECRET_KEY": SECRET_KEY, "SEED_DEMO_DATA": False}
    )
    yield legacy, async_app.create_app(database_settings, secret_key=SECRET_KEY)
    with legacy.app_context():
        db.engine.dispose()


@pytest.fixture
def shadow_recorder(sync_engine: Engine, reset_database: Any) -> ChangeRecorder:
    return ChangeRecorder(sync_engine, tables=list(Base.metadata.tables))


@pytest.mark.parametrize("case", shadow_cases(CASES))
def test_every_shadow_case_of_the_demo_passes(shadow: Shadow, case: Any) -> None:
    shadow.check(case)


def test_the_cases_cover_every_ported_route_five_times(shadow_manifest: Manifest) -> None:
    flask_app = legacy_flask_app.create_app(
        {"SQLALCHEMY_DATABASE_URI": "sqlite://", "SEED_DEMO_DATA": False}
    )
    counts = Counter(route_of(flask_app.url_map, case) for case in load_cases(CASES))
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


@pytest.mark.usefixtures("ticking_clock")
def test_the_timestamp_rules_absorb_writes_made_at_different_times(shadow: Shadow) -> None:
    shadow.runner.aa = False  # the rules alone, not the noise, must absorb the clock
    result = shadow.run("POST", "/api/orders", user="alice@example.com", json=ORDER)
    assert result.outcome is Outcome.SAME, result.report()


@pytest.mark.usefixtures("ticking_clock")
def test_without_the_timestamp_rules_writes_differ_where_time_is_stamped(
    shadow: Shadow, shadow_manifest: Manifest
) -> None:
    shadow.runner.manifest = dataclasses.replace(shadow_manifest, rules={})
    shadow.runner.aa = False
    result = shadow.run(
        "POST", "/api/orders", user="alice@example.com", json=ORDER, name="no rules"
    )
    assert result.outcome is Outcome.DIFFERENT
    assert {d.where for d in result.differences} >= {
        "$.created_at",
        "rows orders[4].created_at",
        "rows products[1].updated_at",
    }, result.report()


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


def test_the_cli_passes_on_the_demo_cases(
    database_settings: DatabaseSettings, reset_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in shadow_env(database_settings).items():
        monkeypatch.setenv(name, value)
    args = ["shadow", str(CASES), "--manifest", str(Path(__file__).parents[2] / "migration.toml")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    total = result.stdout.splitlines()[-1].split()
    assert total == ["total", str(len(load_cases(CASES))), str(len(load_cases(CASES))), "0", "0"]


def test_the_cli_fails_on_a_port_that_forgets_the_stock(
    database_settings: DatabaseSettings, reset_database: Any, tmp_path: Path
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
