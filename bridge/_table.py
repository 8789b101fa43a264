"""Plain-text tables, as the command line prints them."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(rows: Sequence[Sequence[str]], *, align: str = "") -> str:
    """*rows* (the header first) in columns two spaces apart, without trailing spaces.

    *align* holds one character per column: ``"<"`` pads on the right (the
    default for columns it does not cover), ``">"`` on the left, so numbers line
    up by their last digit.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if align[i : i + 1] == ">" else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )
