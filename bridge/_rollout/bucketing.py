"""Which users a canary serves from the port: a stable bucket per user.

Each request is given a key (``[rollout] bucket_key``): the client address, a
header, a cookie, or a value of the Flask session such as the logged-in user.
The key is hashed into one of :data:`BUCKETS` buckets; a route at ``percent``
serves buckets below ``percent * 100`` from the port. The hash does not depend
on the route or the percentage, so a user stays on one side across requests,
workers and machines, and raising the percentage only ever adds users.

Nothing here does I/O; reading the session is the caller's (see
:class:`Bucketer`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import Scope
from werkzeug.sansio.http import parse_cookie

#: Buckets per 100 %: a percentage is honoured to two decimals.
BUCKETS = 10_000

#: Reads the Flask session of a request; ``None`` when there is none or it is not valid.
SessionReader = Callable[[Scope], Mapping[str, Any] | None]


def bucket(key: str) -> int:
    """The bucket of *key*, ``0 <= bucket < BUCKETS``, the same in every process."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def serves_port(key: str, percent: float) -> bool:
    """Whether a canary at *percent* (0 to 100) serves the user of *key* from the port."""
    return bucket(key) < round(percent * BUCKETS / 100)


class Bucketer:
    """The bucketing key of a request, as ``[rollout] bucket_key`` says.

    ``"client"``, ``"header:NAME"``, ``"cookie:NAME"`` or ``"session:NAME"``;
    when the named value is absent, the client address. *read_session* opens
    the Flask session of a request; only ``session:`` keys call it.
    """

    def __init__(self, spec: str, read_session: SessionReader | None = None) -> None:
        kind, _, name = spec.partition(":")
        self.kind, self.name = kind, name
        self.read_session = read_session
        self._header = name.lower().encode("latin-1") if kind == "header" else b""

    def key_for(self, scope: Scope) -> str:
        """The request's key; a named value is kept apart from any address by a prefix."""
        value = self._named(scope) if self.kind != "client" else None
        if value is not None:
            return f"{self.kind}:{value}"
        client = scope.get("client")
        return f"client:{client[0] if client else ''}"

    def _named(self, scope: Scope) -> str | None:
        if self.kind == "header":
            for name, value in scope.get("headers", ()):
                if name == self._header:
                    return str(value.decode("latin-1"))
            return None
        if self.kind == "cookie":
            return _cookie(scope, self.name)
        if self.kind == "session" and self.read_session is not None:
            session = self.read_session(scope)
            value = None if session is None else session.get(self.name)
            return None if value is None else str(value)
        return None


def _cookie(scope: Scope, name: str) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            found = parse_cookie(value.decode("latin-1")).get(name)
            if found is not None:
                return str(found)
    return None
