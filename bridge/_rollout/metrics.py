"""What the hybrid server tells its metrics about each request and each shadow.

The server calls a :class:`Metrics` for every request it serves and every
shadow it runs or skips, and :meth:`Metrics.tick` once per poll interval. With
``[rollout] metrics_path`` unset it calls :data:`NULL_METRICS`, which keeps
nothing.
"""

from __future__ import annotations

from typing import Protocol

#: Outcomes of a shadow: what :meth:`Metrics.shadow` is told.
SHADOW_OUTCOMES = ("same", "different", "skipped", "timed_out", "error")


class Metrics(Protocol):
    def request(self, route: str, side: str, status: int, seconds: float) -> None:
        """A request answered: its route (``"GET /rule"``, or ``"(unmatched)"``), the side
        that answered, the status and the time to the end of the response."""

    def shadow(self, route: str, outcome: str) -> None:
        """A shadow's outcome, one of :data:`SHADOW_OUTCOMES`."""

    def tick(self) -> None:
        """Called every poll interval: sample what is read rather than counted (pools)."""


class _NullMetrics:
    def request(self, route: str, side: str, status: int, seconds: float) -> None:
        pass

    def shadow(self, route: str, outcome: str) -> None:
        pass

    def tick(self) -> None:
        pass


NULL_METRICS: Metrics = _NullMetrics()
