"""The sender's half of a snapshot: answering the REPLICATE requests peers send.

A snapshot is only ever sent because the receiver asked for it (memrepl.sync.snapshots); the
request's batch id is the snapshot id every batch of the answer carries. Requests reach the
sender two ways, and this module routes each:

- **Asked for in a round.** A round's probe carries the sender's purge horizon; a receiver whose
  inbound cursor is below it asks for a snapshot. The round registers that it expects the request
  (:meth:`SnapshotAnswers.expect`) BEFORE sending the probe -- the request may arrive before the
  round has even read the probe's ACK -- and then sends the snapshot itself.
- **Asked for on the receiver's own account** (a bootstrap, a repair): answered by a background
  round (:meth:`SnapshotAnswers.requested` starts it).

The rule that keeps it right: at most one background answer per (peer, tier) is queued at a
time. A request arriving while one is queued only replaces the snapshot id it will use (the
receiver accepts only its latest request anyway), so a peer cannot pile up snapshots of a tier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from memrepl.protocol.enums import MemoryTier

Key = tuple[str, MemoryTier]


class SnapshotAnswers:
    """Routes a manager's incoming REPLICATE requests (see the module docstring).

    ``start_answer(peer_id, tier)`` starts a background task that will call :meth:`take` for the
    snapshot id to send (under the round lock of that peer and tier), and returns it (or None
    when no event loop runs).
    """

    def __init__(self, start_answer: Callable[[str, MemoryTier], asyncio.Task[None] | None]):
        self._start_answer = start_answer
        self._waiting: dict[Key, asyncio.Future[str]] = {}
        self._queued: dict[Key, str] = {}

    def expect(self, peer_id: str, tier: MemoryTier) -> asyncio.Future[str]:
        """A round is about to tell ``peer_id`` its purge horizon: the future gets the snapshot
        id if the peer asks. Call :meth:`done_expecting` when the round no longer waits."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[(peer_id, tier)] = future
        return future

    def done_expecting(self, peer_id: str, tier: MemoryTier, future: asyncio.Future[str]) -> None:
        key = (peer_id, tier)
        if self._waiting.get(key) is future:
            del self._waiting[key]
        if not future.done():
            future.cancel()

    def requested(
        self, peer_id: str, tier: MemoryTier, snapshot_id: str
    ) -> asyncio.Task[None] | None:
        """``peer_id`` asked for a snapshot of ``tier``: hand it to the round waiting for it, or
        queue a background answer. Returns the task started, if one was."""
        key = (peer_id, tier)
        waiting = self._waiting.pop(key, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(snapshot_id)
            return None
        queued = key in self._queued
        self._queued[key] = snapshot_id
        if queued:
            return None
        task = self._start_answer(peer_id, tier)
        if task is None:
            self._queued.pop(key, None)
        return task

    def take(self, peer_id: str, tier: MemoryTier) -> str | None:
        """The snapshot id a background answer sends now (the latest request), if any."""
        return self._queued.pop((peer_id, tier), None)
