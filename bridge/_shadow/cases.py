"""Shadow cases: the requests a shadow run sends to both sides.

A cases file is JSON Lines, one request per line::

    {"method": "GET", "path": "/api/products?sort=-price"}
    {"method": "POST", "path": "/api/orders", "user": "alice@example.com",
     "json": {"items": [{"product_id": 1, "quantity": 2}]}, "name": "places an order"}

Keys: ``method`` and ``path`` (required); ``headers`` (an object of strings);
a body as ``json`` (any JSON value) or ``body`` (a string); who is asking, as
``user`` (resolved by the manifest's ``[shadow] login`` rule), ``session`` (the
Flask session to sign, such as ``{"user_id": 2}``) or ``cookie`` (a raw
``Cookie`` header); with ``user``, ``login`` (``"session"`` or ``"token"``)
sends that one of the two credentials the rule configures, where the default
sends each it configures; and ``name``, shown in reports. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge._exceptions import CaseFileError
from bridge._serving.manifest import HTTP_METHODS

_KEYS = {"method", "path", "headers", "json", "body", "user", "login", "session", "cookie", "name"}
LOGINS = ("session", "token")


@dataclass(frozen=True)
class Case:
    """One request, sent alike to the legacy route and its port."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    has_json: bool = False
    body: str | None = None
    user: str | None = None
    login: str | None = None  # "session" or "token": the one credential the user sends
    session: Mapping[str, Any] | None = None
    cookie: str | None = None
    name: str | None = None
    source: str | None = None  # "file:line", for reports

    @property
    def label(self) -> str:
        """How reports name the case: its name, else its method and path."""
        where = f"{self.source} " if self.source else ""
        return f"{where}{self.name or f'{self.method} {self.path}'}"

    def to_mapping(self) -> dict[str, Any]:
        """The case as a line of a cases file holds it: :meth:`from_mapping` reads it back."""
        data: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.headers:
            data["headers"] = dict(self.headers)
        if self.has_json:
            data["json"] = self.json
        optional = {
            "body": self.body,
            "user": self.user,
            "login": self.login,
            "session": None if self.session is None else dict(self.session),
            "cookie": self.cookie,
            "name": self.name,
        }
        data.update((key, value) for key, value in optional.items() if value is not None)
        return data

    @classmethod
    def from_mapping(cls, data: Any, *, source: str | None = None) -> Case:
        """Build a case from a decoded JSON object; raise ``ValueError`` naming the bad key."""
        if not isinstance(data, dict):
            raise ValueError("a case must be a JSON object")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(
                f"unknown key {unknown[0]!r}: expected some of {', '.join(sorted(_KEYS))}"
            )
        method = data.get("method")
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            raise ValueError(
                f"method must be one of {', '.join(sorted(HTTP_METHODS))}, got {method!r}"
            )
        path = data.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must be a string starting with /, got {path!r}")
        if "json" in data and "body" in data:
            raise ValueError("give the body as json or as body, not both")
        headers = data.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("headers must be an object of strings")
        session = data.get("session")
        if session is not None and not isinstance(session, dict):
            raise ValueError("session must be an object")
        for key in ("body", "user", "cookie", "name"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValueError(f"{key} must be a string")
        login = data.get("login")
        if login is not None and login not in LOGINS:
            raise ValueError(f'login must be "session" or "token", got {login!r}')
        if login is not None and data.get("user") is None:
            raise ValueError("login chooses how the case's user logs in: give user too")
        who = [key for key in ("user", "session", "cookie") if data.get(key) is not None]
        if len(who) > 1:
            raise ValueError(f"give one of user, session and cookie, not {' and '.join(who)}")
        return cls(
            method=method.upper(),
            path=path,
            headers=headers,
            json=data.get("json"),
            has_json="json" in data,
            body=data.get("body"),
            user=data.get("user"),
            login=login,
            session=session,
            cookie=data.get("cookie"),
            name=data.get("name"),
            source=source,
        )


def load_cases(path: str | Path) -> list[Case]:
    """Read a JSON Lines cases file; :class:`CaseFileError` names the first bad line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        # "No such file or directory" is all the OS would add.
        raise CaseFileError(
            "no such file: give the path of a JSON Lines cases file", path=name
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"cannot read the file: {exc}", path=name) from exc
    cases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise CaseFileError(f"not valid JSON: {exc}", path=name, line=number) from exc
        try:
            cases.append(Case.from_mapping(data, source=f"{Path(name).name}:{number}"))
        except ValueError as exc:
            # Our own one-line message, now with the file and line: the same error.
            raise CaseFileError(str(exc), path=name, line=number) from None
    if not cases:
        raise CaseFileError("no cases: write one JSON object per line", path=name)
    return cases
