"""The one table renderer of the command line."""

from __future__ import annotations

from bridge._table import render_table


def test_columns_are_two_spaces_apart_and_left_aligned_by_default() -> None:
    rows = [["method", "rule"], ["GET", "/api/items/<int:item_id>"], ["POST", "/"]]

    assert render_table(rows) == (
        "method  rule\nGET     /api/items/<int:item_id>\nPOST    /"  # no trailing spaces
    )


def test_right_aligned_columns_line_up_numbers_by_their_last_digit() -> None:
    rows = [["route", "cases", "same"], ["GET /a", "12", "3"], ["total", "112", "30"]]

    assert render_table(rows, align="<>>") == (
        "route   cases  same\nGET /a     12     3\ntotal     112    30"
    )


def test_columns_align_does_not_cover_are_left_aligned() -> None:
    assert render_table([["a", "bb"], ["ccc", "d"]], align=">") == "  a  bb\nccc  d"


def test_a_table_without_rows_is_its_header() -> None:
    assert render_table([["method", "rule"]]) == "method  rule"
