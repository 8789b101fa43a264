from __future__ import annotations

import pytest

from bridge._rollout.fallback import demotion_reason
from bridge._rollout.store import Counts
from bridge._serving.manifest import RolloutOptions, RouteState

OPTIONS = RolloutOptions(error_rate=0.05, mismatch_rate=0.01, window=300, min_requests=100)


@pytest.mark.parametrize("state", [RouteState.CANARY, RouteState.ASYNC])
def test_a_port_over_the_error_rate_is_demoted(state: RouteState) -> None:
    reason = demotion_reason(state, Counts(served_async=200, errors_async=11), OPTIONS)

    assert reason == (
        "port 5xx rate 5.5% (11 of 200 requests) over the last 300 s is above error_rate 5.0%"
    )


def test_at_the_error_rate_the_route_stays() -> None:
    assert (
        demotion_reason(RouteState.ASYNC, Counts(served_async=200, errors_async=10), OPTIONS)
        is None
    )


def test_below_min_requests_nothing_is_judged() -> None:
    quiet = Counts(served_async=99, errors_async=99)

    assert demotion_reason(RouteState.CANARY, quiet, OPTIONS) is None


def test_legacy_errors_never_demote_a_route() -> None:
    counts = Counts(served_legacy=1000, errors_legacy=1000, served_async=100)

    assert demotion_reason(RouteState.CANARY, counts, OPTIONS) is None
    assert (
        demotion_reason(RouteState.LEGACY, Counts(served_async=500, errors_async=500), OPTIONS)
        is None
    )


def test_a_shadow_over_the_mismatch_rate_is_demoted() -> None:
    counts = Counts(compared=150, same=148, different=2)

    reason = demotion_reason(RouteState.SHADOW, counts, OPTIONS)

    assert reason is not None
    assert reason.startswith("shadow mismatch rate 1.3% (2 of 150 compared, 0 timed out)")


def test_shadows_that_time_out_count_against_the_port() -> None:
    hanging = Counts(compared=0, timed_out=120)
    skipped = Counts(compared=50, same=50, skipped=10_000)

    assert demotion_reason(RouteState.SHADOW, hanging, OPTIONS) is not None
    assert demotion_reason(RouteState.SHADOW, skipped, OPTIONS) is None  # too few judged
