"""flask2fastapi: move a Flask app to FastAPI one route at a time.

The modules are the documentation's units; the names most users need are
re-exported here.
"""

from __future__ import annotations

from .asyncdb import AsyncDatabase as AsyncDatabase
from .asyncdb import DbSession as DbSession
from .cases import Case as Case
from .cases import load_cases as load_cases
from .compare import Rules as Rules
from .compare import Snapshot as Snapshot
from .compare import compare_responses as compare_responses
from .database import DatabaseSettings as DatabaseSettings
from .errors import install_error_envelope as install_error_envelope
from .exceptions import BridgeError as BridgeError
from .exceptions import CaseFileError as CaseFileError
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import DatabaseURLError as DatabaseURLError
from .exceptions import ImportStringError as ImportStringError
from .exceptions import ManifestError as ManifestError
from .exceptions import PageNotFound as PageNotFound
from .hybrid import HybridApp as HybridApp
from .hybrid import build_hybrid as build_hybrid
from .manifest import Manifest as Manifest
from .manifest import RouteState as RouteState
from .manifest import load_manifest as load_manifest
from .pagination import Page as Page
from .pagination import page_args as page_args
from .pagination import paginate as paginate
from .repository import Add as Add
from .repository import Delete as Delete
from .repository import Flush as Flush
from .repository import Operation as Operation
from .repository import run_async as run_async
from .repository import run_sync as run_sync
from .responses import FlaskJSONResponse as FlaskJSONResponse
from .responses import flask_redirect as flask_redirect
from .sessions import FlaskSessionConfig as FlaskSessionConfig
from .sessions import FlaskSessionMiddleware as FlaskSessionMiddleware

__version__ = "0.1.0"
