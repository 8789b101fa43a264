"""The port run on live traffic beside legacy, out of the user's way.

For a route in shadow the legacy side answers. Its response goes to the client
message by message, as for any legacy route, through a :class:`Recorder` that
keeps a copy (up to :data:`TEE_LIMIT` bytes of body). Once it is complete,
:meth:`Shadows.start` may run the port on the same request in a task of its
own, if the route's sample says so and fewer than ``max_shadows_in_flight``
shadows run; beyond that the shadow is skipped and counted, never queued. The
task runs the FastAPI app with a ``send`` that only records, inside the
route's timeout, compares the two answers under the route's rules plus
``[shadow]``'s, and counts the outcome; a difference is kept, redacted, for
the store. Nothing the port does, raises or sends reaches the client: by then
the client has its answer.

The port runs with :data:`~bridge._porting.asyncdb.ROLLBACK_ONLY` set, so the
transactions of :class:`~bridge.AsyncDatabase` roll back: a shadowed write is
written once, by legacy. Because the port runs after legacy answered, it sees
the database *after* legacy's write: a POST that creates a row is compared
with a port that creates the next one (a different id) or finds the row
already there (a conflict). Such routes need ``ignore`` rules for generated
values, and a difference in a shadowed write is a prompt to look, not proof.
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Scope, Send

from bridge._porting.asyncdb import ROLLBACK_ONLY
from bridge._rollout.runtime import Rollout
from bridge._rollout.store import Mismatch
from bridge._serving.manifest import SAFE_METHODS, RoutePlan
from bridge._serving.routing import Target
from bridge._serving.wsgi import replay_body
from bridge._shadow.rules import Rules

if TYPE_CHECKING:  # the comparison is imported when a shadow first runs
    from bridge._shadow.compare import Snapshot
    from bridge._shadow.redact import Redactor

logger = logging.getLogger("flask2fastapi.rollout")

#: Body bytes of either answer kept for comparing; a longer answer is skipped.
TEE_LIMIT = 1024 * 1024

#: Above this many body bytes the comparison runs in a thread, off the event loop.
COMPARE_INLINE = 64 * 1024

#: Characters of a body kept in a recorded mismatch.
RECORDED_BODY = 64 * 1024


class Recorder:
    """A ``send`` that forwards every message at once, and notes the status and,
    when *limit* is above 0, the headers and up to *limit* body bytes.

    With a *header*, the response leaves with it added after the others (the
    hybrid's side header); what is noted is the app's own answer, without it.
    """

    def __init__(
        self, send: Send, limit: int = 0, header: tuple[bytes, bytes] | None = None
    ) -> None:
        self.send = send
        self.limit = limit
        self.header = header
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.header is None:
                await self.send(message)
            else:
                headers = [*message.get("headers", ()), self.header]
                await self.send({**message, "headers": headers})
            self.status = message["status"]
            if self.limit:
                self.headers = list(message.get("headers", ()))
            return
        await self.send(message)
        if kind == "http.response.body":
            self.complete = not message.get("more_body", False)
            if self.limit:
                chunk = message.get("body", b"")
                self.size += len(chunk)
                if self.size <= self.limit:
                    self.chunks.append(chunk)

    def snapshot(self) -> Snapshot | None:
        """The recorded answer; ``None`` if it did not complete or outgrew the limit."""
        if self.status is None or not self.complete or self.size > self.limit:
            return None
        from bridge._shadow.compare import Snapshot

        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.headers)
        return Snapshot(self.status, headers, b"".join(self.chunks))


@dataclass
class Shadows:
    """The shadows of one worker: started after legacy answered, at most
    ``max_shadows_in_flight`` at once, cancelled when the server stops."""

    app: ASGIApp
    rollout: Rollout
    in_flight: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def wanted(self, scope: Scope, plan: RoutePlan) -> bool:
        """Whether this request may be shadowed at all: safe methods, and writes
        where the route opts in (``shadow_writes``), since its port rolls back."""
        return scope["method"] in SAFE_METHODS or plan.shadow_writes

    def start(
        self, target: Target, plan: RoutePlan, scope: Scope, body: bytes, legacy: Recorder
    ) -> None:
        """Run the port on the request in the background, if sampled and a slot is free."""
        options = self.rollout.options
        sample = options.sample if plan.sample is None else plan.sample
        if sample < 1 and random.random() >= sample:
            return
        snapshot = legacy.snapshot()
        if snapshot is None or self.in_flight >= options.max_shadows_in_flight:
            self.rollout.shadowed(target, "skipped")
            return
        timeout = options.shadow_timeout if plan.timeout is None else plan.timeout
        manifest = self.rollout.manifest
        rules = manifest.rules.get(target.key, Rules()) if target.key else Rules()
        job = _Job(
            target, _copy(scope), body, snapshot, timeout, rules.merge(manifest.shadow_rules)
        )
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(job, manifest.redactor))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.in_flight -= 1

    async def aclose(self) -> None:
        """Cancel the shadows still running; the server is stopping."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _run(self, job: _Job, redactor: Redactor) -> None:
        try:
            outcome, mismatch = await self._shadow(job, redactor)
        except Exception:  # a bug of ours must not end up in the server's log as a crash
            logger.exception("shadow of %s failed", job.target.label)
            outcome, mismatch = "error", None
        self.rollout.shadowed(job.target, outcome)
        if mismatch is not None:
            self.rollout.mismatched(mismatch)

    async def _shadow(self, job: _Job, redactor: Redactor) -> tuple[str, Mismatch | None]:
        ROLLBACK_ONLY.set(True)  # this task's own context: the port's writes roll back
        port = Recorder(_discard, TEE_LIMIT)
        try:
            with anyio.fail_after(job.timeout):
                await self.app(job.scope, replay_body(job.body, _no_disconnect), port)
        except TimeoutError:
            return "timed_out", None
        except Exception as exc:
            error = traceback.format_exception_only(exc)[-1].strip()
            return "error", job.mismatch(redactor, port.snapshot(), f"the port raised {error}")
        snapshot = port.snapshot()
        if snapshot is None:  # outgrew the limit, or sent no complete answer
            return "skipped", None
        if len(snapshot.body) + len(job.legacy.body) <= COMPARE_INLINE:
            return job.judge(snapshot, redactor)
        return await anyio.to_thread.run_sync(job.judge, snapshot, redactor)


@dataclass(frozen=True)
class _Job:
    target: Target
    scope: Scope
    body: bytes
    legacy: Snapshot
    timeout: float
    rules: Rules

    def judge(self, port: Snapshot, redactor: Redactor) -> tuple[str, Mismatch | None]:
        from bridge._shadow.compare import compare_responses

        comparison = compare_responses(self.legacy, port, self.rules)
        if comparison.same:
            return "same", None
        return "different", self.mismatch(redactor, port, comparison.report())

    def mismatch(self, redactor: Redactor, port: Snapshot | None, diff: str) -> Mismatch | None:
        """The difference as the store keeps it, redacted; ``None`` for a request of no route."""
        if self.target.key is None:
            return None
        scope = self.scope
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
        request = {
            "method": scope["method"],
            "path": scope["path"],
            "query": redactor.query(scope.get("query_string", b"").decode("latin-1")),
            "headers": [list(pair) for pair in redactor.header_pairs(headers)],
            "body": _text(redactor.body(self.body, _content_type(headers))),
        }
        return Mismatch(
            route=self.target.key,
            at=datetime.now(UTC),
            request=request,
            legacy=_answer(self.legacy, redactor),
            port=_answer(port, redactor) if port is not None else {},
            diff=diff,
        )


def _answer(snapshot: Snapshot, redactor: Redactor) -> dict[str, Any]:
    return {
        "status": snapshot.status,
        "headers": [list(pair) for pair in redactor.header_pairs(snapshot.headers)],
        "body": _text(redactor.body(snapshot.body, _content_type(snapshot.headers))),
    }


def _content_type(headers: Any) -> str | None:
    for name, value in headers:
        if name.lower() == "content-type":
            return str(value)
    return None


def _text(body: bytes) -> str:
    return body[:RECORDED_BODY].decode("utf-8", "replace")


def _copy(scope: Scope) -> Scope:
    """The scope for the port: the request as legacy saw it, nothing the port
    changes in it (Starlette adds its routing keys) reaching back."""
    copied = {**scope, "headers": list(scope["headers"])}
    if isinstance(scope.get("state"), dict):
        copied["state"] = dict(scope["state"])
    return copied


async def _no_disconnect() -> Message:
    """A client that waits for its answer: nothing comes after the body."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def _discard(message: Message) -> None:
    """The port's answer goes nowhere but into its :class:`Recorder`."""
