"""The names ``import bridge`` offers are exactly the documented ones."""

from __future__ import annotations

import bridge

EXPORTED = {
    "Add",
    "AsyncDatabase",
    "BridgeError",
    "Case",
    "CaseFileError",
    "ConfigurationError",
    "DatabaseSettings",
    "DatabaseURLError",
    "DbSession",
    "Delete",
    "FlaskJSONResponse",
    "FlaskSessionConfig",
    "FlaskSessionMiddleware",
    "Flush",
    "HybridApp",
    "ImportStringError",
    "Manifest",
    "ManifestError",
    "Operation",
    "Page",
    "PageNotFound",
    "RouteState",
    "Rules",
    "Snapshot",
    "build_hybrid",
    "compare_responses",
    "flask_redirect",
    "install_error_envelope",
    "load_cases",
    "load_manifest",
    "page_args",
    "paginate",
    "run_async",
    "run_sync",
}


def test_exported_members() -> None:
    public = {
        name
        for name, value in vars(bridge).items()
        if (not name.startswith("_") and getattr(value, "__module__", "").startswith("bridge."))
        or name in {"DbSession", "Operation"}
    }
    assert public == EXPORTED


def test_exported_members_come_from_their_modules() -> None:
    for name in EXPORTED - {"DbSession", "Operation"}:
        assert getattr(bridge, name).__module__.startswith("bridge."), name
