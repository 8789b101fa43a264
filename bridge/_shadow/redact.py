"""Hiding secrets and personal data from requests and responses before they are kept.

A recorded mismatch or a request sampled from live traffic is written where
operators read it: a database table, a cases file, a terminal. A
:class:`Redactor` replaces what must not get there, before anything is written:

- **headers** by name: credentials (``Authorization``, ``Cookie``,
  ``Set-Cookie``, ...), whatever their value;
- **fields** by name, in JSON bodies (at any depth), urlencoded forms and query
  strings: ``password``, ``token``, ``email`` and the like. A name matches
  when it contains one of the names, case-insensitively, so ``new_password``
  and ``X-Refresh-Token`` go too;
- **bodies it cannot read field by field** (multipart, binary): replaced
  whole by a note of their type and size.

The manifest adds names to the defaults with ``[shadow] redact_fields`` and
``redact_headers``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from bridge._media import is_json, parse_media_type

REDACTED = "[redacted]"

DEFAULT_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrf-token",
    }
)

DEFAULT_FIELDS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "email",
        "credit_card",
        "card_number",
        "cvv",
        "ssn",
    }
)

_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Redactor:
    """Replaces secret headers and fields with :data:`REDACTED`; names are lower case."""

    fields: frozenset[str] = DEFAULT_FIELDS
    headers: frozenset[str] = DEFAULT_HEADERS

    def is_secret_header(self, name: str) -> bool:
        return name.lower() in self.headers

    def is_secret_field(self, name: str) -> bool:
        name = name.lower()
        return any(secret in name for secret in self.fields)

    def header_pairs(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Header name and value pairs, the secret values replaced."""
        return [(name, REDACTED if self.is_secret_header(name) else value) for name, value in pairs]

    def query(self, query_string: str) -> str:
        """A query string with the values of secret fields replaced."""
        if not query_string:
            return query_string
        pairs = parse_qsl(query_string, keep_blank_values=True)
        return urlencode(self._pairs(pairs), safe="[]")

    def json(self, value: Any) -> Any:
        """Decoded JSON with the values of secret keys replaced, at any depth."""
        if isinstance(value, dict):
            return {
                key: REDACTED if self.is_secret_field(str(key)) else self.json(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.json(item) for item in value]
        return value

    def body(self, body: bytes, content_type: str | None) -> bytes:
        """A request or response body with its secrets replaced.

        JSON and urlencoded forms keep their shape; text of other types is kept
        as it is; a body that can't be read field by field (multipart, binary,
        JSON that does not parse) becomes a note of its type and size.
        """
        if not body:
            return body
        media_type = parse_media_type(content_type or "")[0]
        if is_json(content_type or ""):
            try:
                data = json.loads(body)
            except ValueError:
                return self._note(body, media_type)
            return json.dumps(self.json(data), ensure_ascii=False).encode()
        if media_type == _FORM:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return self._note(body, media_type)
            return self.query(text).encode()
        if media_type.startswith("text/") or not media_type:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                return self._note(body, media_type)
            return body
        return self._note(body, media_type)

    def _pairs(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(name, REDACTED if self.is_secret_field(name) else value) for name, value in pairs]

    @staticmethod
    def _note(body: bytes, media_type: str) -> bytes:
        return f"[{len(body)} bytes of {media_type or 'unknown type'}, not kept]".encode()
