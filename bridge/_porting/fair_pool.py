"""The async side's connection pool: first come, first served.

SQLAlchemy's async pool queues connections in an ``asyncio.Queue``. When a
connection comes back while requests wait for one, the queue wakes the oldest
waiter, but a request that asks in the meantime takes the connection first,
and the woken waiter goes back to the end of the line. Under load (more
requests in flight than connections, the case the pool size is chosen for) a
few requests lose that race again and again: in the benchmark at 128 clients
on 32 connections, the slowest 1 % waited over a second while the median
waited a tenth of that, and some requests ran into the client's timeout.

:class:`FairAsyncQueue` hands a returned connection straight to the oldest
waiter, so a request never waits behind one that came later, and waits on a
bare future with a timer, not on a task per wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon

_T = TypeVar("_T")


class FairAsyncQueue(QueueCommon[_T], Generic[_T]):
    """A pool queue whose waiters are served in the order they came."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[_T] = deque()
        self._waiters: deque[asyncio.Future[_T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: _T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # else it timed out or was cancelled
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # the pool never holds more than its size: nothing to wait for

    def get_nowait(self) -> _T:
        # Items wait here only while no request does: a returned one goes to
        # the oldest waiter first.
        if not self._items:
            raise Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        if self._items or not block:
            return self.get_nowait()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_T] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await_(waiter)
        except TimeoutError:  # set by the timer
            raise Empty() from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection, then cancelled before taking it: pass it on.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
            raise
        finally:
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class FairAsyncPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async queue pool on :class:`FairAsyncQueue`."""

    _queue_class = FairAsyncQueue[ConnectionPoolEntry]
