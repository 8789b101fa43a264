"""Settings both demo apps read the same way."""

from __future__ import annotations

import os

# Only for running the demo locally: anyone can forge sessions signed with it.
# Set SECRET_KEY in the environment anywhere else.
DEV_SECRET_KEY = "flask2fastapi-dev-only-secret-key"


def secret_key() -> str:
    """The key that signs the Flask session cookie, on both sides."""
    return os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
