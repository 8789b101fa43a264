"""The benchmark's legacy app: Flask + Flask-SQLAlchemy, as a team would write it.

``/hello`` answers a small JSON body without touching the database; ``/io``
waits 10 ms in PostgreSQL (``SELECT pg_sleep(0.01)``), the shape of an
I/O-bound view. The database and its pool come from ``DATABASE_URL`` and the
``DATABASE_*`` options, as in the demo.
"""

from __future__ import annotations

import secrets

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

from bridge import DatabaseSettings

IO_QUERY = "SELECT pg_sleep(0.01)"

db = SQLAlchemy()


def create_app() -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config.update(DatabaseSettings.from_env().flask_config())
    # flask2fastapi serve refuses an app without a session key; the benchmark
    # signs no session, so any secret one does.
    app.config["SECRET_KEY"] = secrets.token_hex()
    db.init_app(app)

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"message": "hello"}

    @app.get("/io")
    def io() -> dict[str, bool]:
        db.session.execute(text(IO_QUERY))
        return {"ok": True}

    @app.get("/io-core")
    def io_core() -> dict[str, bool]:  # ported on DbConnection, the Core path
        db.session.execute(text(IO_QUERY))
        return {"ok": True}

    return app
