"""What installing the toolkit puts on a user's machine, and what pytest pays for it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]

# Built in a copy: an in-tree build leaves build/ and *.egg-info in the checkout.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "*.sqlite3"
)


def build_wheel(folder: Path) -> zipfile.ZipFile:
    """Build the project's wheel offline, with the setuptools installed here."""
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", str(folder / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = (folder / "dist").glob("flask2fastapi-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_installs_the_toolkit_alone(tmp_path: Path) -> None:
    with build_wheel(tmp_path) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(
            next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        ).decode()

    # No demo package (shop, legacy_flask_app, async_app), no tests or benchmarks.
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"bridge"}
    assert len(tops) == 2
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "bridge").rglob("*.py")}
    assert {name for name in names if name.endswith(".py")} == sources
    assert "bridge/py.typed" in names
    assert "flask2fastapi = bridge._cli:main" in entry_points
    assert "flask2fastapi = bridge.pytest_plugin" in entry_points


HEAVY = ("fastapi", "starlette", "httpx", "a2wsgi", "flask", "sqlalchemy")


def loaded_after(code: str) -> set[str]:
    """The packages of :data:`HEAVY` a fresh interpreter has imported after *code*."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return {name.split(".")[0] for name in output.split() if name.split(".")[0] in HEAVY}


def test_the_pytest_plugin_imports_no_app_stack() -> None:
    # pytest loads the plugin in every session, whether or not a test shadows.
    assert loaded_after("from bridge.pytest_plugin import Shadow, shadow_cases") == set()


def test_the_cli_imports_the_app_stack_when_a_command_runs() -> None:
    # `--help`, and the one line about a missing manifest, need none of it.
    assert loaded_after("import bridge._cli") == set()


def test_loading_a_flask_app_imports_no_async_stack() -> None:
    assert loaded_after("import bridge._serving.loading") == {"flask"}
