"""Two decoded JSON documents compared under a route's rules.

:func:`compare_json` walks both documents in document order and returns every
:class:`~bridge._shadow.difference.Difference`, at its JSON path. The rules
loosen it where the manifest says so: ``ignore``, ``unordered`` lists (matched
as multisets), ``tolerance`` on numbers, ``datetimes`` compared as instants and
``vary`` checked by :mod:`bridge._shadow.variation`.

Why our own and not a deep-diff library: the comparison must apply the
manifest's path patterns at each place (a library's exclusions are its own
path syntax), tell ``1`` from ``1.0`` and ``true``, pair the elements of an
unordered list by the most pairs the rules allow (a tolerance makes "equal"
non-transitive, so a greedy pairing can leave matchable elements unmatched),
and name each place as the rules name it, which reports and proposed rules
reuse word for word.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bridge._shadow.difference import MISSING, NUMBERS, Difference, json_kind
from bridge._shadow.jsonpath import (
    Path,
    Pattern,
    format_path,
    matches,
    parse_path,
    parse_pattern,
    reaches_below,
)
from bridge._shadow.rules import Rules
from bridge._shadow.variation import Window, instant
from bridge._shadow.variation import check as check_variation


def compare_json(
    legacy: Any, port: Any, rules: Rules = Rules(), path: str = "$", *, window: Window | None = None
) -> list[Difference]:
    """Every difference between two decoded JSON documents, in document order.

    *path* is where the two values are in their documents, for the rules and
    the report; *window* as for :func:`compare_responses`.
    """
    differences: list[Difference] = []
    _JSONComparer(rules, window).compare(legacy, port, parse_path(path), differences)
    return differences


class _JSONComparer:
    def __init__(self, rules: Rules, window: Window | None = None) -> None:
        self.rules = rules
        self.window = window
        self.vary = [(parse_pattern(p), kind) for p, kind in rules.vary]
        self.ignore = [parse_pattern(p) for p in rules.ignore]
        self.unordered = [parse_pattern(p) for p in rules.unordered]
        self.datetimes = [parse_pattern(p) for p in rules.datetimes]

    def ignored(self, path: Path) -> bool:
        return any(matches(pattern, path) for pattern in self.ignore)

    @staticmethod
    def at(patterns: Iterable[Pattern], path: Path) -> bool:
        return any(matches(pattern, path, below=False) for pattern in patterns)

    def compare(self, legacy: Any, port: Any, path: Path, out: list[Difference]) -> None:
        if self.ignored(path):
            return
        kind = next((k for pattern, k in self.vary if matches(pattern, path, below=False)), None)
        if kind is not None and legacy != port:
            tolerance = self.rules.datetime_tolerance
            note = check_variation(kind, legacy, port, window=self.window, tolerance=tolerance)
            if note is not None:
                out.append(Difference(format_path(path), legacy, port, note))
            return
        kinds = json_kind(legacy), json_kind(port)
        if kinds == ("string", "string") and self.at(self.datetimes, path):
            self.instants(legacy, port, path, out)
        elif kinds == ("object", "object"):
            self.objects(legacy, port, path, out)
        elif kinds == ("array", "array"):
            self.arrays(legacy, port, path, out)
        elif kinds[0] in NUMBERS and kinds[1] in NUMBERS:
            self.numbers(legacy, port, path, out)
        elif kinds[0] != kinds[1]:
            out.append(Difference(format_path(path), legacy, port, " vs ".join(kinds)))
        elif legacy != port:
            out.append(Difference(format_path(path), legacy, port))

    def numbers(self, legacy: float, port: float, path: Path, out: list[Difference]) -> None:
        kinds = json_kind(legacy), json_kind(port)
        tolerance = self.rules.tolerance
        if kinds[0] != kinds[1] and not tolerance:
            out.append(Difference(format_path(path), legacy, port, " vs ".join(kinds)))
        elif not _close(legacy, port, tolerance):
            note = f"{' vs '.join(kinds)}, " if kinds[0] != kinds[1] else ""
            out.append(
                Difference(
                    format_path(path), legacy, port, f"{note}differs by {_gap(legacy, port)}"
                )
            )

    def instants(self, legacy: str, port: str, path: Path, out: list[Difference]) -> None:
        if legacy == port:
            return
        mine, other = instant(legacy), instant(port)
        if mine is None or other is None:
            sides = [side for side, v in (("legacy", mine), ("async", other)) if v is None]
            out.append(
                Difference(
                    format_path(path), legacy, port, f"not a date-time in {' and '.join(sides)}"
                )
            )
            return
        seconds = abs((mine - other).total_seconds())
        if seconds > self.rules.datetime_tolerance:
            out.append(Difference(format_path(path), legacy, port, f"{seconds:g} s apart"))

    def objects(
        self, legacy: Mapping[str, Any], port: Mapping[str, Any], path: Path, out: list[Difference]
    ) -> None:
        for key, value in legacy.items():
            child = (*path, key)
            if key in port:
                self.compare(value, port[key], child, out)
            elif not self.ignored(child):
                out.append(Difference(format_path(child), value, MISSING, "missing in async"))
        for key, value in port.items():
            child = (*path, key)
            if key not in legacy and not self.ignored(child):
                out.append(Difference(format_path(child), MISSING, value, "extra in async"))

    def arrays(
        self, legacy: Sequence[Any], port: Sequence[Any], path: Path, out: list[Difference]
    ) -> None:
        if self.at(self.unordered, path):
            self.multisets(legacy, port, path, out)
            return
        found: list[Difference] = []
        for index in range(max(len(legacy), len(port))):
            child = (*path, index)
            if index >= len(port):
                if not self.ignored(child):
                    found.append(
                        Difference(format_path(child), legacy[index], MISSING, "missing in async")
                    )
            elif index >= len(legacy):
                if not self.ignored(child):
                    found.append(
                        Difference(format_path(child), MISSING, port[index], "extra in async")
                    )
            else:
                self.compare(legacy[index], port[index], child, found)
        if found and len(legacy) == len(port) and self.permutation(legacy, port, path):
            out.append(Difference(format_path(path), legacy, port, "list order differs"))
        else:
            out.extend(found)

    def multisets(
        self, legacy: Sequence[Any], port: Sequence[Any], path: Path, out: list[Difference]
    ) -> None:
        pairs = self.pairs(legacy, port, path)
        for index, value in enumerate(legacy):
            child = (*path, index)
            if index not in pairs and not self.ignored(child):
                out.append(Difference(format_path(child), value, MISSING, "no match in async"))
        matched = set(pairs.values())
        for index, value in enumerate(port):
            child = (*path, index)
            if index not in matched and not self.ignored(child):
                out.append(Difference(format_path(child), MISSING, value, "no match in legacy"))

    def permutation(self, legacy: Sequence[Any], port: Sequence[Any], path: Path) -> bool:
        """Whether every element of *legacy* pairs with an equal one of *port*."""
        return len(self.pairs(legacy, port, path, perfect=True)) == len(legacy)

    def pairs(
        self, legacy: Sequence[Any], port: Sequence[Any], path: Path, *, perfect: bool = False
    ) -> dict[int, int]:
        """The most elements of *legacy* paired with equal elements of *port*; with
        *perfect*, give up as soon as one element has no partner."""
        free: dict[Any, deque[int]] = {}
        for index, value in enumerate(port):
            free.setdefault(_canonical(value), deque()).append(index)
        pairs: dict[int, int] = {}
        for index, value in enumerate(legacy):
            same = free.get(_canonical(value))
            if same:
                pairs[index] = same.popleft()
        # Rules only loosen, so identical elements are equal under any rules; only
        # rules that reach inside the elements can make different ones equal too.
        if len(pairs) == min(len(legacy), len(port)) or not self.loosened_below(path):
            return pairs
        cache: dict[tuple[int, int], bool] = {}

        def equal(i: int, j: int) -> bool:
            if (i, j) not in cache:
                try:
                    self.compare(legacy[i], port[j], (*path, i), _FirstDifference())
                    cache[i, j] = True
                except _Different:
                    cache[i, j] = False
            return cache[i, j]

        return _maximum_matching(len(legacy), len(port), equal, pairs, perfect=perfect)

    def loosened_below(self, path: Path) -> bool:
        patterns = (*self.ignore, *self.unordered, *self.datetimes, *(p for p, _ in self.vary))
        return self.rules.tolerance > 0 or any(reaches_below(p, path) for p in patterns)


class _Different(Exception):
    pass


class _FirstDifference(list[Difference]):
    """Stops a comparison at its first difference: pairing elements needs no more."""

    def append(self, difference: Difference, /) -> None:
        raise _Different

    def extend(self, differences: Iterable[Difference], /) -> None:
        for _ in differences:
            raise _Different


def _maximum_matching(
    lefts: int,
    rights: int,
    edge: Callable[[int, int], bool],
    pairs: Mapping[int, int],
    *,
    perfect: bool = False,
) -> dict[int, int]:
    """A maximum bipartite matching grown from *pairs* by augmenting paths (Kuhn);
    with *perfect*, cut short when one left vertex cannot be matched.

    With a tolerance "equal" is not transitive, so pairing greedily could leave
    elements unmatched that a better pairing would match.
    """
    left_of = {right: left for left, right in pairs.items()}
    right_of = dict(pairs)
    for start in range(lefts):
        if start in right_of:
            continue
        reached_from: dict[int, int] = {}
        frontier, end = [start], None
        while frontier and end is None:
            following: list[int] = []
            for left in frontier:
                for right in range(rights):
                    if right in reached_from or not edge(left, right):
                        continue
                    reached_from[right] = left
                    if right not in left_of:
                        end = right
                        break
                    following.append(left_of[right])
                if end is not None:
                    break
            frontier = following
        if end is None and perfect:
            break
        while end is not None:  # flip the path's pairs, back to the start
            left = reached_from[end]
            previous = right_of.get(left)
            right_of[left], left_of[end] = end, left
            end = previous
    return right_of


def _canonical(value: Any) -> Any:
    """A hashable form, equal exactly when the values are equal with no rules."""
    kind = json_kind(value)
    if kind == "object":
        items = sorted(value.items(), key=lambda item: repr(item[0]))
        return kind, tuple((key, _canonical(v)) for key, v in items)
    if kind == "array":
        return kind, tuple(_canonical(v) for v in value)
    if kind == "float":
        return kind, "nan" if math.isnan(value) else value + 0.0  # -0.0 == 0.0
    if kind in ("null", "bool", "int", "string"):
        return kind, value
    return kind, repr(value)


def _close(legacy: float, port: float, tolerance: float) -> bool:
    if legacy == port or (legacy != legacy and port != port):  # both NaN
        return True
    try:
        return abs(legacy - port) <= tolerance
    except OverflowError:
        return False


def _gap(legacy: float, port: float) -> str:
    try:
        return f"{abs(legacy - port):.3g}"
    except OverflowError:
        return "a lot"
