"""The demo's fixtures (tests/demo/conftest.py), for the fuzzing of its routes."""

from __future__ import annotations

from tests.demo.conftest import (  # noqa: F401 - fixtures, found by name
    fastapi_app,
    legacy_app,
    manifest,
    reset_database,
    session_cookie,
)
