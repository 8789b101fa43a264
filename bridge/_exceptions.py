"""The toolkit's exceptions, rooted at one class.

    BridgeError
    ├── ConfigurationError        start-up stops; the CLI prints it and exits 2
    │   ├── DatabaseURLError      an unusable DATABASE_URL or a missing driver
    │   ├── ManifestError         migration.toml cannot be read or names unknown routes
    │   ├── ImportStringError     "module:attribute" names nothing usable
    │   └── CaseFileError         a shadow cases file has a line that is not a case
    ├── RestoreError              a shadow run could not put the database back as it was
    ├── PageNotFound              a page number past the end (Flask-SQLAlchemy's abort(404))
    ├── JSONPathError             a JSON path or pattern that does not parse (a ValueError)
    ├── AsyncDatabaseError        DbSession or the engine used before the app started it,
    │                             or on an app it is not installed on; a lazy load in a
    │                             port (a RuntimeError)
    └── URLForError               url_for() asked for what it does not reproduce (a TypeError)

Every message is one line that names the problem and the fix. An error that
translates a lower library's (the OS, TOML, JSON, SQLAlchemy and its driver)
carries it as ``__cause__``. Where a builtin exception was raised before, the
class derives from it too, so ``except ValueError`` and the like keep working.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error raised by the toolkit."""


class ConfigurationError(BridgeError):
    """The configuration cannot work; raised before the server binds its port."""


class DatabaseURLError(ConfigurationError):
    """The database URL is unusable, or the driver it needs is not installed."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ManifestError(ConfigurationError):
    """The manifest cannot be read, or disagrees with the apps it names."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class ImportStringError(ConfigurationError):
    """An import string such as ``"package.module:create_app"`` names nothing usable."""

    def __init__(self, message: str, *, import_string: str) -> None:
        super().__init__(message)
        self.import_string = import_string


class CaseFileError(ConfigurationError):
    """A line of a shadow cases file is not a request case."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line


class RestoreError(BridgeError):
    """The database could not be put back as it was; the restore was rolled back."""

    def __init__(self, message: str, *, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class PageNotFound(BridgeError):
    """The requested page is out of range, where Flask-SQLAlchemy would ``abort(404)``."""

    status_code = 404


class JSONPathError(BridgeError, ValueError):
    """A JSON path or pattern that cannot be parsed; the message says where and how to fix it."""


class AsyncDatabaseError(BridgeError, RuntimeError):
    """An :class:`~bridge.AsyncDatabase` used before its app started it, or missing from the
    app; or a port that loads a relationship lazily."""


class URLForError(BridgeError, TypeError):
    """``url_for()`` was given an argument it does not reproduce, or too many path values."""
