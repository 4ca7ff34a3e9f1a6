"""A node's store work off its event loop: :class:`StoreWorker`, one thread, fair between peers.

An asyncio node that applied its peers' batches on its event loop stalled everything else while
a batch committed: heartbeats, other peers' frames, its own rounds. Under a flood of small
batches from one peer, another peer's URGENT write waited behind all of them (bench/
e2e_bench.py, step 3). The worker takes that work off the loop:

- **One thread** runs the jobs, one at a time: SQLite lets one writer in at a time anyway, and
  the store's write lock already lets threads share it (memrepl.storage.store). The loop only
  hands a job over and awaits its result.
- **Fair between peers.** Jobs are queued per key (a peer id, or the node's own work) and the
  keys are served in turn, one job each: a peer that queues a hundred batches delays another's
  next batch by at most the one job being run. Within a key, jobs run in the order given, so a
  peer's batches are applied in the order they came.
- **Cancelling** a job that has not started drops it; one that runs finishes (a transaction is
  never cut), and its result is dropped.

The rule that keeps it right: a job is a plain function over the store that takes and returns
values; nothing it touches is owned by the event loop (the loop-owned bookkeeping before and
after it stays on the loop: memrepl.sync.receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["StoreWorker"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    run: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    cancelled: bool = field(default=False)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class StoreWorker:
    """One thread running store jobs in turn per key (see the module docstring)."""

    def __init__(self, name: str = "memrepl-store") -> None:
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, key: str, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in the worker, in ``key``'s turn; its result or exception.
        Raises RuntimeError once the worker is closed."""
        loop = asyncio.get_running_loop()
        job = _Job(lambda: function(*args), loop, loop.create_future())
        with self._cond:
            if self._closed:
                raise RuntimeError("the store worker is closed")
            self._queues.setdefault(key, deque()).append(job)
            self._cond.notify()
        try:
            result: T = await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        return result

    def queued(self) -> int:
        """Jobs waiting (not counting the one running)."""
        with self._cond:
            return sum(len(jobs) for jobs in self._queues.values())

    def close(self, timeout_s: float = 30.0) -> None:
        """Drop the jobs not started, let the running one finish, end the thread (idempotent)."""
        with self._cond:
            self._closed = True
            dropped = [job for jobs in self._queues.values() for job in jobs]
            self._queues.clear()
            self._cond.notify()
        for job in dropped:
            self._deliver(job, None, RuntimeError("the store worker closed before this job ran"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._queues:
                if self._closed:
                    return None
                self._cond.wait()
            key, jobs = next(iter(self._queues.items()))
            job = jobs.popleft()
            if jobs:
                self._queues.move_to_end(key)  # the other keys' turn first
            else:
                del self._queues[key]
            return job

    def _serve(self) -> None:
        while (job := self._next()) is not None:
            # Cancelling the task that awaits a job cancels its future at once, while the task
            # itself learns of it (and sets ``cancelled``) only on its next turn of the loop: a
            # read of the future's state (one attribute) sees the cancellation without waiting.
            if job.cancelled or job.future.cancelled():
                continue
            try:
                result = job.run()
            except BaseException as exc:
                self._deliver(job, None, exc)
            else:
                self._deliver(job, result, None)

    @staticmethod
    def _deliver(job: _Job, result: Any, error: BaseException | None) -> None:
        # A loop that is closed by now has no one waiting.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)
