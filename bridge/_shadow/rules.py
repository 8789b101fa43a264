"""How a route's answers are compared: the ``Rules`` a manifest entry carries.

Read from the manifest (``[routes."GET /x"] = { state = "async", ignore = [...] }``)
with no comparison engine behind them: :mod:`bridge._shadow.compare` applies them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bridge._exceptions import ManifestError
from bridge._shadow.jsonpath import EXAMPLE, JSONPathError, parse_pattern
from bridge._shadow.variation import KINDS

_PATH_RULES = ("ignore", "unordered", "datetimes")
_HEADER_RULES = ("ignore_headers", "headers")
_TOLERANCES = ("tolerance", "datetime_tolerance")
_LIST_RULES = (*_PATH_RULES, *_HEADER_RULES, "ignore_columns")

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",  # framing: the body itself is compared
    }
)
"""Never compared: they describe one hop of the connection (RFC 9110 7.6.1), not the answer."""

VOLATILE_HEADERS = frozenset({"date", "server", "age", "x-request-id", "x-bridge-side"})
"""Not compared unless a rule's ``headers`` names them: they differ between any two
answers, or name the server. Every other header is compared; the A/A run finds the
rest of an app's volatile ones."""

TRANSPORT_HEADERS = HOP_BY_HOP_HEADERS | VOLATILE_HEADERS
"""Not compared by default."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class Rules:
    """How one route's answers are compared; every rule only loosens where the user said so.

    Paths are JSON path patterns (see :mod:`bridge._shadow.jsonpath`). ``ignore``
    also covers everything below the places it matches; ``unordered`` and
    ``datetimes`` apply to exactly the places they match.
    """

    ignore: tuple[str, ...] = ()
    """Places whose values are not compared, present or not: ``$.items[*].updated_at``."""
    unordered: tuple[str, ...] = ()
    """Lists compared as multisets."""
    tolerance: float = 0.0
    """Absolute tolerance between two numbers; above 0 an int and a float may be equal."""
    datetimes: tuple[str, ...] = ()
    """Strings compared as instants: ISO 8601 (naive is UTC) or HTTP dates."""
    datetime_tolerance: float = 0.0
    """Seconds allowed between two instants."""
    ignore_headers: tuple[str, ...] = ()
    """Headers not compared though they matter by default; ``set-cookie`` skips cookies."""
    headers: tuple[str, ...] = ()
    """Volatile headers compared all the same (every other header is compared anyway)."""
    ignore_columns: tuple[str, ...] = ()
    """``table.column`` not compared in database changes (see :mod:`bridge._shadow.changes`)."""
    vary: tuple[tuple[str, str], ...] = ()
    """``(path, kind)``: places whose value may vary, but only as the kind says (see
    :mod:`bridge._shadow.variation`); what the A/A run proposes for noise."""

    def __post_init__(self) -> None:
        for name in _LIST_RULES:
            values = tuple(getattr(self, name))
            if name in _HEADER_RULES:
                values = tuple(value.lower() for value in values)
            object.__setattr__(self, name, values)
        for name in _PATH_RULES:
            for pattern in getattr(self, name):
                parse_pattern(pattern)
        object.__setattr__(self, "vary", tuple((p, k) for p, k in dict(self.vary).items()))
        for pattern, kind in self.vary:
            parse_pattern(pattern)
            if kind not in KINDS:
                raise ValueError(f"vary kind must be one of {', '.join(KINDS)}, got {kind!r}")
        for name in _TOLERANCES:
            if not _is_tolerance(getattr(self, name)):
                raise ValueError(
                    f"{name} must be a number of 0 or more, got {getattr(self, name)!r}"
                )

    def merge(self, other: Rules) -> Rules:
        """Both rules at once: the union of the lists, the larger tolerances."""
        lists = {
            name: tuple(dict.fromkeys((*getattr(self, name), *getattr(other, name))))
            for name in _LIST_RULES
        }
        return Rules(
            **lists,
            vary=(*self.vary, *((p, k) for p, k in other.vary if p not in dict(self.vary))),
            tolerance=max(self.tolerance, other.tolerance),
            datetime_tolerance=max(self.datetime_tolerance, other.datetime_tolerance),
        )

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, where: str, other_keys: Iterable[str] = ()
    ) -> Rules:
        """The rules of a manifest table; *where* names it in errors (``[routes."GET /x"]``).

        *other_keys* are keys of the same table that the caller reads itself,
        such as ``state``. Raises :class:`~bridge._exceptions.ManifestError`.
        """
        allowed = {f.name for f in fields(cls)} | set(other_keys)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ManifestError(
                f"unknown key {unknown[0]!r} in {where}: "
                f"expected one of {', '.join(sorted(allowed))}"
            )
        values: dict[str, Any] = {}
        for key in _PATH_RULES:
            if key in data:
                values[key] = _paths(data[key], key, where)
        for key in _HEADER_RULES:
            if key in data:
                values[key] = _header_names(data[key], key, where)
        if "vary" in data:
            values["vary"] = _vary(data["vary"], where)
        if "ignore_columns" in data:
            values["ignore_columns"] = _columns(data["ignore_columns"], where)
        for key in _TOLERANCES:
            if key in data:
                if not _is_tolerance(data[key]):
                    raise ManifestError(
                        f"{where} {key} must be a number of 0 or more, such as 0.5, "
                        f"got {data[key]!r}"
                    )
                values[key] = data[key]
        return cls(**values)


def _is_tolerance(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _strings(value: object, key: str, where: str, example: str) -> list[str]:
    # A TOML string is iterable too: "$.a" must not become ["$", ".", "a"].
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where} {key} must be a list such as [{example}], got {value!r}")
    return list(value)


def _paths(value: object, key: str, where: str) -> tuple[str, ...]:
    paths = _strings(value, key, where, EXAMPLE)
    for path in paths:
        try:
            parse_pattern(path)
        except JSONPathError as exc:  # its one line is in the message, with the place
            raise ManifestError(f"{where} {key}: {exc}") from None
    return tuple(paths)


def _header_names(value: object, key: str, where: str) -> tuple[str, ...]:
    names = [name.lower() for name in _strings(value, key, where, '"etag"')]
    for name in names:
        if not _TOKEN.fullmatch(name):
            raise ManifestError(
                f'{where} {key}: {name!r} is not a header name; write names such as "etag"'
            )
        if key == "headers" and name in HOP_BY_HOP_HEADERS:
            raise ManifestError(
                f"{where} headers: {name!r} describes the connection "
                "and is never compared; remove it"
            )
    return tuple(names)


def _columns(value: object, where: str) -> tuple[str, ...]:
    columns = _strings(value, "ignore_columns", where, '"orders.updated_at"')
    for column in columns:
        table, _, name = column.rpartition(".")
        if not table or not name:
            raise ManifestError(
                f'{where} ignore_columns: {column!r} is not "table.column"; '
                'write names such as "orders.updated_at"'
            )
    return tuple(columns)


def _vary(value: object, where: str) -> tuple[tuple[str, str], ...]:
    example = '{ "$.created_at" = "instant" }'
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestError(f"{where} vary must be a table such as {example}, got {value!r}")
    for path, kind in value.items():
        if kind not in KINDS:
            raise ManifestError(
                f"{where} vary: {path!r} = {kind!r} is not a kind of variation; "
                f"write one of {', '.join(KINDS)}"
            )
    _paths(list(value), "vary", where)
    return tuple(value.items())
