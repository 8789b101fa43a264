"""``flask2fastapi serve --workers 2``: every worker follows the manifest and the store.

The two workers share nothing but the manifest file and the database; the
apps answer with their process id, so the test knows which worker answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge._rollout.store import RolloutStore
from bridge._serving.manifest import RouteKey
from tests.bridge.apps import stop
from tests.bridge.test_cli import TEST_SECRET_KEY, free_port, wait_until_serving

LEGACY_SOURCE = """
    import os
    from flask import Flask

    def create_app():
        app = Flask(__name__)
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]

        @app.get("/who")
        def who():
            return {"pid": os.getpid()}

        @app.get("/boom")
        def boom():
            return {"pid": os.getpid()}

        return app
"""

PORTED_SOURCE = """
    import os
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/who")
    async def who():
        return {"pid": os.getpid()}

    @app.get("/boom")
    async def boom():
        return JSONResponse({"pid": os.getpid()}, status_code=500)
"""

MANIFEST = """
[apps]
flask = "{name}_legacy:create_app"
fastapi = "{name}_ported:app"

[rollout]
poll_interval = 0.2
min_requests = 5
error_rate = 0.5

[routes]
"GET /who" = "{who}"
"GET /boom" = "async"
"""

#: Seconds every worker has to follow a change: a few poll intervals, and room for a slow machine.
DEADLINE = 30


@pytest.fixture
def server(tmp_path: Path, database_url: str, store: RolloutStore) -> Iterator[Server]:
    name = f"workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}_legacy.py").write_text(textwrap.dedent(LEGACY_SOURCE), encoding="utf-8")
    (tmp_path / f"{name}_ported.py").write_text(textwrap.dedent(PORTED_SOURCE), encoding="utf-8")
    running = Server(tmp_path / "migration.toml", name)
    running.write_manifest("legacy")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2",
         "--manifest", str(running.manifest), "--log-level", "warning"],
        cwd=tmp_path,
        env={**os.environ, "SECRET_KEY": TEST_SECRET_KEY, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    running.base = f"http://127.0.0.1:{port}"
    try:
        # Three processes import both apps: slow on a busy machine.
        wait_until_serving(f"{running.base}/who", process, time.monotonic() + 120)
        yield running
    finally:
        stderr = stop(process)
        assert "Traceback" not in stderr, stderr


class Server:
    def __init__(self, manifest: Path, name: str) -> None:
        self.manifest = manifest
        self.name = name
        self.base = ""

    def write_manifest(self, who: str) -> None:
        text = MANIFEST.format(name=self.name, who=who)
        self.manifest.write_text(text, encoding="utf-8")

    def answer(self, path: str) -> tuple[int, str]:
        """One request on a connection of its own, so either worker may take it."""
        response = httpx.get(f"{self.base}{path}", timeout=10)
        return response.json()["pid"], response.headers["x-bridge-side"]

    def wait_until_both_workers(self, path: str, side: str) -> None:
        """Until each of the two workers has answered *path* from *side* with no
        answer from the other side after that."""
        deadline = time.monotonic() + DEADLINE
        following: set[int] = set()
        while len(following) < 2:
            assert time.monotonic() < deadline, f"workers answering from {side}: {following}"
            pid, answered = self.answer(path)
            following = following | {pid} if answered == side else set()
            time.sleep(0.02)
        for _ in range(20):  # and they stay there
            assert self.answer(path)[1] == side


def test_a_manifest_change_reaches_every_worker_within_seconds(server: Server) -> None:
    server.wait_until_both_workers("/who", "legacy")

    server.write_manifest("async")

    server.wait_until_both_workers("/who", "async")


def test_a_demotion_reaches_every_worker_within_seconds(
    server: Server, store: RolloutStore
) -> None:
    for _ in range(10):
        server.answer("/boom")  # the port answers 500

    server.wait_until_both_workers("/boom", "legacy")

    override = store.overrides()[RouteKey("GET", "/boom")]
    assert override.demoted
    assert "5xx rate" in override.reason
