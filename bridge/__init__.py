"""flask2fastapi: move a Flask app to FastAPI one route at a time.

The toolkit does three jobs, one private package each; users import from
``bridge`` alone, and the names below are the public API::

    bridge/
    ├── _serving/   the hybrid server: routing by the manifest, the WSGI bridge,
    │               loading the apps
    ├── _porting/   writing ports: Flask's request idioms, responses, errors and
    │               session cookie, the auth extensions, pagination, repository
    │               runners, the databases, streamed responses
    ├── _shadow/    proving ports: comparison rules and engine, database changes,
    │               cases, the runner and its report
    ├── _cli.py     the ``flask2fastapi`` command
    └── pytest_plugin.py   the ``shadow`` fixture, loaded by pytest's entry point

Names are imported on first use (:pep:`562`): a Flask process that needs
:func:`run_sync` does not load FastAPI, httpx, a2wsgi or click.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge._exceptions import AsyncDatabaseError as AsyncDatabaseError
    from bridge._exceptions import BridgeError as BridgeError
    from bridge._exceptions import CaseFileError as CaseFileError
    from bridge._exceptions import ConfigurationError as ConfigurationError
    from bridge._exceptions import DatabaseURLError as DatabaseURLError
    from bridge._exceptions import ImportStringError as ImportStringError
    from bridge._exceptions import JSONPathError as JSONPathError
    from bridge._exceptions import ManifestError as ManifestError
    from bridge._exceptions import PageNotFound as PageNotFound
    from bridge._exceptions import RestoreError as RestoreError
    from bridge._exceptions import URLForError as URLForError
    from bridge._porting.asyncdb import AsyncDatabase as AsyncDatabase
    from bridge._porting.asyncdb import DbConnection as DbConnection
    from bridge._porting.asyncdb import DbSession as DbSession
    from bridge._porting.asyncstream import stream_rows_response as stream_rows_response
    from bridge._porting.auth_jwt import FlaskJWT as FlaskJWT
    from bridge._porting.auth_jwt import JWTToken as JWTToken
    from bridge._porting.auth_login import FlaskLogin as FlaskLogin
    from bridge._porting.database import DatabaseSettings as DatabaseSettings
    from bridge._porting.database import configure_sqlite as configure_sqlite
    from bridge._porting.db_errors import is_bad_value as is_bad_value
    from bridge._porting.db_errors import is_database_unavailable as is_database_unavailable
    from bridge._porting.error_envelope import install_error_envelope as install_error_envelope
    from bridge._porting.flask_context import install_flask_answers as install_flask_answers
    from bridge._porting.flask_cycle import flask_g as flask_g
    from bridge._porting.flask_cycle import install_flask_behaviour as install_flask_behaviour
    from bridge._porting.pagination import Page as Page
    from bridge._porting.pagination import page_args as page_args
    from bridge._porting.pagination import paginate as paginate
    from bridge._porting.repository import Add as Add
    from bridge._porting.repository import Delete as Delete
    from bridge._porting.repository import Flush as Flush
    from bridge._porting.repository import Operation as Operation
    from bridge._porting.repository import execute as execute
    from bridge._porting.repository import run_async as run_async
    from bridge._porting.repository import run_sync as run_sync
    from bridge._porting.repository import scalar as scalar
    from bridge._porting.repository import scalars as scalars
    from bridge._porting.request import arg as arg
    from bridge._porting.request import arg_list as arg_list
    from bridge._porting.request import args as args
    from bridge._porting.request import files as files
    from bridge._porting.request import form as form
    from bridge._porting.request import get_json as get_json
    from bridge._porting.request import remote_addr as remote_addr
    from bridge._porting.request import url_for as url_for
    from bridge._porting.responses import FlaskJSONResponse as FlaskJSONResponse
    from bridge._porting.responses import flask_redirect as flask_redirect
    from bridge._porting.sessions import FlaskSessionConfig as FlaskSessionConfig
    from bridge._porting.sessions import FlaskSessionMiddleware as FlaskSessionMiddleware
    from bridge._porting.streaming import RowStream as RowStream
    from bridge._porting.streaming import stream_rows as stream_rows
    from bridge._porting.webargs_parse import webargs_parse as webargs_parse
    from bridge._serving.hybrid import HybridApp as HybridApp
    from bridge._serving.hybrid import build_hybrid as build_hybrid
    from bridge._serving.hybrid import hybrid_from_env as hybrid_from_env
    from bridge._serving.manifest import Manifest as Manifest
    from bridge._serving.manifest import RouteState as RouteState
    from bridge._serving.manifest import load_manifest as load_manifest
    from bridge._shadow.cases import Case as Case
    from bridge._shadow.cases import load_cases as load_cases
    from bridge._shadow.compare import Snapshot as Snapshot
    from bridge._shadow.compare import compare_responses as compare_responses
    from bridge._shadow.recorder import ChangeRecorder as ChangeRecorder
    from bridge._shadow.rules import Rules as Rules

# Public name -> the private module that defines it.
_MODULES = {
    "AsyncDatabaseError": "bridge._exceptions",
    "BridgeError": "bridge._exceptions",
    "CaseFileError": "bridge._exceptions",
    "ConfigurationError": "bridge._exceptions",
    "DatabaseURLError": "bridge._exceptions",
    "ImportStringError": "bridge._exceptions",
    "JSONPathError": "bridge._exceptions",
    "ManifestError": "bridge._exceptions",
    "PageNotFound": "bridge._exceptions",
    "RestoreError": "bridge._exceptions",
    "URLForError": "bridge._exceptions",
    "AsyncDatabase": "bridge._porting.asyncdb",
    "DbConnection": "bridge._porting.asyncdb",
    "DbSession": "bridge._porting.asyncdb",
    "stream_rows_response": "bridge._porting.asyncstream",
    "FlaskJWT": "bridge._porting.auth_jwt",
    "JWTToken": "bridge._porting.auth_jwt",
    "FlaskLogin": "bridge._porting.auth_login",
    "DatabaseSettings": "bridge._porting.database",
    "configure_sqlite": "bridge._porting.database",
    "is_bad_value": "bridge._porting.db_errors",
    "is_database_unavailable": "bridge._porting.db_errors",
    "install_error_envelope": "bridge._porting.error_envelope",
    "install_flask_answers": "bridge._porting.flask_context",
    "flask_g": "bridge._porting.flask_cycle",
    "install_flask_behaviour": "bridge._porting.flask_cycle",
    "Page": "bridge._porting.pagination",
    "page_args": "bridge._porting.pagination",
    "paginate": "bridge._porting.pagination",
    "Add": "bridge._porting.repository",
    "Delete": "bridge._porting.repository",
    "Flush": "bridge._porting.repository",
    "Operation": "bridge._porting.repository",
    "execute": "bridge._porting.repository",
    "run_async": "bridge._porting.repository",
    "run_sync": "bridge._porting.repository",
    "scalar": "bridge._porting.repository",
    "scalars": "bridge._porting.repository",
    "arg": "bridge._porting.request",
    "arg_list": "bridge._porting.request",
    "args": "bridge._porting.request",
    "files": "bridge._porting.request",
    "form": "bridge._porting.request",
    "get_json": "bridge._porting.request",
    "remote_addr": "bridge._porting.request",
    "url_for": "bridge._porting.request",
    "FlaskJSONResponse": "bridge._porting.responses",
    "flask_redirect": "bridge._porting.responses",
    "FlaskSessionConfig": "bridge._porting.sessions",
    "FlaskSessionMiddleware": "bridge._porting.sessions",
    "RowStream": "bridge._porting.streaming",
    "stream_rows": "bridge._porting.streaming",
    "webargs_parse": "bridge._porting.webargs_parse",
    "HybridApp": "bridge._serving.hybrid",
    "build_hybrid": "bridge._serving.hybrid",
    "hybrid_from_env": "bridge._serving.hybrid",
    "Manifest": "bridge._serving.manifest",
    "RouteState": "bridge._serving.manifest",
    "load_manifest": "bridge._serving.manifest",
    "Case": "bridge._shadow.cases",
    "load_cases": "bridge._shadow.cases",
    "Snapshot": "bridge._shadow.compare",
    "compare_responses": "bridge._shadow.compare",
    "ChangeRecorder": "bridge._shadow.recorder",
    "Rules": "bridge._shadow.rules",
}

__all__ = sorted(_MODULES)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
