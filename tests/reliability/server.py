"""``python -m bridge serve`` in a subprocess, and what the suite needs to talk to it.

The server runs the demo with the test routes of :mod:`tests.reliability.apps`
(a manifest in the test's folder names them; the demo's routes keep their
states), a pool of :data:`POOL_SIZE` connections per side that gives up after
:data:`POOL_TIMEOUT` seconds, and :data:`WSGI_THREADS` legacy threads, so that
exhausting either costs a few requests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bridge import DatabaseSettings, configure_sqlite
from shop import repositories as repo
from shop.models import OrderItem, Product
from shop.seed import DEMO_PASSWORD
from shop.serializers import product_csv_lines
from tests.bridge.apps import stop
from tests.bridge.test_cli import free_port, wait_until_serving

ROOT = Path(__file__).parents[2]
POOL_SIZE = 2
POOL_TIMEOUT = 1
WSGI_THREADS = 8
SECRET_KEY = "reliability-suite-secret-key"
REQUEST_TIMEOUT = 20  # seconds; a request that takes longer is a hang
START_TIMEOUT = 60
SETTLE_SECONDS = 10
CUSTOMER = "alice@example.com"


def write_manifest(folder: Path) -> Path:
    """The demo's manifest with the test apps and :data:`WSGI_THREADS` threads."""
    demo = (ROOT / "migration.toml").read_text(encoding="utf-8")
    manifest = (
        demo.replace('"legacy_flask_app:create_app"', '"tests.reliability.apps:create_legacy_app"')
        .replace('"async_app:create_app"', '"tests.reliability.apps:create_async_app"')
        .replace("wsgi_threads = 40", f"wsgi_threads = {WSGI_THREADS}")
    )
    assert manifest.count("tests.reliability.apps") == 2, "the demo's manifest changed its [apps]"
    path = folder / "migration.toml"
    path.write_text(manifest, encoding="utf-8")
    return path


@dataclass
class Server:
    """A running hybrid server, and the test's own way into its database."""

    url: str
    engine: Engine  # not the server's: its connections do not carry the server's name
    application_name: str | None
    log: Path
    process: subprocess.Popen[str]
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def on_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def client(self, **options: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT, **options)
        self._clients.append(client)
        return client

    def logged_in(self, email: str = CUSTOMER) -> httpx.Client:
        """A client holding the session cookie of *email*, which both sides read."""
        client = self.client()
        response = client.post("/api/auth/login", json={"email": email, "password": DEMO_PASSWORD})
        assert response.status_code == 200, response.text
        return client

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    # ------------------------------------------------------------ the database

    def add_product(self, *, stock: int, sku: str) -> int:
        with self.engine.begin() as connection:
            statement = (
                insert(Product)
                .values(sku=sku, name=f"Reliability {sku}", category="reliability")
                .values(price_cents=100, stock=stock)
                .returning(Product.id)
            )
            return connection.execute(statement).scalar_one()

    def stock(self, product_id: int) -> int:
        with self.engine.connect() as connection:
            statement = select(Product.stock).where(Product.id == product_id)
            return connection.execute(statement).scalar_one()

    def ordered(self, product_id: int) -> int:
        """Units of the product in every order the database holds."""
        with self.engine.connect() as connection:
            units = func.coalesce(func.sum(OrderItem.quantity), 0)
            statement = select(units).where(OrderItem.product_id == product_id)
            return int(connection.execute(statement).scalar_one())

    def export(self) -> bytes:
        """The CSV export of every product, rendered here from the database."""
        statement = repo.product_list_select(
            category=None, q=None, min_price=None, max_price=None, in_stock=None, sort="name"
        )
        with Session(self.engine) as session:
            return "".join(product_csv_lines(session.scalars(statement))).encode()

    def settle(self) -> dict[str, int]:
        """Wait, boundedly, until the server's connections are neither working nor in
        a transaction; their states then (PostgreSQL), or ``{}`` (SQLite)."""
        if not self.on_postgres:
            return {}
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            states = self.backend_states()
            busy = states.get("active", 0) + states.get("idle in transaction", 0)
            if busy == 0 or time.monotonic() > deadline:
                return states
            time.sleep(0.1)

    def backend_states(self) -> dict[str, int]:
        """The server's PostgreSQL connections by state (``idle``, ``active``, ...)."""
        assert self.on_postgres
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT state, count(*) FROM pg_stat_activity"
                    " WHERE application_name = :name GROUP BY state"
                ),
                {"name": self.application_name},
            )
            return {str(state): int(count) for state, count in rows}


def bulk_products(engine: Engine, count: int) -> None:
    """*count* more products, so that an export is long enough to leave in the middle."""
    rows = [
        {
            "sku": f"BULK-{number:06d}",
            "name": f"Bulk item {number:06d}",
            "category": "bulk",
            "price_cents": number % 10_000,
            "stock": number % 50,
        }
        for number in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Product), rows)


def inspection_engine(url: str) -> Engine:
    """An engine of the test's own on the server's database; it pools nothing."""
    settings = DatabaseSettings(url=url)
    engine = create_engine(settings.sync_url, poolclass=NullPool)
    if settings.backend == "sqlite":
        configure_sqlite(engine)
    return engine


@contextmanager
def serve(
    folder: Path,
    database_url: str,
    *,
    inspect_url: str,
    async_driver: str | None = None,
    application_name: str | None = None,
) -> Iterator[Server]:
    """Run ``python -m bridge serve`` on a free port until the block ends."""
    port = free_port()
    manifest = write_manifest(folder)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        "DATABASE_MAX_OVERFLOW": "0",
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "SECRET_KEY": SECRET_KEY,
    }
    env.pop("DATABASE_ASYNC_DRIVER", None)
    if async_driver:
        env["DATABASE_ASYNC_DRIVER"] = async_driver
    log = folder / "server.log"
    # A file, not a pipe: a server that logs more than a pipe holds would block.
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port),
             "--manifest", str(manifest), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    engine = inspection_engine(inspect_url)
    server = Server(url, engine, application_name, log, process)
    try:
        try:
            wait_until_serving(f"{url}/api/health", process, time.monotonic() + START_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{server.log_tail()}") from exc
        yield server
    finally:
        server.close_clients()
        stop(process)
        engine.dispose()


def connect(server: Server) -> socket.socket:
    """A raw TCP connection to the server."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=REQUEST_TIMEOUT)
