"""In-process micro-benchmark of the Flask app's own request cycle around a port
(``install_flask_behaviour``), each a ratio to a baseline measured in turn with it.

1. Session: a ported route that reads the session, with ``FlaskSessionMiddleware``
   (the baseline) and with the Flask app's ``session_interface``, which for
   Flask's signed cookie runs on the event loop.
2. after_request: the same route with the session only (the baseline) and with
   one app-wide ``after_request`` function as well: the response is held, and
   ``process_response`` runs in a worker thread under a pushed request context.

Run: python -m benchmarks.bench_flask_cycle
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from flask import Flask

from benchmarks.bench_hybrid import Timing, sequential_pair
from bridge._porting.flask_cycle import install_flask_behaviour
from bridge._porting.sessions import FlaskSessionConfig, FlaskSessionMiddleware

SECRET_KEY = "bench-secret"


def flask_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET_KEY

    @app.after_request
    def stamp(response: Any) -> Any:
        response.headers["X-App-Version"] = "1"
        return response

    return app


def port() -> FastAPI:
    app = FastAPI()

    @app.get("/port")
    async def read_session(request: Request) -> dict[str, Any]:
        return {"user": request.session.get("user")}

    return app


def report(label: str, baseline: str, times: tuple[Timing, Timing]) -> None:
    (base_wall, base_cpu), (wall, cpu) = times
    print(
        f"  {label}: {wall * 1e6:6.1f} us ({cpu * 1e6:5.1f} CPU) against {baseline} "
        f"{base_wall * 1e6:6.1f} us ({base_cpu * 1e6:5.1f} CPU): "
        f"{(wall - base_wall) * 1e6:+6.1f} us a request"
    )


async def main() -> None:
    cookie_only = port()
    cookie_only.add_middleware(FlaskSessionMiddleware, config=FlaskSessionConfig(SECRET_KEY))
    session_only = port()
    install_flask_behaviour(session_only, flask_app(), errors=False)
    with_hooks = port()
    install_flask_behaviour(with_hooks, flask_app(), errors=False, after_request=True)

    print("A ported route reading the session, one request at a time, per request:")
    times = await sequential_pair(cookie_only, session_only, "/port")
    report("session_interface", "FlaskSessionMiddleware", times)
    times = await sequential_pair(session_only, with_hooks, "/port")
    report("after_request", "session_interface alone", times)


if __name__ == "__main__":
    asyncio.run(main())
