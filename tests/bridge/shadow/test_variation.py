"""The kinds of variation an A/A pair shows, and the port values each accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge._shadow.compare import Difference, Rules, compare_json
from bridge._shadow.runner import rules_from
from bridge._shadow.variation import check, classify

NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
WINDOW = (NOW, NOW + timedelta(seconds=1))


@pytest.mark.parametrize(
    ("first", "again", "kind"),
    [
        ("2026-12-01T14:00:00.1", "2026-12-01T14:00:00.2", "instant"),
        ("Tue, 01 Dec 2026 14:00:00 GMT", "Tue, 01 Dec 2026 14:00:01 GMT", "instant"),
        ("a3f9b2c1", "0d9e4f11", "token"),
        ("20240102", "20240103", "token"),  # digits are a token, not a basic ISO date
        (4, 5, "increasing"),
        (5, 4, "type"),
        ("a b", "c d", "type"),
        (1.5, 2.5, "type"),
        (None, "2026-12-01T14:00:00", None),  # even the type varies: no kind holds
    ],
)
def test_the_narrowest_kind_both_values_have(first: Any, again: Any, kind: str | None) -> None:
    assert classify(first, again) == kind


@pytest.mark.parametrize(
    ("kind", "legacy", "port", "note"),
    [
        ("instant", "2026-12-01T14:00:00", "2026-12-01T14:00:01", None),
        ("instant", "2026-12-01T14:00:00", "2000-01-01T00:00:00", "outside the run, "),
        ("instant", "2026-12-01T14:00:00", "2026-12-01T16:00:00+02:00", "written as "),
        ("instant", "2026-12-01T14:00:00", "2026-12-01T14:00:00.5", "written as "),
        ("instant", "2026-12-01T14:00:00", "soon", "not a date-time"),
        # Legacy writes local time as naive: the port must stay within a minute of it.
        ("instant", "2026-12-01T15:00:00", "2026-12-01T15:00:30", None),
        ("instant", "2026-12-01T15:00:00", "2026-12-01T14:00:00", "outside the run, "),
        ("instant", "2026-12-01T15:00:00", "2026-12-01T15:02:00", "outside the run, "),
        ("token", "a3f9b2c1", "0d9e4f11", None),
        ("token", "12345678", "0d9e4f11", None),  # a hex token that happened to be digits
        ("token", "cdfacdcc", "c4a2ddd0", None),  # ... or letters a-f only
        ("token", "cdfacdcg", "c4a2ddd0", "'024' not in legacy's alphabet"),  # not hex
        ("token", "a3f9b2c1", "A3F9B2C1", "'ABCF' not in legacy's alphabet"),
        ("token", "a3f9b2c1", "a3f9", "4 characters, legacy has 8"),
        # base64url whose sample lacks "-" and "_": the port's may have them.
        ("token", "Qm9yZ2VzIGFuZCBsaWJyYQ", "x-9_ZGVzIGFuZCBsaWJyYQ", None),
        ("token", "Qm9yZ2VzIGFuZCBsaWJyYQ", "Qm9yZ2VzIGFuZCBsaWJyY+", "'+' not in legacy's"),
        # base64 with "/" may have "+" and padding too.
        ("token", "ab/Cd0Ef", "ab+Cd0E=", None),
        # Lower-case letters and digits, as base36 tokens are: no upper case.
        ("token", "k3xz9q0w", "abc0pp9z", None),
        ("token", "k3xz9q0w", "abC0pp9z", "'C' not in legacy's alphabet (lower-case letters"),
        # Other characters are taken as they are: a UUID's dashes, a JWT's dots.
        ("token", "0d9e4f11-aa2b", "ffff0000-1234", None),
        (
            "token",
            "0d9e4f11-aa2b",
            "ffff0000_1234",
            "'_' not in legacy's alphabet (lower-case hex)",
        ),
        ("token", "eyJh.eyJz.Sf-_", "aB3-.x_Yz.0000", None),
        ("increasing", 4, 4, None),
        ("increasing", 4, 9, None),
        ("increasing", 4, 3, "not an integer of 4 or more"),
        ("increasing", 4, "5", "not an integer of 4 or more"),
        ("type", 4, 5.5, None),
        ("type", 4, "4", "string where legacy has number"),
    ],
)
def test_a_port_value_must_be_of_the_kind(kind: str, legacy: Any, port: Any, note: str) -> None:
    found = check(kind, legacy, port, window=WINDOW)
    if note is None:
        assert found is None
    else:
        assert found is not None and note in found, found


def test_vary_in_the_rules_reports_where_and_why() -> None:
    rules = Rules(vary=(("$.items[*].at", "instant"),))
    [difference] = compare_json(
        {"items": [{"at": "2026-12-01T14:00:00"}]},
        {"items": [{"at": "2000-01-01T00:00:00"}]},
        rules,
        window=WINDOW,
    )
    assert str(difference) == (
        '$.items[0].at: legacy "2026-12-01T14:00:00", async "2000-01-01T00:00:00" '
        "(varies as instant: outside the run, 2026-12-01T14:00:00Z to 2026-12-01T14:00:01Z)"
    )


def test_a_place_whose_type_varies_is_proposed_for_ignore() -> None:
    noise = [
        Difference("$.items[0].shipped_at", None, "2026-12-01T14:00:00"),
        Difference("$.items[1].shipped_at", "2026-12-01T14:00:00", "2026-12-01T14:00:01"),
        Difference("$.token", "a3f9b2c1", "0d9e4f11"),
    ]
    rules = rules_from(noise)
    assert rules.ignore == ("$.items[*].shipped_at",)
    assert rules.vary == (("$.token", "token"),)
