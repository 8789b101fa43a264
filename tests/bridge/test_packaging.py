"""What installing the toolkit puts on a user's machine, and what pytest pays for it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("fastapi", "starlette", "httpx", "a2wsgi", "flask", "sqlalchemy")


def test_the_pytest_plugin_imports_no_app_stack() -> None:
    # pytest loads the plugin in every session, whether or not a test shadows.
    probe = (
        "import sys\n"
        "from bridge.pytest_plugin import Shadow, shadow_cases\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout

    assert {name for name in output.split() if name.split(".")[0] in HEAVY} == set()
