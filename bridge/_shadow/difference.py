"""A difference, and how reports show one: what every comparer of a shadow run returns.

Responses (:mod:`bridge._shadow.compare`), JSON bodies
(:mod:`bridge._shadow.jsondiff`) and rows (:mod:`bridge._shadow.changes`) are
compared apart; each finds :class:`Difference` values, with :data:`MISSING` on
the side where a thing is absent, and prints them with :func:`show_value`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any


class Missing(Enum):
    """The type of :data:`MISSING`."""

    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing.MISSING
"""The value of a :class:`Difference` on the side where the thing is absent."""


@dataclass(frozen=True)
class Difference:
    """One thing a client would notice, and where: ``status``, ``header etag``,
    ``cookie session``, ``body`` or a JSON path such as ``$.items[0].price``.

    ``legacy`` or ``port`` is :data:`MISSING` where the thing is absent on that side.
    """

    where: str
    legacy: Any
    port: Any
    note: str = ""

    def __str__(self) -> str:
        return self.render()

    def render(self, legacy_label: str = "legacy", port_label: str = "async") -> str:
        """One readable line; the labels replace the words legacy and async, notes included."""
        legacy, port = show_value(self.legacy), show_value(self.port)
        text = f"{self.where}: {legacy_label} {legacy}, {port_label} {port}"
        note = _relabel(self.note, legacy_label, port_label)
        return f"{text} ({note})" if note else text


_SHORTEN_AT = 80


def show_value(value: Any, *, shorten: bool = True) -> str:
    """A value as differences print it: JSON, with database values (datetimes,
    decimals) as ISO strings and numbers, never as Python reprs."""
    if value is MISSING:
        text = "absent"
    elif isinstance(value, bytes):
        text = repr(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=_plain)
    if not shorten or len(text) <= _SHORTEN_AT:
        return text
    return text[: _SHORTEN_AT - 1] + "…"


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _relabel(note: str, legacy_label: str, port_label: str) -> str:
    if (legacy_label, port_label) == ("legacy", "async"):
        return note
    labels = {"legacy": legacy_label, "async": port_label}
    return re.sub(r"\b(legacy|async)\b", lambda m: labels[m[1]], note)


NUMBERS = frozenset({"int", "float"})


def json_kind(value: Any) -> str:
    """A decoded JSON value's type, with ints and floats apart (``"int"``, ``"float"``,
    ``"string"``, ``"array"``...): a client that formats numbers tells 1 from 1.0."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def json_type(value: Any) -> str:
    """Like :func:`json_kind`, with ints and floats both ``"number"``, as JSON has it."""
    kind = json_kind(value)
    return "number" if kind in NUMBERS else kind
