"""The pytest plugin: shadow comparison as a fixture.

Installed with the package and loaded by pytest through the ``pytest11`` entry
point. In a test::

    @pytest.mark.parametrize("path", ["/api/products", "/api/products?sort=-price"])
    def test_product_list_port(shadow, path):
        shadow.check("GET", path)

    CASES = Path(__file__).with_name("shadow_cases.jsonl")

    @pytest.mark.parametrize("case", shadow_cases(CASES))
    def test_every_case(shadow, case):
        shadow.check(case)

``shadow.check`` sends the request to the legacy route and to its port, from
the same database state, and fails the test with the diff when they differ.
The apps and the database come from the manifest and ``DATABASE_URL``;
override the fixtures ``shadow_apps`` and ``shadow_recorder`` to give the
test's own (``shadow_recorder`` may return ``None`` to compare responses only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge._serving.manifest import Manifest, load_manifest
from bridge._shadow.cases import Case, load_cases

# pytest loads this module in every session: the apps' stack (Flask, FastAPI,
# SQLAlchemy, httpx, a2wsgi) is imported by the fixtures, when a test uses them.
if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from bridge._shadow.recorder import ChangeRecorder
    from bridge._shadow.runner import CaseResult, ShadowRunner

__all__ = ["Shadow", "shadow_cases"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "shadow_manifest", "The manifest the shadow fixture reads.", default="migration.toml"
    )
    parser.addoption("--shadow-manifest", help="The manifest the shadow fixture reads.")
    parser.addoption(
        "--shadow-no-aa",
        action="store_true",
        help="Do not run the legacy side twice to tell noise from differences.",
    )


def shadow_cases(path: str | Path) -> list[Any]:
    """The cases of a JSON Lines file as pytest parameters, each named by its label."""
    return [pytest.param(case, id=case.label) for case in load_cases(path)]


class Shadow:
    """Sends requests to both sides of the manifest's apps and compares them."""

    def __init__(self, portal: BlockingPortal, runner: ShadowRunner) -> None:
        self.portal = portal
        self.runner = runner

    def run(self, case: Case | str, path: str | None = None, **fields: Any) -> CaseResult:
        """Run one case (or build it from method, path and the case keys) and return the result."""
        if isinstance(case, str):
            case = Case.from_mapping({"method": case, "path": path, **fields})
        return self.portal.call(self.runner.run, case)

    def check(self, case: Case | str, path: str | None = None, **fields: Any) -> CaseResult:
        """Like :meth:`run`, and fail the test with the diff when the sides differ."""
        from bridge._shadow.runner import Outcome

        result = self.run(case, path, **fields)
        if result.outcome is Outcome.DIFFERENT:
            pytest.fail(result.report(), pytrace=False)
        return result


@pytest.fixture
def shadow_manifest(request: pytest.FixtureRequest) -> Manifest:
    """The manifest: ``--shadow-manifest``, else the ``shadow_manifest`` ini value."""
    path = request.config.getoption("--shadow-manifest") or request.config.getini("shadow_manifest")
    return load_manifest(Path(request.config.rootpath, str(path)))


@pytest.fixture
def shadow_apps(shadow_manifest: Manifest) -> Iterator[Sequence[Any]]:
    """``(flask_app, fastapi_app)``, not started; override to configure them for tests."""
    from bridge._serving.loading import load_fastapi_app, load_flask_app
    from bridge._shadow.runner import dispose_flask_engines

    flask_app = load_flask_app(shadow_manifest.flask_app, shadow_manifest.path)
    yield flask_app, load_fastapi_app(shadow_manifest.fastapi_app, shadow_manifest.path)
    dispose_flask_engines(flask_app)


@pytest.fixture
def shadow_recorder(shadow_apps: Sequence[Any]) -> Iterator[ChangeRecorder | None]:
    """Records and undoes writes to the Flask app's tables on ``DATABASE_URL``.

    Override it for a test database, or to return ``None`` (responses only).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from bridge._porting.database import DatabaseSettings
    from bridge._shadow.recorder import ChangeRecorder
    from bridge._shadow.runner import app_tables

    engine = create_engine(DatabaseSettings.from_env().sync_url, poolclass=NullPool)
    yield ChangeRecorder(engine, tables=app_tables(shadow_apps[0]))
    engine.dispose()


@pytest.fixture
def shadow(
    request: pytest.FixtureRequest,
    shadow_manifest: Manifest,
    shadow_apps: Sequence[Any],
    shadow_recorder: ChangeRecorder | None,
) -> Iterator[Shadow]:
    """Compares the legacy route and its port for requests the test sends."""
    from anyio.from_thread import start_blocking_portal

    from bridge._shadow.session import shadow_session

    flask_app, fastapi_app = shadow_apps
    session = shadow_session(
        flask_app,
        fastapi_app,
        shadow_manifest,
        recorder=shadow_recorder,
        aa=not request.config.getoption("--shadow-no-aa"),
        database=shadow_recorder.engine if shadow_recorder else None,
    )
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(session) as runner,
    ):
        yield Shadow(portal, runner)
