"""What a client would notice between the legacy answer and the port's.

:func:`compare_responses` takes two :class:`Snapshot` and returns a
:class:`Comparison`: every difference in status, headers, cookies and body,
each a :class:`Difference` with the place it was found. Everything is reported
by default, including the differences between Flask's and FastAPI's habits (422
against 400, ``{"detail": ...}`` against an error envelope, a trailing
newline); a route's :class:`Rules` loosen the comparison only where the
manifest says so::

    [routes."GET /api/orders"]
    ignore = ["$.items[*].updated_at"]
    unordered = ["$.items"]
    tolerance = 0.001
    datetimes = ["$.created_at"]
    datetime_tolerance = 1
    ignore_headers = ["etag"]
    headers = ["x-total-count"]

What counts as the same:

- **Status**: the same code.
- **Headers**: every one, minus ``ignore_headers``; hop-by-hop headers
  (:data:`~bridge._shadow.rules.HOP_BY_HOP_HEADERS`) never, and the few
  volatile ones (:data:`~bridge._shadow.rules.VOLATILE_HEADERS`: date, server,
  ...) only when ``headers`` names them. Values are compared as the header's grammar defines them: a
  content-type's parameters in any order, vary and allow as sets, and so on.
- **Cookies**: by name and attributes (path, domain, secure, httponly,
  samesite, max-age, partitioned, whether it expires at all, whether it is a
  deletion), never by value, which is signed and timestamped. When both sides
  delete a cookie only path and domain are compared: they decide which cookie
  goes.
- **JSON bodies** (when both content types are JSON and both bodies parse) as
  data: key order and whitespace do not matter, types do, so ``1``, ``1.0``,
  ``"1"`` and ``true`` all differ. A ``tolerance`` above 0 compares any two
  numbers by value, so ``1`` and ``1.0`` are then the same; at 0 an int and
  a float always differ, as a client that formats or type-checks them sees.
  Lists are compared element by element unless ``unordered``, where they are
  matched as multisets. Strings at ``datetimes`` are compared as instants.
- **Other bodies** byte for byte, shown as text when either side is text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import httpx
from werkzeug.http import parse_dict_header, parse_list_header

from bridge._media import is_json, parse_media_type
from bridge._shadow.difference import MISSING as MISSING
from bridge._shadow.difference import Difference as Difference
from bridge._shadow.difference import Missing as Missing
from bridge._shadow.difference import show_value as show_value
from bridge._shadow.jsondiff import compare_json as compare_json
from bridge._shadow.jsonpath import generalize as generalize
from bridge._shadow.jsonpath import is_ignored as is_ignored
from bridge._shadow.rules import HOP_BY_HOP_HEADERS, VOLATILE_HEADERS
from bridge._shadow.rules import TRANSPORT_HEADERS as TRANSPORT_HEADERS
from bridge._shadow.rules import Rules as Rules
from bridge._shadow.variation import Window, instant


@dataclass(frozen=True)
class Snapshot:
    """What a client saw of one response."""

    status: int
    # Names lower-cased, in order; a repeated header (set-cookie) is repeated.
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple((n.lower(), v) for n, v in self.headers))

    @classmethod
    def from_httpx(cls, response: httpx.Response) -> Snapshot:
        """The snapshot of a response whose body has been read (not a stream left open)."""
        return cls(response.status_code, tuple(response.headers.multi_items()), response.content)

    def values(self, name: str) -> list[str]:
        """Every value of the header *name*, in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


def _rank(where: str) -> int:
    if where == "status":
        return 0
    if where.startswith("header "):
        return 1
    if where.startswith("cookie "):
        return 2
    return 3 if where == "body" or where.startswith("$") else 4


@dataclass(frozen=True)
class Comparison:
    """Every difference between two answers."""

    differences: tuple[Difference, ...] = ()

    @property
    def same(self) -> bool:
        """Whether a client could not tell the two answers apart."""
        return not self.differences

    def report(self, legacy_label: str = "legacy", port_label: str = "async") -> str:
        """One line per difference (status, headers, cookies, body), or ``same``."""
        if self.same:
            return "same"
        ordered = sorted(self.differences, key=lambda d: _rank(d.where))
        return "\n".join(d.render(legacy_label, port_label) for d in ordered)


def compare_responses(
    legacy: Snapshot, port: Snapshot, rules: Rules = Rules(), *, window: Window | None = None
) -> Comparison:
    """Every difference a client could notice between *legacy* and *port*.

    *window* is the run's span, which an ``instant`` in ``vary`` must fall in.
    """
    differences: list[Difference] = []
    if legacy.status != port.status:
        differences.append(Difference("status", legacy.status, port.status))
    differences += _header_differences(legacy, port, rules)
    if "set-cookie" not in rules.ignore_headers:
        differences += _cookie_differences(legacy, port)
    differences += _body_differences(legacy, port, rules, window)
    return Comparison(tuple(differences))


# Headers


def _compared(name: str, rules: Rules) -> bool:
    # Cookies are compared apart, by name and attributes.
    if name == "set-cookie" or name in rules.ignore_headers or name in HOP_BY_HOP_HEADERS:
        return False
    return name not in VOLATILE_HEADERS or name in rules.headers


def _header_differences(legacy: Snapshot, port: Snapshot, rules: Rules) -> Iterator[Difference]:
    names = {name for name, _ in (*legacy.headers, *port.headers) if _compared(name, rules)}
    for name in sorted(names):
        # Repeated field lines mean the same as one line joined by commas (RFC 9110 5.3).
        mine, other = legacy.values(name), port.values(name)
        ours, theirs = ", ".join(mine), ", ".join(other)
        where = f"header {name}"
        if not mine:
            yield Difference(where, MISSING, theirs, "extra in async")
        elif not other:
            yield Difference(where, ours, MISSING, "missing in async")
        elif _header_value(name, ours) != _header_value(name, theirs):
            yield Difference(where, ours, theirs)


_CASELESS_SETS = frozenset(
    {"vary", "content-language", "access-control-allow-headers", "access-control-expose-headers"}
)
_SETS = frozenset({"allow", "access-control-allow-methods"})


def _header_value(name: str, value: str) -> object:
    """The value as the header's grammar defines it, so that equal means the same."""
    if name == "content-type":
        return _media_type(value)
    if name in _CASELESS_SETS:
        return frozenset(token.lower() for token in _tokens(value))
    if name in _SETS:
        return frozenset(_tokens(value))
    if name == "cache-control":
        directives = parse_dict_header(value)
        return frozenset((key.lower(), item or "") for key, item in directives.items())
    if name == "content-encoding":
        return tuple(token.lower() for token in _tokens(value))
    return value.strip()


def _tokens(value: str) -> list[str]:
    # Werkzeug's list parser keeps a quoted comma inside its item.
    return [token.strip() for token in parse_list_header(value) if token.strip()]


def _media_type(value: str) -> tuple[str, frozenset[tuple[str, str]]]:
    mimetype, parameters = parse_media_type(value)
    # The charset's value is case-insensitive; other parameters' values may not be.
    pairs = {(k, v.lower() if k == "charset" else v) for k, v in parameters.items()}
    return mimetype, frozenset(pairs)


# Cookies

_FLAGS = frozenset({"secure", "httponly", "partitioned"})


@dataclass(frozen=True)
class _Cookie:
    name: str
    attributes: Mapping[str, str | bool]
    deleted: bool

    def describe(self) -> str:
        value = "(deleted)" if self.deleted else "…"
        attributes = [k if v is True else f"{k}={v}" for k, v in sorted(self.attributes.items())]
        return "; ".join([f"{self.name}={value}", *attributes])


def _parse_cookie(header: str, now: datetime) -> _Cookie:
    first, *rest = header.split(";")
    name, _, value = first.partition("=")
    attributes: dict[str, str | bool] = {}
    expires: datetime | None = None
    for part in rest:
        key, equals, raw = part.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if not key:
            continue
        if key == "expires":
            expires = instant(raw)
            attributes[key] = True  # whether it outlives the browser session, not when
        elif key in _FLAGS or not equals:
            attributes[key] = True
        elif key == "domain":
            attributes[key] = raw.lower().lstrip(".")
        elif key == "samesite":
            attributes[key] = raw.lower()
        else:
            attributes[key] = raw
    if "max-age" in attributes:
        attributes.pop("expires", None)  # Max-Age wins over Expires (RFC 6265 5.3)
    return _Cookie(name.strip(), attributes, _is_deletion(value, attributes, expires, now))


def _is_deletion(
    value: str, attributes: Mapping[str, str | bool], expires: datetime | None, now: datetime
) -> bool:
    if value.strip() in ("", '""'):
        return True
    max_age = attributes.get("max-age")
    if isinstance(max_age, str) and re.fullmatch(r"-?\d+", max_age):
        return int(max_age) <= 0
    return expires is not None and expires <= now


def _cookies(snapshot: Snapshot, now: datetime) -> dict[str, list[_Cookie]]:
    cookies: dict[str, list[_Cookie]] = {}
    for header in snapshot.values("set-cookie"):
        cookie = _parse_cookie(header, now)
        cookies.setdefault(cookie.name, []).append(cookie)
    return cookies


def _cookie_differences(legacy: Snapshot, port: Snapshot) -> Iterator[Difference]:
    now = datetime.now(UTC)
    ours, theirs = _cookies(legacy, now), _cookies(port, now)
    for name in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(name, []), theirs.get(name, [])
        where = f"cookie {name}"
        for mine, other in zip(a, b, strict=False):
            yield from _cookie_pair(where, mine, other)
        for cookie in a[len(b) :]:
            yield Difference(where, cookie.describe(), MISSING, "missing in async")
        for cookie in b[len(a) :]:
            yield Difference(where, MISSING, cookie.describe(), "extra in async")


def _cookie_pair(where: str, legacy: _Cookie, port: _Cookie) -> Iterator[Difference]:
    keys: Iterable[str] = ("domain", "path")  # which cookie a deletion removes
    if legacy.deleted != port.deleted:
        side = "legacy" if legacy.deleted else "async"
        yield Difference(where, legacy.deleted, port.deleted, f"deleted on {side} only")
    elif not legacy.deleted:
        keys = sorted(legacy.attributes.keys() | port.attributes.keys())
    for key in keys:
        mine, other = legacy.attributes.get(key, MISSING), port.attributes.get(key, MISSING)
        if mine == other:
            continue
        if other is MISSING:
            note = f"{key} on legacy only"
        elif mine is MISSING:
            note = f"{key} on async only"
        else:
            note = f"{key} differs"
        yield Difference(where, mine, other, note)


# Bodies


class _Invalid(Enum):
    INVALID = "invalid"


_INVALID = _Invalid.INVALID


def _content_type(snapshot: Snapshot) -> tuple[str, frozenset[tuple[str, str]]]:
    values = snapshot.values("content-type")
    return _media_type(values[0]) if values else ("", frozenset())


def _is_text(content_type: tuple[str, frozenset[tuple[str, str]]]) -> bool:
    kind, parameters = content_type
    return (
        kind.startswith("text/")
        or is_json(kind)
        or kind.endswith(("/xml", "+xml"))
        or any(key == "charset" for key, _ in parameters)
    )


def _charset(*content_types: tuple[str, frozenset[tuple[str, str]]]) -> str:
    for _, parameters in content_types:
        for key, value in parameters:
            if key == "charset":
                return value
    return "utf-8"


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _INVALID


def _body_differences(
    legacy: Snapshot, port: Snapshot, rules: Rules, window: Window | None
) -> list[Difference]:
    ours, theirs = _content_type(legacy), _content_type(port)
    note = ""
    if is_json(ours[0]) and is_json(theirs[0]):
        mine, other = _parse_json(legacy.body), _parse_json(port.body)
        if mine is not _INVALID and other is not _INVALID:
            return compare_json(mine, other, rules, window=window)
        sides = [side for side, v in (("legacy", mine), ("async", other)) if v is _INVALID]
        note = f"not JSON in {' and '.join(sides)}; "
    if legacy.body == port.body:
        return []
    at = _first_difference(legacy.body, port.body)
    sizes = len(legacy.body), len(port.body)
    note += f"differs at byte {at}" + (
        f", {sizes[0]} vs {sizes[1]} bytes" if sizes[0] != sizes[1] else ""
    )
    if not (_is_text(ours) or _is_text(theirs)):
        start = max(0, at - 16)
        return [Difference("body", legacy.body[start : at + 16], port.body[start : at + 16], note)]
    mine_text = _decode(legacy.body, _charset(ours, theirs))
    other_text = _decode(port.body, _charset(theirs, ours))
    char = _first_difference(mine_text, other_text)
    return [Difference("body", _excerpt(mine_text, char), _excerpt(other_text, char), note)]


def _decode(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _first_difference(a: Sequence[Any], b: Sequence[Any]) -> int:
    """The index of the first element that differs, or the shorter length."""
    chunk = 4096
    start = 0
    # Slices compare in C; only the differing chunk is walked in Python.
    while start < min(len(a), len(b)) and a[start : start + chunk] == b[start : start + chunk]:
        start += chunk
    for index in range(start, min(len(a), len(b))):
        if a[index] != b[index]:
            return index
    return min(len(a), len(b))


_EXCERPT = 30


def _excerpt(text: str, at: int) -> str:
    start, end = max(0, at - _EXCERPT), at + _EXCERPT
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
