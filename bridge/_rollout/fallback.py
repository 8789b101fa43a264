"""When the server takes a route back to legacy by itself: the rules, without I/O.

A route in canary or async whose port answers with too many 5xx, or a route in
shadow whose port differs from legacy too often, is demoted. Both rates are
judged over ``[rollout] window`` seconds, and only once the window holds
``min_requests`` answers (compared shadows for a shadow route), so that two
errors on a quiet route do not demote it.

A shadow that timed out or raised counts against the port: a port that hangs
on every request would otherwise never be demoted.
"""

from __future__ import annotations

from bridge._rollout.store import Counts
from bridge._serving.manifest import RolloutOptions, RouteState


def demotion_reason(state: RouteState, counts: Counts, options: RolloutOptions) -> str | None:
    """Why a route in *state* with *counts* over the window must go back to legacy, or ``None``."""
    window = f"over the last {options.window:g} s"
    if state in (RouteState.CANARY, RouteState.ASYNC):
        served, errors = counts.served_async, counts.errors_async
        if served >= options.min_requests and errors > options.error_rate * served:
            return (
                f"port 5xx rate {errors / served:.1%} ({errors} of {served} requests) "
                f"{window} is above error_rate {options.error_rate:.1%}"
            )
    elif state is RouteState.SHADOW:
        judged = counts.compared + counts.timed_out
        bad = counts.different + counts.timed_out
        if judged >= options.min_requests and bad > options.mismatch_rate * judged:
            return (
                f"shadow mismatch rate {bad / judged:.1%} ({bad} of {judged} compared, "
                f"{counts.timed_out} timed out) {window} is above mismatch_rate "
                f"{options.mismatch_rate:.1%}"
            )
    return None
