"""PostgreSQL restarts under the hybrid's feet: the server answers again and no
write it acknowledged is lost.

The test starts a cluster of its own (``initdb`` and ``pg_ctl`` on a free port)
so that it may restart it; it is skipped, saying why, where that cannot be done.
It does not need ``TEST_DATABASE_URL``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from shop.models import Order
from tests.bridge.test_cli import free_port
from tests.reliability.server import Server, serve

pytestmark = pytest.mark.reliability

SIDES = {"legacy": "/test/legacy/orders", "async": "/api/orders"}
WRITES_EACH_SIDE = 20  # acknowledged before the restart, and again after it
RECOVERY_SECONDS = 60  # the traffic stops there, answered again or not
COMMAND_TIMEOUT = 60
CLIENTS = 4  # so that writes are in flight when the server goes down


def postgres_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, or Debian's versioned folder."""
    on_path = shutil.which("pg_ctl")
    candidates = [str(Path(on_path).resolve().parent)] if on_path else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if all((Path(folder) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster, run by the ``postgres`` user when we are root."""

    binaries: Path
    folder: Path
    port: int
    run_as: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.run_as, str(self.binaries / program), *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), *args)

    def start(self) -> subprocess.CompletedProcess[str]:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder}"
        )
        return self.pg_ctl("start", "-w", "-o", options)

    def restart(self) -> None:
        """A fast restart: sessions are cut, committed work stays."""
        restarted = self.pg_ctl("restart", "-w", "-m", "fast")
        assert restarted.returncode == 0, restarted.stderr

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        engine = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install PostgreSQL's server")
    run_as = _run_as()
    # Not under pytest's tmp_path: its parent is private to our user, not to postgres.
    folder = Path(tempfile.mkdtemp(prefix="reliability-pg-"))
    if run_as:
        entry = pwd.getpwnam("postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(binaries, folder, free_port(), run_as)
    try:
        made = cluster.run("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust")
        if made.returncode != 0:
            pytest.skip(f"initdb cannot make a cluster here: {_last_line(made.stderr)}")
        started = cluster.start()
        if started.returncode != 0:
            pytest.skip(f"pg_ctl cannot start a cluster here: {_last_line(started.stderr)}")
        yield cluster
    finally:
        cluster.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(folder, ignore_errors=True)


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("initdb refuses root and there is no postgres user to run it")
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("initdb refuses root and runuser is missing to run it as postgres")
    return [runuser, "-u", "postgres", "--"]


def _last_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1] if lines else "no message"


@dataclass
class Traffic:
    """Orders placed by :data:`CLIENTS` clients, each alternating sides and opening a
    new connection per order (a keep-alive connection the server closed is not the
    server failing to answer)."""

    server: Server
    cookie: str
    product: int
    acknowledged: dict[str, list[tuple[float, int]]] = field(
        default_factory=lambda: {side: [] for side in SIDES}
    )
    refused: list[tuple[str, int]] = field(default_factory=list)  # (side, status)
    hung: list[tuple[str, str]] = field(default_factory=list)  # (side, timeout)
    cut: list[tuple[str, str]] = field(default_factory=list)  # (side, error)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=20) as client:
            while not self.stopping.is_set():
                for side, path in SIDES.items():
                    self.place(client, side, path)

    def place(self, client: httpx.Client, side: str, path: str) -> None:
        headers = {"Cookie": f"session={self.cookie}", "Connection": "close"}
        body = {"items": [{"product_id": self.product, "quantity": 1}]}
        try:
            response = client.post(path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            self.hung.append((side, repr(exc)))
            return
        except httpx.TransportError as exc:
            self.cut.append((side, repr(exc)))
            return
        if response.status_code == 201:
            self.acknowledged[side].append((time.monotonic(), response.json()["id"]))
        else:
            self.refused.append((side, response.status_code))

    def acknowledged_since(self, moment: float) -> dict[str, int]:
        return {
            side: sum(at > moment for at, _ in acks) for side, acks in self.acknowledged.items()
        }

    def wait_for(self, moment: float, deadline: float) -> bool:
        """Whether each side acknowledges :data:`WRITES_EACH_SIDE` writes after *moment*."""
        while time.monotonic() < deadline:
            if min(self.acknowledged_since(moment).values()) >= WRITES_EACH_SIDE:
                return True
            time.sleep(0.05)
        return False


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_the_hybrid_answers_again_after_postgresql_restarts_and_keeps_every_acknowledged_write(
    cluster: Cluster, driver: str, tmp_path: Path
) -> None:
    database = f"restart_{driver}_{uuid.uuid4().hex[:6]}"
    cluster.create_database(database)
    url = cluster.url(database)
    with serve(tmp_path, url, inspect_url=url, async_driver=driver) as server:
        product = server.add_product(stock=1_000_000, sku=f"RESTART-{driver}")
        traffic = Traffic(server, server.logged_in().cookies["session"], product)
        workers = [threading.Thread(target=traffic.run) for _ in range(CLIENTS)]
        for worker in workers:
            worker.start()
        try:
            started = time.monotonic()
            assert traffic.wait_for(started, started + RECOVERY_SECONDS), traffic.refused
            cluster.restart()
            restarted = time.monotonic()
            answered = traffic.wait_for(restarted, restarted + RECOVERY_SECONDS)
        finally:
            traffic.stopping.set()
            for worker in workers:
                worker.join(COMMAND_TIMEOUT)
        assert answered, (
            f"no answers since the restart: {traffic.refused[-5:]}\n{server.log_tail()}"
        )
        acknowledged = {order for acks in traffic.acknowledged.values() for _, order in acks}
        with server.engine.connect() as connection:
            stored = set(connection.scalars(select(Order.id).where(Order.id.in_(acknowledged))))

    assert not any(worker.is_alive() for worker in workers)
    assert acknowledged - stored == set()  # every write answered 201 is there
    # During the outage a write fails with an error status, never hangs. A legacy
    # answer may also be cut after its status: Flask-SQLAlchemy's teardown rolls
    # back on the dead connection and raises once the status has gone out. The
    # client then has no answer, and whether the write stayed is not a 201 lost.
    assert traffic.hung == []
    assert {side for side, _error in traffic.cut} <= {"legacy"}, traffic.cut
    assert {status for _side, status in traffic.refused} <= {500, 503}
