"""The README's first command serves the demo on a fresh checkout, and only there.

``flask2fastapi serve`` in the repository's root, with no ``SECRET_KEY``: the
demo's manifest lets its published key through on 127.0.0.1, with a warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.bridge.apps import stop
from tests.bridge.test_cli import free_port, wait_until_serving

ROOT = Path(__file__).parents[2]


def without_secret_key(database: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    return {**env, "DATABASE_URL": f"sqlite:///{database}"}


def test_serve_in_the_root_runs_the_demo_with_its_key_and_a_warning(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=without_secret_key(tmp_path / "demo.sqlite3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/api/health", process, time.monotonic() + 60)
        health = httpx.get(f"http://127.0.0.1:{port}/api/health")
        products = httpx.get(f"http://127.0.0.1:{port}/api/products?category=books")
    finally:
        stderr = stop(process)

    assert health.json() == {"status": "ok"}
    assert products.headers["x-bridge-side"] == "async"
    assert stderr.startswith("WARNING: serving with a published development SECRET_KEY")
    assert process.returncode == 0, stderr


def test_serve_refuses_the_demo_key_on_every_interface(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT,
        env=without_secret_key(tmp_path / "demo.sqlite3"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1
    assert completed.stderr.startswith(
        "flask2fastapi: error: the session key 'flask2fastapi-dev-only-secret-key' "
        "is a published development key"
    )
    assert "loopback --host only, not on 0.0.0.0" in completed.stderr
