"""JSON paths: the concrete place of a value in a body, and patterns that match places.

A concrete path names one value, as the comparison reports it::

    $                   the whole document
    $.items[0].price    key "items", element 0, key "price"
    $["odd key"]        a key that is not an identifier

A pattern, as a route's rules in the manifest give it, may also use::

    [*]  .*             any element or member (the two are the same, as in RFC 9535)
    ..name  ..*  ..[0]  the step after ``..`` at any depth below, including directly
    ['name']            single quotes as well as double

A pattern matches a path when the two have the same steps; :func:`matches`
also lets a pattern match everything below the place it names, so ignoring
``$.user`` ignores ``$.user.name``. Nothing here does I/O.

Why ours and not a JSONPath library's: those evaluate a query against a
document and return the values it selects. The comparison needs the other
direction, whether one concrete place matches a pattern (and whether any
pattern reaches below a place, to skip the costly pairing of list elements),
for places that exist in one document only, and the generalization of a
place into the pattern an A/A run proposes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

from bridge._exceptions import JSONPathError as JSONPathError

Step = str | int
"""One step of a concrete path: a member name, or a list index."""

Path = tuple[Step, ...]

EXAMPLE = '"$.items[*].updated_at"'


@dataclass(frozen=True)
class Segment:
    """One step of a pattern.

    *step* is a member name or an index, or ``None`` for the wildcard; *dots*
    says the wildcard was written ``.*`` rather than ``[*]``; *descendant*
    says the segment was written after ``..`` and may be preceded by any
    number of steps.
    """

    step: Step | None
    descendant: bool = False
    dots: bool = False

    def accepts(self, step: Step) -> bool:
        return self.step is None or self.step == step  # "0" names a key, 0 an index


Pattern = tuple[Segment, ...]

_NAME = re.compile(r"[^\W\d][\w-]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\d+")
_JSON_ESCAPES = frozenset('"\\/bfnrtu')


@lru_cache(maxsize=1024)
def parse_pattern(text: str) -> Pattern:
    """Parse a pattern such as ``$.items[*].updated_at``; raise :class:`JSONPathError`."""
    if not text.startswith("$"):
        _fail(text, 0, 'it must start with "$"')
    segments: list[Segment] = []
    position = 1
    while position < len(text):
        segment, position = _segment(text, position)
        segments.append(segment)
    return tuple(segments)


def parse_path(text: str) -> Path:
    """Parse a concrete path such as ``$.items[0].price``; raise :class:`JSONPathError`."""
    pattern = parse_pattern(text)
    for segment in pattern:
        if segment.step is None or segment.descendant:
            raise JSONPathError(
                f"{text!r} is a pattern, not the path of one value: "
                "remove the wildcards and the '..'"
            )
    return tuple(segment.step for segment in pattern if segment.step is not None)


def _segment(text: str, position: int) -> tuple[Segment, int]:
    if text.startswith("[", position):
        step, position = _bracket(text, position)
        return Segment(step), position
    if not text.startswith(".", position):
        _fail(text, position, 'expected ".name", "[index]" or \'["name"]\'')
    descendant = text.startswith("..", position)
    position += 2 if descendant else 1
    if descendant and text.startswith("[", position):
        step, position = _bracket(text, position)
        return Segment(step, descendant=True), position
    if text.startswith("*", position):
        return Segment(None, descendant=descendant, dots=True), position + 1
    name = _NAME.match(text, position)
    if name is None:
        _fail(text, position, 'expected a name after "."', 'quote other keys, as in $["0"]')
    return Segment(name.group(), descendant=descendant), name.end()


def _bracket(text: str, position: int) -> tuple[Step | None, int]:
    start = position + 1
    if text.startswith("*]", start):
        return None, start + 2
    index = _INDEX.match(text, start)
    if index is not None:
        if not text.startswith("]", index.end()):
            _fail(text, index.end(), 'expected "]" after the index')
        return int(index.group()), index.end() + 1
    if start < len(text) and text[start] in "'\"":
        name, end = _quoted(text, start)
        if text.startswith("]", end):
            return name, end + 1
        _fail(text, end, 'expected "]" after the quoted name')
    if text.startswith("-", start):
        _fail(text, start, "negative indexes are not supported", "use [*]")
    _fail(text, start, 'expected an index, "*" or a quoted name inside "[...]"')


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The name quoted at *start* with JSON's escapes, in either quote; and where it ends."""
    quote = text[start]
    body: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == quote:
            try:
                return json.loads(f'"{"".join(body)}"'), position + 1
            except ValueError:
                _fail(text, start, "the quoted name has a bad escape")
        if char == "\\" and position + 1 < len(text):
            escaped = text[position + 1]
            if escaped == "'":
                body.append("'")
            elif escaped in _JSON_ESCAPES:
                body.append(f"\\{escaped}")
            else:
                _fail(text, position, f"unknown escape '\\{escaped}'")
            position += 2
            continue
        body.append('\\"' if char == '"' else char)
        position += 1
    _fail(text, start, "the quoted name is not closed")


def _fail(
    text: str, position: int, problem: str, fix: str = f"write paths such as {EXAMPLE}"
) -> NoReturn:
    raise JSONPathError(f"bad JSON path {text!r} at character {position}: {problem}; {fix}")


def format_path(path: Iterable[Step]) -> str:
    """The text of a concrete path: ``$.items[0]["odd key"]``."""
    return "$" + "".join(_format_step(step) for step in path)


def format_pattern(pattern: Pattern) -> str:
    """The text of a pattern, written as :func:`parse_pattern` reads it."""
    parts = ["$"]
    for segment in pattern:
        prefix = ".." if segment.descendant else ""
        if segment.step is None:
            parts.append(f"{prefix or '.'}*" if segment.dots else f"{prefix}[*]")
        else:
            step = _format_step(segment.step)
            parts.append(prefix + step[1:] if prefix and step.startswith(".") else prefix + step)
    return "".join(parts)


def _format_step(step: Step) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    if _IDENTIFIER.fullmatch(step):
        return f".{step}"
    return f"[{json.dumps(step, ensure_ascii=False)}]"


def _advance(pattern: Pattern, states: set[int], step: Step) -> set[int]:
    following: set[int] = set()
    for state in states:
        if state == len(pattern):
            continue
        segment = pattern[state]
        if segment.descendant:
            following.add(state)  # '..' also swallows this step
        if segment.accepts(step):
            following.add(state + 1)
    return following


def matches(pattern: Pattern, path: Path, *, below: bool = True) -> bool:
    """Whether *pattern* matches *path*, or (with *below*) the path of a value above it."""
    states = {0}
    for step in path:
        if below and len(pattern) in states:
            return True
        states = _advance(pattern, states, step)
        if not states:
            return False
    return len(pattern) in states


def reaches_below(pattern: Pattern, path: Path) -> bool:
    """Whether *pattern* could match a value strictly below *path*."""
    states = {0}
    for step in path:
        states = _advance(pattern, states, step)
    return any(state < len(pattern) for state in states)


def generalize(path: str) -> str:
    """The pattern for every element where *path* names one:
    ``$.items[3].created_at`` gives ``$.items[*].created_at``."""
    pattern = parse_pattern(path)
    return format_pattern(
        tuple(
            Segment(None, descendant=s.descendant) if isinstance(s.step, int) else s
            for s in pattern
        )
    )


def is_ignored(path: str, patterns: Iterable[str]) -> bool:
    """Whether a concrete *path* is at or below a place one of *patterns* matches."""
    steps = parse_path(path)
    return any(matches(parse_pattern(pattern), steps) for pattern in patterns)
