"""Finding the two apps from import strings such as ``"legacy_flask_app:create_app"``.

The attribute may be the app itself or a factory called with no arguments, as
``flask --app`` accepts. A bare module name looks for ``app``, then
``create_app``. Modules are found in the manifest's folder, then the current
folder (as ``flask --app`` and uvicorn look), then the installed packages, so a
project runs from its checkout without being installed.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask

from bridge._exceptions import ImportStringError, ManifestError

if TYPE_CHECKING:
    from fastapi import FastAPI

T = TypeVar("T")

_DEFAULT_ATTRIBUTES = ("app", "create_app")


def load_flask_app(import_string: str | None, manifest_path: str | None = None) -> Flask:
    return _load(import_string, Flask, "flask", manifest_path)


def load_fastapi_app(import_string: str | None, manifest_path: str | None = None) -> FastAPI:
    """The FastAPI app *import_string* names; with none, an app with no routes.

    Putting a Flask app behind the hybrid comes before porting anything, so a
    manifest need not name a FastAPI app until a route is async.
    """
    from fastapi import FastAPI

    if not import_string:
        return no_ports_app()
    return _load(import_string, FastAPI, "fastapi", manifest_path)


def no_ports_app() -> FastAPI:
    """The FastAPI app of a manifest that names none: it serves no URL at all."""
    from fastapi import FastAPI

    # FastAPI's docs and OpenAPI URLs would be URLs the legacy app never had.
    return FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def import_object(import_string: str, manifest_path: str | None = None) -> Any:
    """Import ``"module:attribute"`` (or ``"module"``) and return the object.

    The folder of *manifest_path* and the current folder go first on ``sys.path``.
    """
    module_name, _, attribute = import_string.partition(":")
    module_name = module_name.strip()
    if not module_name:
        raise ImportStringError(
            f"{import_string!r} names no module: write it as 'package.module:attribute'",
            import_string=import_string,
        )
    _put_on_path(manifest_path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise ImportStringError(
                f"cannot import {module_name!r} named by {import_string!r}: "
                "check the spelling, or run from (or keep the manifest in) the folder "
                "that contains it",
                import_string=import_string,
            ) from exc
        raise
    names = [attribute.strip()] if attribute else list(_DEFAULT_ATTRIBUTES)
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportStringError(
        f"module {module_name!r} has no attribute {' or '.join(map(repr, names))} "
        f"(named by {import_string!r})",
        import_string=import_string,
    )


def _put_on_path(manifest_path: str | None) -> None:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # like `flask --app` and uvicorn: the current folder imports
    if manifest_path is not None:
        folder = str(Path(manifest_path).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _load(import_string: str | None, kind: type[T], key: str, manifest_path: str | None) -> T:
    if not import_string:
        raise ManifestError(
            f'[apps] {key} is missing: name the app, such as {key} = "package:create_app"',
            path=manifest_path,
        )
    found = import_object(import_string, manifest_path)
    if not isinstance(found, kind) and inspect.isroutine(found):
        found = found()  # a factory, as `flask --app` accepts
    if not isinstance(found, kind):
        raise ImportStringError(
            f"{import_string!r} gave {type(found).__name__}, not a {kind.__name__} app",
            import_string=import_string,
        )
    return found
