"""The end-to-end benchmark: real servers on real sockets, loaded with wrk.

Every server runs pinned to core 0 (``taskset -c 0``) and wrk to core 1, on
PostgreSQL. One *round* starts each server in turn, loads it, and stops it, so
only one server holds database connections at a time and drift on a shared
machine hits every server alike; each ratio is the median of its per-round
ratios, printed with the lowest and highest.

Servers:

* ``gunicorn``: the Flask app (:mod:`benchmarks.flask_app`) under gunicorn
  gthread, 1 worker x 32 threads: what users run today.
* ``legacy``: the same app through ``flask2fastapi serve``, every route legacy.
* ``wsgi-minimal``: the same app behind the least an ASGI server can put in
  front of it (:mod:`benchmarks.minimal_wsgi`): the legacy side's reference.
* ``ported``: ``flask2fastapi serve`` with both routes ported
  (:mod:`benchmarks.fastapi_app`).
* ``ported-lazy``: the same with ``DATABASE_LAZY_BEGIN=true``: a read-only
  request sends no ``BEGIN`` and no ``COMMIT``.
* ``fastapi``: the port alone under uvicorn.
* ``starlette``: the routes by hand on a raw asyncpg pool
  (:mod:`benchmarks.starlette_app`), what a port could reach.
* ``fastapi-raw``: the same routes on FastAPI, the ceiling of a port (every
  port is a FastAPI route): the rows against it split what the toolkit and
  SQLAlchemy cost from what FastAPI costs.
* ``gunicorn-2w`` and ``legacy-2w``: two workers each on both cores.
* ``demo-gunicorn`` and ``demo-hybrid``: the demo shop with 30,000 products,
  for the time of its streamed CSV export.
* ``shadow-off``, ``shadow-10`` and ``shadow-100``: both apps behind the hybrid,
  ``/hello`` legacy, then in shadow at 10 % and 100 % sampling: the live
  shadow's cost (``--only shadow-off shadow-10 shadow-100`` runs them alone).

Run it with ``scripts/bench``; ``python -m benchmarks.run --help`` lists the options.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POOL = 32  # legacy threads, sync connections and async connections alike
IO_BOUND_RPS = POOL / 0.010  # 32 connections each busy 10 ms per request
DEMO_SCHEMA = "flask2fastapi_bench"
DEMO_PRODUCTS = 30_000
SERVER_CORES = "0"
WRK_CORES = "1"
BOTH_CORES = "0,1"


@dataclass(frozen=True)
class Load:
    """One wrk run: *connections* clients asking for *path* as fast as they can."""

    path: str
    connections: int


@dataclass(frozen=True)
class Server:
    name: str
    argv: Sequence[str]  # {port} is replaced by the port
    loads: Sequence[Load] = ()
    downloads: int = 0  # timed sequential GETs of the demo's CSV export
    workers: int = 1
    demo: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # added to the server's environment

    @property
    def cores(self) -> str:
        return BOTH_CORES if self.workers > 1 else SERVER_CORES


@dataclass
class Measured:
    """Per server and load, one value per round."""

    rps: dict[tuple[str, Load], list[float]] = field(default_factory=dict)
    p50_ms: dict[tuple[str, Load], list[float]] = field(default_factory=dict)
    cpu_us: dict[tuple[str, Load], list[float]] = field(default_factory=dict)
    download_s: dict[str, list[float]] = field(default_factory=dict)


HELLO_32 = Load("/hello", 32)
HELLO_1 = Load("/hello", 1)
IO_64 = Load("/io", 64)
IO_128 = Load("/io", 128)
IO_CORE_128 = Load("/io-core", 128)
HELLO_64 = Load("/hello", 64)
CSV_PATH = "/api/products/export.csv"


def gunicorn(app: str, *, workers: int = 1, threads: int = POOL) -> list[str]:
    return [
        *("gunicorn", "-k", "gthread", "-w", str(workers), "--threads", str(threads)),
        *("-b", "127.0.0.1:{port}", "--log-level", "warning", app),
    ]


def serve(manifest: str, *, workers: int = 1) -> list[str]:
    return [
        *("flask2fastapi", "serve", "--manifest", manifest, "--port", "{port}"),
        *("--workers", str(workers), "--log-level", "warning"),
    ]


def uvicorn(app: str) -> list[str]:
    return ["uvicorn", "--factory", app, "--port", "{port}", "--log-level", "warning"]


# The live shadow's cost: /hello in shadow at 10 % and 100 % sampling against
# the same route legacy, behind the same two apps. Its p50 at c=1 (below
# saturation) and its throughput at c=32 (the one core saturated).
SHADOW_SERVERS = (
    Server("shadow-off", serve("benchmarks/shadow-off.toml"), (HELLO_32, HELLO_1)),
    Server("shadow-10", serve("benchmarks/shadow-10.toml"), (HELLO_32, HELLO_1)),
    Server("shadow-100", serve("benchmarks/shadow-100.toml"), (HELLO_32, HELLO_1)),
)

SERVERS = (
    Server("gunicorn", gunicorn("benchmarks.flask_app:create_app()"),
           (HELLO_32, HELLO_1, IO_64, IO_128)),
    Server("legacy", serve("benchmarks/legacy.toml"), (HELLO_32, HELLO_1, IO_64)),
    Server("wsgi-minimal", uvicorn("benchmarks.minimal_wsgi:create_app"),
           (HELLO_32, HELLO_1, IO_64)),
    Server("ported", serve("benchmarks/ported.toml"), (HELLO_32, IO_128, IO_CORE_128)),
    Server("ported-lazy", serve("benchmarks/ported.toml"), (IO_128, IO_CORE_128),
           env={"DATABASE_LAZY_BEGIN": "true"}),
    Server("fastapi", uvicorn("benchmarks.fastapi_app:create_app"), (HELLO_32, IO_128)),
    Server("starlette", uvicorn("benchmarks.starlette_app:create_app"), (HELLO_32, IO_128)),
    Server("fastapi-raw", uvicorn("benchmarks.starlette_app:create_fastapi_app"), (IO_128,)),
    Server("gunicorn-2w", gunicorn("benchmarks.flask_app:create_app()", workers=2,
                                   threads=POOL // 2), (HELLO_64, IO_64), workers=2),
    Server("legacy-2w", serve("benchmarks/legacy-2w.toml", workers=2), (HELLO_64, IO_64),
           workers=2),
    Server("demo-gunicorn", gunicorn("legacy_flask_app:create_app()"), downloads=3, demo=True),
    Server("demo-hybrid", serve("migration.toml"), downloads=3, demo=True),
    *SHADOW_SERVERS,
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    measure: str
    target: str
    value: Callable[[Measured, int], float]  # the round's value
    unit: str = "x"


def rps_ratio(a: tuple[str, Load], b: tuple[str, Load]) -> Callable[[Measured, int], float]:
    return lambda m, r: m.rps[a][r] / m.rps[b][r]


def p50_added(a: str, b: str, load: Load) -> Callable[[Measured, int], float]:
    return lambda m, r: m.p50_ms[(a, load)][r] - m.p50_ms[(b, load)][r]


def of_bound(a: tuple[str, Load]) -> Callable[[Measured, int], float]:
    return lambda m, r: m.rps[a][r] / IO_BOUND_RPS


def download_ratio(a: str, b: str) -> Callable[[Measured, int], float]:
    return lambda m, r: m.download_s[a][r] / m.download_s[b][r]


SHADOW_ROWS = (
    Row("shadow at 10 %: /hello at c=1, p50 added over legacy", "<= +0.3",
        p50_added("shadow-10", "shadow-off", HELLO_1), unit="ms"),
    Row("shadow at 10 %: /hello / legacy, c=32", ">= 0.9",
        rps_ratio(("shadow-10", HELLO_32), ("shadow-off", HELLO_32))),
    Row("shadow at 100 %: /hello at c=1, p50 added over legacy", "",
        p50_added("shadow-100", "shadow-off", HELLO_1), unit="ms"),
    Row("shadow at 100 %: /hello / legacy, c=32", "",
        rps_ratio(("shadow-100", HELLO_32), ("shadow-off", HELLO_32))),
)  # fmt: skip

ROWS = (
    Row("legacy /hello through the hybrid / gunicorn, c=32", ">= 1.2",
        rps_ratio(("legacy", HELLO_32), ("gunicorn", HELLO_32))),
    Row("legacy /io through the hybrid / gunicorn, c=64", ">= 1.1",
        rps_ratio(("legacy", IO_64), ("gunicorn", IO_64))),
    Row("legacy /hello at c=1, p50 added by the hybrid", "<= +0.05",
        p50_added("legacy", "gunicorn", HELLO_1), unit="ms"),
    Row("reference: minimal WSGI adapter /io / gunicorn, c=64", "",
        rps_ratio(("wsgi-minimal", IO_64), ("gunicorn", IO_64))),
    Row("legacy /io through the hybrid / minimal WSGI adapter, c=64", "",
        rps_ratio(("legacy", IO_64), ("wsgi-minimal", IO_64))),
    Row("legacy /hello through the hybrid / minimal WSGI adapter, c=32", "",
        rps_ratio(("legacy", HELLO_32), ("wsgi-minimal", HELLO_32))),
    Row("ported /io at c=128 / gunicorn gthread-32", ">= 1.3",
        rps_ratio(("ported", IO_128), ("gunicorn", IO_128))),
    Row(f"ported /io at c=128 / its bound ({IO_BOUND_RPS:.0f} rps)", ">= 0.65 (0.9)",
        of_bound(("ported", IO_128))),
    Row("ported /hello through the hybrid / FastAPI alone, c=32", ">= 0.9",
        rps_ratio(("ported", HELLO_32), ("fastapi", HELLO_32))),
    Row("ported /io / Starlette + raw asyncpg, c=128", ">= 0.65",
        rps_ratio(("ported", IO_128), ("starlette", IO_128))),
    Row(f"demo CSV export ({DEMO_PRODUCTS} lines), time hybrid / gunicorn", "<= 1.0",
        download_ratio("demo-hybrid", "demo-gunicorn")),
    Row("2 workers: legacy /hello hybrid / gunicorn, c=64", "",
        rps_ratio(("legacy-2w", HELLO_64), ("gunicorn-2w", HELLO_64))),
    Row("2 workers: legacy /io hybrid / gunicorn, c=64", "",
        rps_ratio(("legacy-2w", IO_64), ("gunicorn-2w", IO_64))),
    Row("ported /io-core (DbConnection) at c=128 / gunicorn /io", "",
        rps_ratio(("ported", IO_CORE_128), ("gunicorn", IO_128))),
    Row("ported /io-core (DbConnection) at c=128 / its bound", "",
        of_bound(("ported", IO_CORE_128))),
    Row("DATABASE_LAZY_BEGIN: ported /io at c=128 / gunicorn gthread-32", "",
        rps_ratio(("ported-lazy", IO_128), ("gunicorn", IO_128))),
    Row("DATABASE_LAZY_BEGIN: ported /io at c=128 / its bound", "",
        of_bound(("ported-lazy", IO_128))),
    Row("DATABASE_LAZY_BEGIN: ported /io / Starlette + raw asyncpg", "",
        rps_ratio(("ported-lazy", IO_128), ("starlette", IO_128))),
    Row("DATABASE_LAZY_BEGIN: ported /io-core (DbConnection) / its bound", "",
        of_bound(("ported-lazy", IO_CORE_128))),
    Row("reference: Starlette + raw asyncpg /io / its bound", "",
        of_bound(("starlette", IO_128))),
    Row("ceiling of a port: FastAPI + raw asyncpg /io / its bound", "",
        of_bound(("fastapi-raw", IO_128))),
    Row("ceiling of a port: FastAPI + raw asyncpg /io / Starlette + raw asyncpg", "",
        rps_ratio(("fastapi-raw", IO_128), ("starlette", IO_128))),
    Row("ported /io / FastAPI + raw asyncpg: the toolkit's and SQLAlchemy's share", "",
        rps_ratio(("ported", IO_128), ("fastapi-raw", IO_128))),
    *SHADOW_ROWS,
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    check_tools()
    servers = [s for s in SERVERS if not options.only or s.name in options.only]
    if any(s.demo for s in servers):
        seed_demo(demo_url(options.database_url))
    measured = Measured()
    load_before = os.getloadavg()[0]
    for number in range(options.rounds):
        print(f"round {number + 1} of {options.rounds}", file=sys.stderr)
        for server in servers:
            run_server(server, options, measured)
    print(f"\n{machine()}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{options.rounds} rounds of {options.duration} s per wrk run")
    print_table(measured, options.rounds)
    print_raw(measured)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=default_url(), help="PostgreSQL URL.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="Seconds per wrk run.")
    parser.add_argument("--only", nargs="*", help="Run only these servers.")
    return parser.parse_args(argv)


def default_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return f"{os.cpu_count()} x {model}, Python {sys.version.split()[0]}"


def check_tools() -> None:
    for tool, fix in (
        ("wrk", "apt-get install wrk (scripts/bench does it)"),
        ("gunicorn", "pip install -e '.[bench]'"),
        ("taskset", "apt-get install util-linux"),
    ):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed: {fix}")


def run_server(server: Server, options: argparse.Namespace, measured: Measured) -> None:
    url = demo_url(options.database_url) if server.demo else options.database_url
    with running(server, url) as (base, group):
        if server.downloads:
            download(base + CSV_PATH)  # warm up
            times = [download(base + CSV_PATH) for _ in range(server.downloads)]
            measured.download_s.setdefault(server.name, []).append(statistics.median(times))
        for load in server.loads:
            wrk(base, load, 1, server)  # warm up: pools open their connections
            cpu_before = cpu_seconds(group)
            rps, p50 = wrk(base, load, options.duration, server)
            cpu = cpu_seconds(group) - cpu_before
            key = (server.name, load)
            measured.rps.setdefault(key, []).append(rps)
            measured.p50_ms.setdefault(key, []).append(p50)
            measured.cpu_us.setdefault(key, []).append(cpu / (rps * options.duration) * 1e6)


@contextmanager
def running(server: Server, database_url: str) -> Iterator[tuple[str, int]]:
    """Start *server* pinned to its cores, wait until it answers, stop it after.

    Yields its URL and its process group.
    """
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in server.argv]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": str(POOL // server.workers),
        "DATABASE_MAX_OVERFLOW": "0",
        "PYTHONPATH": str(ROOT),
        "SECRET_KEY": _SECRET_KEY,  # the hybrid refuses a Flask app without one
        **server.env,
    }
    command = ["taskset", "-c", server.cores, *argv]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + ("/api/health" if server.demo else "/hello"), process)
        yield base, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_hex()


def cpu_seconds(group: int) -> float:
    """CPU time used so far by the processes of *group*: the server and its workers.

    Less sensitive than requests per second to other work on a shared machine:
    divided by the requests served, it is the server's cost per request.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # pgrp
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: the server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"bench: {url} did not answer within 120 s")


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_P50 = re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(base: str, load: Load, seconds: int, server: Server) -> tuple[float, float]:
    """Requests per second and the median latency in ms."""
    cores = server.cores if server.workers > 1 else WRK_CORES
    command = [
        *("taskset", "-c", cores, "wrk", "-t1", f"-c{load.connections}", f"-d{seconds}s"),
        *("--latency", "--timeout", "30s", base + load.path),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        print(f"bench: {server.name} {load}: {output}", file=sys.stderr)
    rps, p50 = _RPS.search(output), _P50.search(output)
    if rps is None or p50 is None:
        sys.exit(f"bench: cannot read wrk's output:\n{output}")
    return float(rps.group(1)), float(p50.group(1)) * _UNIT_MS[p50.group(2)]


def download(url: str) -> float:
    """Seconds to receive the whole response, read as it comes."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        while response.read(65536):
            pass
    return time.perf_counter() - start


def demo_url(url: str) -> str:
    """*url* with the demo's tables in a schema of their own, away from other data."""
    from sqlalchemy import make_url

    options = f"-c search_path={DEMO_SCHEMA}"
    return make_url(url).update_query_dict({"options": options}).render_as_string(False)


def seed_demo(url: str) -> None:
    """The demo's tables and seed, plus products up to :data:`DEMO_PRODUCTS`."""
    from sqlalchemy import create_engine, func, insert, select, text
    from sqlalchemy.orm import Session

    from bridge import DatabaseSettings, run_sync
    from shop.models import Base, Product
    from shop.seed import is_seeded, seed

    engine = create_engine(DatabaseSettings(url=url).sync_url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {DEMO_SCHEMA}"))
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        if not run_sync(session, is_seeded()):
            run_sync(session, seed())
    with engine.begin() as connection:
        have = connection.scalar(select(func.count()).select_from(Product)) or 0
        rows = [
            {"sku": f"BENCH-{n:05d}", "name": f"Bench product {n}", "category": "bench",
             "price_cents": 100 + n % 900, "stock": n % 50}
            for n in range(have, DEMO_PRODUCTS)
        ]  # fmt: skip
        if rows:
            connection.execute(insert(Product), rows)
    engine.dispose()


def print_table(measured: Measured, rounds: int) -> None:
    width = max(len(row.measure) for row in ROWS)
    print(f"\n{'measure':<{width}}  {'median':>8}  {'min':>7}  {'max':>7}  target")
    for row in ROWS:
        try:
            values = [row.value(measured, r) for r in range(rounds)]
        except KeyError:
            continue  # a server left out with --only
        sign = "+" if row.unit == "ms" else ""
        cells = [f"{v:{sign}.2f}" for v in (statistics.median(values), min(values), max(values))]
        unit = " ms" if row.unit == "ms" else "x"
        print(f"{row.measure:<{width}}  {cells[0]:>8}  {cells[1]:>7}  {cells[2]:>7}  "
              f"{row.target}{unit if row.target else ''}")  # fmt: skip


def print_raw(measured: Measured) -> None:
    print("\nraw medians: requests/s, p50 latency, server CPU time per request; download time")
    for key, values in measured.rps.items():
        name, load = key
        p50 = statistics.median(measured.p50_ms[key])
        cpu = statistics.median(measured.cpu_us[key])
        rps = statistics.median(values)
        where = f"{name:<14} {load.path:<7} c={load.connections:<4}"
        print(f"  {where} {rps:7.0f} rps  p50 {p50:7.2f} ms  {cpu:6.0f} us CPU")
    for name, values in measured.download_s.items():
        print(f"  {name:<14} {CSV_PATH}  {statistics.median(values):.2f} s")


if __name__ == "__main__":
    main()
