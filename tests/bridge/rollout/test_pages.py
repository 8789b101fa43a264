from __future__ import annotations

import math
import re

from bridge._rollout.pages import chart, ms, percent


def _polylines(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, point.split(","))) for point in points.split()]  # type: ignore[misc]
        for points in re.findall(r'<polyline[^>]* points="([^"]*)"', svg)
    ]


def test_a_missing_value_breaks_the_line_and_every_point_gets_a_dot() -> None:
    svg = chart([("red", "", [1.0, 2.0, None, 4.0])], "x")

    lines = _polylines(svg)
    assert [len(line) for line in lines] == [2, 1]
    assert svg.count("<circle") == 3
    assert "max 4" in svg


def test_values_are_drawn_against_the_given_top() -> None:
    half = _polylines(chart([("blue", "", [50.0])], "share", "%", 100))[0][0]
    full = _polylines(chart([("blue", "", [100.0])], "share", "%", 100))[0][0]
    zero = _polylines(chart([("blue", "", [0.0])], "share", "%", 100))[0][0]

    assert zero[1] > half[1] > full[1]
    assert math.isclose(zero[1] - half[1], half[1] - full[1])


def test_an_infinite_value_is_not_drawn() -> None:
    svg = chart([("red", "", [math.inf, 0.002])], "latency", " ms")

    assert [len(line) for line in _polylines(svg)] == [1]


def test_formats() -> None:
    assert (ms(None), ms(0.005), ms(math.inf)) == ("–", "≤ 5 ms", "> 10 s")  # noqa: RUF001
    assert (percent(None), percent(0.3076), percent(0.5, 2)) == ("–", "30.8%", "50.00%")  # noqa: RUF001
