"""When a running node runs anti-entropy: digest checks with its peers and its own verification.

Two timers, both settings of the node (:class:`~memrepl.node.config.NodeSettings`):

- every ``antientropy_interval_s`` (180 s), one check with each connected peer
  (:meth:`MemorySyncManager.check_peer`), each peer's in a task of its own;
- at start and every ``verify_interval_s`` (3600 s), the node recomputes its digests from its
  rows and corrects them (:func:`memrepl.sync.antientropy.verify_digests`), in a worker thread:
  it is a full read of every tier (about 3 µs a row), and it is what finds rows changed outside
  memrepl. Checks due meanwhile wait for it to end, and a verification that corrected anything
  is followed by checks with every peer at once.

The rules that keep it right: everything runs in tasks of its own, so a slow peer or a large
store never holds up the scheduler's rounds; at most one verification runs at a time, and at
most one check per peer -- a peer that answers slowly (or never, until the ACK timeout) delays
only its own check, never those with the others; and every due time moves on when it comes, so
a check still running never leaves a due time in the past for the scheduler to wake up for
again and again. What a check did is kept per peer (:attr:`RepairSchedule.last`) for
``memrepl status``.
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
        self._verifying: asyncio.Task[None] | None = None
        #: Checks came due while a verification ran: they start when it ends.
        self._check_after_verify = False
        self._checks: dict[str, asyncio.Task[None]] = {}
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
        """Start what is due (see the module docstring)."""
        check = now >= self._next_check
        if check:
            self._next_check = now + self.check_interval_s
        if now >= self._next_verify:
            self._next_verify = now + self.verify_interval_s
            if not _running(self._verifying):
                self._verifying = asyncio.get_running_loop().create_task(
                    self._verify_then_check(check=check), name="memrepl-verify"
                )
                return
        if check:
            if _running(self._verifying):
                self._check_after_verify = True
            else:
                self._start_checks()

    async def stop(self) -> None:
        tasks = [t for t in (self._verifying, *self._checks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._verifying = None
        self._checks.clear()

    async def verify(self) -> int:
        """Recompute every tier's digests from its rows now; return the buckets corrected."""
        corrected = 0
        for tier in self.manager.tiers:
            corrected += await asyncio.to_thread(verify_digests, self.manager.registered(tier))
        self.last_verified_ns = time.time_ns()
        self.last_verify_corrected = corrected
        return corrected

    async def check_all(self) -> list[CheckResult]:
        """One check with every connected peer, all at once."""
        peers = sorted(self._peers())
        results = await asyncio.gather(*(self.manager.check_peer(peer) for peer in peers))
        self.last.update(zip(peers, results, strict=True))
        return list(results)

    def _start_checks(self) -> None:
        """A check with every connected peer that has none running."""
        self._checks = {peer: task for peer, task in self._checks.items() if not task.done()}
        loop = asyncio.get_running_loop()
        for peer in self._peers():
            if peer not in self._checks:
                self._checks[peer] = loop.create_task(
                    self._check(peer), name=f"memrepl-antientropy-{peer}"
                )

    async def _check(self, peer: str) -> None:
        try:
            self.last[peer] = await self.manager.check_peer(peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A busy or unreadable database must not end anti-entropy for good.
            log.exception(
                "anti-entropy check with %s failed; it runs again at its next interval", peer
            )

    async def _verify_then_check(self, *, check: bool) -> None:
        corrected = 0
        try:
            corrected = await self.verify()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("verifying the digests failed; it runs again at its next interval")
        if check or corrected or self._check_after_verify:
            self._check_after_verify = False
            self._start_checks()


def _running(task: asyncio.Task[None] | None) -> bool:
    return task is not None and not task.done()
