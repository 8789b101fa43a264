"""What kind of variation a value has between two legacy answers, and whether a port's fits.

Noise narrows a comparison instead of removing it. The A/A run sees a place
take two values and names the kind of variation (:func:`classify`); the port's
value must then be of that kind (:func:`check`): a timestamp written at
``2000-01-01T00:00:00`` is not noise just because legacy's timestamps differ.

Kinds, loosest last:

``instant``
    a date-time (ISO 8601 or HTTP date) inside the run's span, written in
    legacy's form (the same layout, precision and UTC offset).
``token``
    a string of legacy's length over legacy's alphabet: the narrowest usual
    one (hex, letters, letters and digits of one case, base64url, base64)
    that holds legacy's letters and digits, with each other character legacy
    uses (see :func:`alphabet`).
``increasing``
    an integer no smaller than legacy's, as ids from a sequence are.
``type``
    any value of legacy's JSON type.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.http import parse_date

from bridge._shadow.difference import json_type

KINDS = ("instant", "token", "increasing", "type")

Window = tuple[datetime, datetime]
"""The run's span: from before legacy's first request to after the port's answer."""

SLACK = timedelta(seconds=2)
"""Added on both sides of the window: clocks that truncate to the second, and rounding."""

OTHER_CLOCK = timedelta(minutes=1)
"""How far from legacy's value the port's may be when legacy's is outside the run's span."""

_NAMES = re.compile(
    r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b"
)


def instant(text: str) -> datetime | None:
    """An aware datetime from ISO 8601 or an HTTP date; naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return parse_date(text)  # Werkzeug's HTTP date parser: aware, or None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _is_instant(value: Any) -> bool:
    # fromisoformat takes "20240102" too: a string of digits is a token, not a date.
    return isinstance(value, str) and not value.isdigit() and instant(value) is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def classify(first: Any, again: Any) -> str | None:
    """The narrowest kind that both legacy values have; ``None`` when even their JSON
    types differ, so that no kind holds."""
    if _is_instant(first) and _is_instant(again):
        return "instant"
    if (
        isinstance(first, str)
        and isinstance(again, str)
        and len(first) == len(again)
        and not any(c.isspace() for c in first + again)
    ):
        return "token"
    if _is_int(first) and _is_int(again) and again > first:
        return "increasing"
    return "type" if json_type(first) == json_type(again) else None


def check(
    kind: str, legacy: Any, port: Any, *, window: Window | None = None, tolerance: float = 0.0
) -> str | None:
    """Why *port* is not a variation of *legacy* of this kind, or ``None`` when it is."""
    if kind == "instant":
        return _check_instant(legacy, port, window, tolerance)
    if kind == "token":
        return _check_token(legacy, port)
    if kind == "increasing":
        if not _is_int(port) or not _is_int(legacy) or port < legacy:
            return f"varies as increasing: not an integer of {show_number(legacy)} or more"
        return None
    if json_type(legacy) != json_type(port):
        return f"varies as type: {json_type(port)} where legacy has {json_type(legacy)}"
    return None


def show_number(value: Any) -> str:
    return str(value) if _is_int(value) else repr(value)


def form(text: str) -> str:
    """The layout of a date-time: ``9999-99-99T99:99:99.999999+99:99``."""
    return _NAMES.sub("Aaa", re.sub(r"\d", "9", text))


def _check_instant(legacy: Any, port: Any, window: Window | None, tolerance: float) -> str | None:
    if not isinstance(port, str) or (moment := instant(port)) is None:
        return "varies as instant: not a date-time"
    if not isinstance(legacy, str) or (theirs := instant(legacy)) is None:
        return "varies as instant: legacy's value is not a date-time"
    if form(port) != form(legacy) or moment.utcoffset() != theirs.utcoffset():
        return f"varies as instant: written as {form(port)}, legacy writes {form(legacy)}"
    if window is None:
        return None
    slack = SLACK + timedelta(seconds=tolerance)
    start, end = window[0] - slack, window[1] + slack
    if start <= theirs <= end:
        inside = start <= moment <= end
    else:  # legacy's clock is not the wall clock (local time as naive, a fake clock)
        inside = abs(moment - theirs) <= end - start + OTHER_CLOCK
    if not inside:
        return f"varies as instant: outside the run, {_iso(window[0])} to {_iso(window[1])}"
    return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# The usual alphabets of tokens, narrowest first, as (name, what a token of it
# may hold, which letters and digits put a token in it). One sample cannot tell
# an alphabet apart from its chance subsets: a hex token may happen to be all
# digits or all letters a-f, a base64url one may lack "-" and "_" (a 22-character
# one does half the time), or digits. So a token is read as of the narrowest
# alphabet whose letters and digits hold its own, and mixed case is base64url.
_DIGITS = frozenset(string.digits)
_LOWER_HEX = _DIGITS | frozenset("abcdef")
_UPPER_HEX = _DIGITS | frozenset("ABCDEF")
_LOWER = frozenset(string.ascii_lowercase)
_UPPER = frozenset(string.ascii_uppercase)
_ALNUM = _DIGITS | _LOWER | _UPPER
_ALPHABETS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("hex digits", _LOWER_HEX | _UPPER_HEX, _DIGITS),
    ("lower-case hex", _LOWER_HEX, _LOWER_HEX),
    ("upper-case hex", _UPPER_HEX, _UPPER_HEX),
    ("lower-case letters", _LOWER, _LOWER),
    ("upper-case letters", _UPPER, _UPPER),
    ("lower-case letters and digits", _LOWER | _DIGITS, _LOWER | _DIGITS),
    ("upper-case letters and digits", _UPPER | _DIGITS, _UPPER | _DIGITS),
    ("base64url", _ALNUM | frozenset("-_"), _ALNUM),
)
_BASE64 = ("base64", _ALNUM | frozenset("+/="))


def alphabet(token: str) -> tuple[str, frozenset[str]]:
    """The name and characters of the alphabet *token* is drawn from, learned from
    this one sample: the narrowest usual alphabet holding its ASCII letters and
    digits, with every other character it has (``.`` of a JWT, ``-`` of a UUID)."""
    others = frozenset(token) - _ALNUM
    name, characters = next(
        (name, characters)
        for name, characters, holds in _ALPHABETS
        if frozenset(token) & _ALNUM <= holds
    )
    if name == "base64url" and others & {"+", "/"}:  # base64 that lacks - and _
        name, characters = _BASE64
    return name, characters | others


def _check_token(legacy: Any, port: Any) -> str | None:
    if not isinstance(port, str) or not isinstance(legacy, str):
        return "varies as token: not a string"
    if len(port) != len(legacy):
        return f"varies as token: {len(port)} characters, legacy has {len(legacy)}"
    name, characters = alphabet(legacy)
    strays = sorted(set(port) - characters)
    if strays:
        return f"varies as token: {''.join(strays)!r} not in legacy's alphabet ({name})"
    return None
