"""The names ``import bridge`` offers are exactly the documented ones, and cost little."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bridge

EXPORTED = {
    "url_for",
    "get_json",
    "configure_sqlite",
    "args",
    "arg",
    "arg_list",
    "form",
    "files",
    "remote_addr",
    "ChangeRecorder",
    "Add",
    "AsyncDatabase",
    "AsyncDatabaseError",
    "BridgeError",
    "Case",
    "CaseFileError",
    "ConfigurationError",
    "DatabaseSettings",
    "DatabaseURLError",
    "DbConnection",
    "DbSession",
    "Delete",
    "FlaskJSONResponse",
    "FlaskLogin",
    "FlaskJWT",
    "JWTToken",
    "install_flask_answers",
    "webargs_parse",
    "FlaskSessionConfig",
    "FlaskSessionMiddleware",
    "Flush",
    "HybridApp",
    "ImportStringError",
    "JSONPathError",
    "Manifest",
    "ManifestError",
    "Operation",
    "Page",
    "PageNotFound",
    "RestoreError",
    "RouteState",
    "URLForError",
    "Rules",
    "Snapshot",
    "build_hybrid",
    "hybrid_from_env",
    "compare_responses",
    "execute",
    "flask_redirect",
    "install_error_envelope",
    "install_flask_behaviour",
    "flask_g",
    "is_bad_value",
    "is_database_unavailable",
    "load_cases",
    "load_manifest",
    "page_args",
    "paginate",
    "run_async",
    "run_sync",
    "scalar",
    "scalars",
    "RowStream",
    "stream_rows",
    "stream_rows_response",
}

# Type aliases have no __module__ of their own.
ALIASES = {"DbConnection", "DbSession", "Operation"}


def test_exported_members() -> None:
    assert set(bridge.__all__) == EXPORTED


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_each_name_resolves_to_a_private_module(name: str) -> None:
    value = getattr(bridge, name)
    if name not in ALIASES:
        assert value.__module__.startswith("bridge._"), name


def test_dir_lists_the_public_names() -> None:
    assert set(dir(bridge)) >= EXPORTED


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        getattr(bridge, "nothing_here")  # noqa: B009


HEAVY = ("fastapi", "starlette", "httpx", "a2wsgi", "click", "uvicorn")


def loaded_after(code: str) -> set[str]:
    """The heavy packages a fresh interpreter has imported after running *code*."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return {name for name in output.split() if name.split(".")[0] in HEAVY}


@pytest.mark.parametrize(
    "code",
    [
        "import bridge",
        "from bridge import run_sync, Operation, Add, Flush, Delete, DatabaseSettings",
        "from bridge import execute, scalar, scalars",
        "from bridge import Page, paginate, page_args, BridgeError",
        "from bridge import is_database_unavailable, is_bad_value",
        "from bridge import stream_rows, RowStream",
        "import bridge._porting.repository, bridge._porting.database",
    ],
)
def test_what_a_flask_process_imports_loads_no_async_stack(code: str) -> None:
    assert loaded_after(code) == set()
