"""When a running node runs anti-entropy: digest checks with its peers and its own verification.

Two timers, both settings of the node (:class:`~memrepl.node.config.NodeSettings`):

- every ``antientropy_interval_s`` (180 s), one check with each connected peer
  (:meth:`MemorySyncManager.check_peer`), one peer after another;
- at start and every ``verify_interval_s`` (3600 s), the node recomputes its digests from its
  rows and corrects them (:func:`memrepl.sync.antientropy.verify_digests`), in a worker thread:
  it is a full read of every tier (about 3 µs a row), and it is what finds rows changed outside
  memrepl. A verification that corrected anything is followed by checks with every peer at once.

The rule that keeps it right: at most one pass (verification, then checks) runs at a time, in
its own task, so a slow peer or a large store never holds up the scheduler's rounds; what a
check did is kept per peer (:attr:`RepairSchedule.last`) for ``memrepl status``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from memrepl.sync.antientropy import CheckResult, verify_digests
from memrepl.sync.manager import MemorySyncManager

__all__ = ["RepairSchedule"]

log = logging.getLogger(__name__)


def _interval(value: float | None) -> float:
    return math.inf if value is None or value <= 0 else value


class RepairSchedule:
    """The anti-entropy timers of a node's scheduler."""

    def __init__(
        self,
        manager: MemorySyncManager,
        peers: Callable[[], list[str]],
        *,
        check_interval_s: float | None,
        verify_interval_s: float | None,
    ) -> None:
        self.manager = manager
        self._peers = peers
        self.check_interval_s = _interval(check_interval_s)
        self.verify_interval_s = _interval(verify_interval_s)
        self._next_check = math.inf
        self._next_verify = math.inf
        self._task: asyncio.Task[None] | None = None
        #: The last check with each peer.
        self.last: dict[str, CheckResult] = {}
        #: When the last verification ended (wall ns) and how many buckets it corrected.
        self.last_verified_ns: int | None = None
        self.last_verify_corrected = 0

    def start(self, now: float) -> None:
        self._next_check = now + self.check_interval_s
        # A verification at start, when there is one at all.
        self._next_verify = now if math.isfinite(self.verify_interval_s) else math.inf

    @property
    def next_due(self) -> float:
        return min(self._next_check, self._next_verify)

    def tick(self, now: float) -> None:
        """Start a pass if one is due and none is running."""
        if self._task is not None and not self._task.done():
            return
        verify = now >= self._next_verify
        check = now >= self._next_check
        if not (verify or check):
            return
        if verify:
            self._next_verify = now + self.verify_interval_s
        if check:
            self._next_check = now + self.check_interval_s
        self._task = asyncio.get_running_loop().create_task(
            self._pass(verify=verify, check=check), name="memrepl-antientropy"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def verify(self) -> int:
        """Recompute every tier's digests from its rows now; return the buckets corrected."""
        corrected = 0
        for tier in self.manager.tiers:
            corrected += await asyncio.to_thread(verify_digests, self.manager.registered(tier))
        self.last_verified_ns = time.time_ns()
        self.last_verify_corrected = corrected
        return corrected

    async def check_all(self) -> list[CheckResult]:
        """One check with every connected peer, one after another."""
        results = []
        for peer in sorted(self._peers()):
            result = await self.manager.check_peer(peer)
            self.last[peer] = result
            results.append(result)
        return results

    async def _pass(self, *, verify: bool, check: bool) -> None:
        try:
            if verify and await self.verify():
                check = True
            if check:
                await self.check_all()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A busy or unreadable database must not end anti-entropy for good.
            log.exception("anti-entropy pass failed; it runs again at its next interval")
