"""Settings both demo apps read the same way."""

from __future__ import annotations

import os

# Published with the demo, so anyone can sign a session cookie with it. It lets
# the demo run on a fresh checkout; `flask2fastapi serve` refuses it unless the
# manifest sets [bridge] allow_development_key (the demo's does) and the server
# listens on a loopback address, and then warns. Set SECRET_KEY anywhere else.
DEV_SECRET_KEY = "flask2fastapi-dev-only-secret-key"


def secret_key() -> str:
    """The key that signs the Flask session cookie, on both sides.

    ``SECRET_KEY`` from the environment, else :data:`DEV_SECRET_KEY`. A
    ``SECRET_KEY`` set but empty stays empty, so that a deployment that forgot
    to fill it in is refused instead of falling back to the published key.
    """
    return os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
