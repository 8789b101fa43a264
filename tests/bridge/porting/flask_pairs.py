"""A Flask app and its port, compared by the shadow engine, for the porting tests.

The tests of Flask's idioms and extensions send each case to both apps the
way a shadow run does: the port behind the hybrid (so ``app.state.flask_app``
is set, as when served), the legacy app in-process, and every difference of
status, headers, cookies and body reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from flask import Flask

from bridge._serving.manifest import Manifest
from bridge._shadow.cases import Case
from bridge._shadow.compare import Snapshot
from bridge._shadow.runner import Outcome, ShadowRunner
from bridge._shadow.session import shadow_session


@asynccontextmanager
async def shadow_pair(flask_app: Flask, port: FastAPI) -> AsyncIterator[ShadowRunner]:
    """A shadow runner for the two apps, every route of the port ported, no database."""
    async with shadow_session(flask_app, port, Manifest(), aa=False) as runner:
        yield runner


async def same(runner: ShadowRunner, case: Case | None = None, **fields: Any) -> Snapshot:
    """Run the case on both sides; fail unless the port answered it, as the legacy app did.

    Returns the legacy answer, for the test to check it is the one it means.
    """
    case = case or Case.from_mapping(fields)
    result = await runner.run(case)
    assert result.ported, f"{case.label} did not reach the port"
    assert result.outcome is Outcome.SAME, result.report()
    return await runner.legacy(runner.request(case))
