"""The batch in flight, and what a lost connection means for it; and :class:`BatchPush`.

:class:`Exchanging` is what both of a round's state machines share (:class:`~memrepl.sync.rounds.
SyncRound`, and :class:`BatchPush` here): one batch at a time is in flight, and the event that
answers it is an ACK, a NACK, a timeout, an unreachable peer -- or a **lost connection**. That
one is not an ending: the batch goes out again at once, on the next connection, at most
:data:`MAX_SENDS` times in all. Sending a batch twice changes nothing: the receiver's merge is
idempotent, its cursors only move forward, and an ACK settles only the id it names.

:class:`BatchPush` sends ready-made batches (memrepl.sync.builder) one after another, each
acknowledged before the next, ending at the first one refused or unanswered: the URGENT push of
a node's scheduler, anti-entropy's repair batches, a REPLICATE request. Like a round it is a
state machine without I/O (memrepl.sync.round_events), run by memrepl.sync.driver.
"""

from __future__ import annotations

import dataclasses
from typing import NoReturn

from memrepl.errors import RoundStateError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.builder import BatchBuilder
from memrepl.sync.messages import Ack
from memrepl.sync.results import SyncResult, SyncStatus
from memrepl.sync.round_events import (
    Action,
    Answered,
    ConnectionLost,
    Done,
    Event,
    ReadDelta,
    Send,
    TimedOut,
    Unreachable,
)

__all__ = ["MAX_SENDS", "BatchPush", "Exchanging"]

#: A batch goes out at most this many times: once, and again after each lost connection.
MAX_SENDS = 3

_NEW, _SENDING, _DONE = "new", "sending", "done"


class Exchanging:
    """What both machines share: the batch in flight, and what a missing answer means."""

    def __init__(self, peer_id: str, tier: MemoryTier, builder: BatchBuilder) -> None:
        self.peer_id = peer_id
        self.tier = tier
        self.builder = builder
        self.batches = self.items = self.applied = self.conflicts = 0
        #: Bytes of every batch sent (resends included).
        self.bytes_sent = 0
        #: The :class:`Done` the machine ended with (None while it runs).
        self.done: Done | None = None
        self._in_flight: Send | None = None
        self._sends = 0

    def _send(self, batch: MemorySyncBatch, then_reads: ReadDelta | None = None) -> Send:
        packed = self.builder.pack(batch)
        self.bytes_sent += len(packed)
        self._in_flight = Send(batch, packed, then_reads=then_reads)
        self._sends = 1
        return self._in_flight

    def _count(self, ack: Ack) -> MemorySyncBatch:
        """The batch in flight was acknowledged: add it up; return it."""
        sent = self._in_flight
        assert sent is not None
        self._in_flight = None
        self.batches += 1
        self.items += len(sent.batch.items)
        self.applied += ack.applied
        self.conflicts += ack.conflicts
        return sent.batch

    def _no_answer(self, event: Event) -> Send | tuple[SyncStatus, str | None]:
        """A resend of the batch in flight (its connection was lost), or how the exchange ended:
        the status, and why (None: the status says it all)."""
        sent = self._in_flight
        assert sent is not None
        if isinstance(event, ConnectionLost):
            if self._sends < MAX_SENDS:
                self._sends += 1
                self.bytes_sent += len(sent.packed)
                return dataclasses.replace(sent, resend=True)
            return SyncStatus.UNREACHABLE, f"its connection was lost {self._sends} times"
        if isinstance(event, TimedOut):
            return SyncStatus.TIMEOUT, None
        assert isinstance(event, Unreachable)
        return SyncStatus.UNREACHABLE, event.reason

    def _no_answer_error(self, status: SyncStatus, why: str | None, *, probe: bool) -> str:
        if probe:
            text = f"peer {self.peer_id!r}: {status.value}"
            return text if why is None else f"{text} ({why})"
        assert self._in_flight is not None
        text = f"no answer for batch {self._in_flight.batch.batch_id}"
        return text if why is None else f"{text}: {why}"

    def _result(
        self, status: SyncStatus, cursor: int, error: str | None, *, snapshot: bool
    ) -> Done:
        self.done = Done(
            SyncResult(
                peer_id=self.peer_id,
                tier=self.tier,
                status=status,
                batches=self.batches,
                items=self.items,
                applied=self.applied,
                conflicts=self.conflicts,
                cursor=cursor,
                snapshot=snapshot,
                error=error,
            ),
            self.bytes_sent,
        )
        return self.done

    def _refuse(self, state: str, event: Event) -> NoReturn:
        raise RoundStateError(
            f"{type(self).__name__} with {self.peer_id!r} ({self.tier.name}) in state {state}: "
            f"cannot take {type(event).__name__}"
        )


class BatchPush(Exchanging):
    """Ready-made batches for one peer, each acknowledged before the next (module docstring).

    Ends at the first NACK, timeout or unreachable peer; the result's ``cursor`` is the last
    ACK's (a receiver reports its inbound cursor there).
    """

    def __init__(
        self, peer_id: str, tier: MemoryTier, builder: BatchBuilder, batches: list[MemorySyncBatch]
    ) -> None:
        super().__init__(peer_id, tier, builder)
        self._queue = list(batches)
        self._cursor = 0
        self.state = _NEW

    def start(self) -> list[Action]:
        if self.state != _NEW:
            raise RoundStateError(f"push to {self.peer_id!r} already started")
        return self._next()

    def handle(self, event: Event) -> list[Action]:
        if self.state != _SENDING:
            self._refuse(self.state, event)
        if isinstance(event, Answered):
            answer = event.answer
            if not isinstance(answer, Ack):
                return self._end(SyncStatus.REJECTED, f"{answer.code}: {answer.reason}")
            self._count(answer)
            self._cursor = answer.cursor
            return self._next()
        if not isinstance(event, TimedOut | ConnectionLost | Unreachable):
            self._refuse(self.state, event)
        verdict = self._no_answer(event)
        if isinstance(verdict, Send):
            return [verdict]
        status, why = verdict
        return self._end(status, self._no_answer_error(status, why, probe=True))

    def _next(self) -> list[Action]:
        if not self._queue:
            status = SyncStatus.SYNCED if self.batches else SyncStatus.UP_TO_DATE
            return self._end(status, None)
        self.state = _SENDING
        return [self._send(self._queue.pop(0))]

    def _end(self, status: SyncStatus, error: str | None) -> list[Action]:
        self.state = _DONE
        return [self._result(status, self._cursor, error, snapshot=False)]
