"""The pytest plugin, as a project that installs the package uses it.

An inner pytest session in a fresh folder: no conftest of ours, only a
manifest naming the apps and DATABASE_URL; the ``shadow`` fixture must be
there because the package is installed (the ``pytest11`` entry point).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bridge._porting.database import DatabaseSettings
from bridge._shadow.recorder import ChangeRecorder

from . import shadow_apps

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.async_side  # the inner session serves the port

ROOT = Path(__file__).parents[2]

TESTS = """
import pytest

@pytest.mark.parametrize("path", ["/notes/1", "/notes/999"])
def test_reads_are_the_same(shadow, path):
    shadow.check("GET", path)

def test_a_write_is_noise_only(shadow):
    result = shadow.check("POST", "/notes", json={"text": "hi"})
    assert result.outcome.value == "noise"
    assert dict(result.proposed.vary) == {"$.created_at": "instant", "$.token": "token"}
"""


@pytest.fixture
def project(
    pytester: pytest.Pytester,
    database_settings: DatabaseSettings,
    sync_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[pytest.Pytester]:
    shadow_apps.create_schema(database_settings)
    monkeypatch.setenv("DATABASE_URL", database_settings.url)
    if database_settings.async_driver:
        monkeypatch.setenv("DATABASE_ASYNC_DRIVER", database_settings.async_driver)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.syspath_prepend(str(ROOT))
    pytester.makefile(
        ".toml",
        migration="""
        [apps]
        flask = "tests.bridge.shadow_apps:create_flask"
        fastapi = "tests.bridge.shadow_apps:create_port"
        [routes]
        "GET /notes/<int:note_id>" = "async"
        """,
    )
    yield pytester
    shadow_apps.metadata.drop_all(sync_engine)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    project.makepyfile(test_notes=TESTS)
    # A subprocess: the inner session loads the plugin from the installed package.
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_the_shadow_fixture_comes_with_the_package(
    project: pytest.Pytester, sync_engine: Engine
) -> None:
    recorder = ChangeRecorder(sync_engine, tables=list(shadow_apps.metadata.tables))
    before = recorder.snapshot()
    result = run(project)
    result.assert_outcomes(passed=3)
    assert recorder.snapshot() == before


def test_a_broken_port_fails_the_inner_test_with_the_diff(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOW_PORT", "wrong-field")
    result = run(project)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(['*$.text: legacy "first", async "FIRST"*'])


def test_the_manifest_option_points_elsewhere(project: pytest.Pytester) -> None:
    moved = project.path / "config" / "other.toml"
    moved.parent.mkdir()
    (project.path / "migration.toml").rename(moved)
    result = run(project, f"--shadow-manifest={moved}")
    result.assert_outcomes(passed=3)
