"""Server CPU time per request on the async side, each a ratio to the raw reference.

At 10 ms per query a port's server is CPU-bound on its core: its requests per
second are about one over the CPU a request costs. Requests per second drop
with whatever else the machine runs; the CPU a request costs much less so.
This part of the bench loads each server at a fixed concurrency (the server
pinned to core 0, wrk to core 1, as in :mod:`benchmarks.run`) and divides the
CPU time the server's processes used by the requests they served.

Paths, from the least to the most between the route and the driver:

* ``starlette /io``: Starlette on a raw asyncpg pool, the reference.
* ``fastapi-raw /io``: FastAPI on the same raw pool, the ceiling of a port.
* ``fastapi /io-engine``: FastAPI, SQLAlchemy Core ``engine.begin()`` in the
  route, a plain response: what the toolkit builds on.
* ``fastapi /io-core``: :data:`~bridge.DbConnection` and
  :class:`~bridge.FlaskJSONResponse`.
* ``fastapi /io``: :data:`~bridge.DbSession` and :class:`~bridge.FlaskJSONResponse`.
* ``ported /io-core`` and ``ported /io``: the same through the hybrid.
* ``ported-lazy``: the same two with ``DATABASE_LAZY_BEGIN=true``.

Run it with ``scripts/bench`` or ``python -m benchmarks.cpu_per_request``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.run import (
    WRK_CORES,
    Server,
    check_tools,
    cpu_seconds,
    default_url,
    machine,
    running,
    serve,
    uvicorn,
)


@dataclass(frozen=True, eq=False)  # one per path: compared by identity
class Measure:
    server: Server
    path: str

    @property
    def name(self) -> str:
        return f"{self.server.name} {self.path}"


STARLETTE = Server("starlette", uvicorn("benchmarks.starlette_app:create_app"))
FASTAPI_RAW = Server("fastapi-raw", uvicorn("benchmarks.starlette_app:create_fastapi_app"))
FASTAPI = Server("fastapi", uvicorn("benchmarks.fastapi_app:create_app"))
PORTED = Server("ported", serve("benchmarks/ported.toml"))
PORTED_LAZY = Server(
    "ported-lazy", serve("benchmarks/ported.toml"), env={"DATABASE_LAZY_BEGIN": "true"}
)
REFERENCE = Measure(STARLETTE, "/io")
PATHS = (
    REFERENCE,
    Measure(FASTAPI_RAW, "/io"),
    Measure(FASTAPI, "/io-engine"),
    Measure(FASTAPI, "/io-core"),
    Measure(FASTAPI, "/io"),
    Measure(PORTED, "/io-core"),
    Measure(PORTED, "/io"),
    Measure(PORTED_LAZY, "/io-core"),
    Measure(PORTED_LAZY, "/io"),
)

_REQUESTS = re.compile(r"(\d+) requests in")


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    check_tools()
    paths = [p for p in PATHS if not options.only or p.server.name in options.only]
    if REFERENCE not in paths:
        paths.insert(0, REFERENCE)
    servers = list({p.server.name: p.server for p in paths}.values())
    cpu_us: dict[Measure, list[float]] = {p: [] for p in paths}
    for number in range(options.rounds):
        print(f"round {number + 1} of {options.rounds}", file=sys.stderr)
        for server in servers:
            with running(server, options.database_url) as (base, group):
                for path in (p for p in paths if p.server is server):
                    send(base + path.path, options.connections, 1)  # warm up
                    before = cpu_seconds(group)
                    served = send(base + path.path, options.connections, options.duration)
                    cpu_us[path].append((cpu_seconds(group) - before) / served * 1e6)
    print_table(cpu_us, options)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=default_url(), help="PostgreSQL URL.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="Seconds per wrk run.")
    parser.add_argument("--connections", type=int, default=128, help="wrk's concurrency.")
    parser.add_argument("--only", nargs="*", help="Measure only these servers' paths.")
    return parser.parse_args(argv)


def send(url: str, connections: int, seconds: int) -> int:
    """Load *url* for *seconds*; the number of requests served."""
    command = [
        *("taskset", "-c", WRK_CORES, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"),
        *("--timeout", "30s", url),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        print(f"bench: {url}: {output}", file=sys.stderr)
    served = _REQUESTS.search(output)
    if served is None:
        sys.exit(f"bench: cannot read wrk's output:\n{output}")
    return int(served.group(1))


def print_table(cpu_us: dict[Measure, list[float]], options: argparse.Namespace) -> None:
    print(f"\n{machine()}")
    print(
        f"server CPU per request: {options.rounds} rounds of {options.duration} s "
        f"at c={options.connections}; median (lowest-highest), and ratio to {REFERENCE.name}"
    )
    reference = cpu_us[REFERENCE]
    width = max(len(p.name) for p in cpu_us)
    for path, values in cpu_us.items():
        ratios = [v / r for v, r in zip(values, reference, strict=True)]
        print(
            f"  {path.name:<{width}}  {statistics.median(values):6.0f} us "
            f"({min(values):.0f}-{max(values):.0f})  {statistics.median(ratios):5.2f}x"
        )


if __name__ == "__main__":
    main()
