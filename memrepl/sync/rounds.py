"""A sync round as a state machine, without I/O: :class:`SyncRound`.

A machine takes events and answers with actions (memrepl.sync.round_events): ``start()`` gives
the first actions, ``handle(event)`` the next ones, until a :class:`Done`. It reads no store, sends
nothing and never waits; its driver (memrepl.sync.driver) does what the actions ask, over a mesh
and a store, and unit tests drive it by hand.

**A round** (``MemorySyncManager.sync_with_peer``), for one peer and tier:

1. read this node's purge horizon; send the probe (an empty batch carrying it). Its ACK reports
   the receiver's durable inbound cursor: the round resumes there (record it as the peer's sync
   vector entry -- unless it is beyond this node's clock: no batch of ours carried it, refused);
2. a receiver below the horizon may have missed deletes no delta carries any more: it asks for
   a snapshot (a REPLICATE request), and the round sends the tier's whole state instead,
   opened by an empty marked batch and closed by an empty final one that carries the horizon
   read after every other batch (memrepl.sync.snapshots). A round answering a request made on
   the receiver's own account is given its id and probes without a horizon;
3. otherwise batches of the change stream after the cursor, each acknowledged before the next is
   read, until one covers everything. Below what it acknowledged before, the peer may have lost
   data, so the echo filter is off (its own items go back to it).

The rules that keep it right: a cursor is recorded only after the ACK of a batch that reaches it
(every :data:`ACK_SAVE_EVERY_BATCHES` batches and when the round ends, however it ends -- and on
:meth:`SyncRound.abort` for a cancelled round), and the round starts from the cursor the receiver
reports, so nothing unacknowledged is ever marked synced and nothing the receiver lacks is ever
skipped. **A lost connection is an event, not an ending**: the batch in flight goes out again at
once, on the next connection (memrepl.sync.push, :class:`~memrepl.sync.push.Exchanging`).
"""

from __future__ import annotations

import dataclasses

from memrepl.errors import RoundStateError
from memrepl.protocol.batch import SnapshotMark
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.builder import BatchBuilder
from memrepl.sync.messages import Ack
from memrepl.sync.observer import SyncObserver
from memrepl.sync.push import Exchanging
from memrepl.sync.results import SyncStatus
from memrepl.sync.round_events import (
    Action,
    Answered,
    AwaitRequest,
    ConnectionLost,
    Counted,
    CountItems,
    CursorTaken,
    DeltaRead,
    Event,
    ExpectRequest,
    HorizonRead,
    ReadDelta,
    ReadHorizon,
    RecordCursor,
    Send,
    SnapshotRequested,
    StopExpecting,
    TakeCursor,
    TimedOut,
    Unreachable,
)

__all__ = ["ACK_SAVE_EVERY_BATCHES", "SyncRound"]

#: A round records the acknowledged cursor every this many batches, and when it ends.
#: Recording each ACK cost a durable commit per batch on the sender; a sync vector that lags by a
#: few batches during a round is safe -- the next round starts from the receiver's own durable
#: cursor, and tombstone collection and working-memory eviction only hold back more.
ACK_SAVE_EVERY_BATCHES = 16


_NEW, _HORIZON, _PROBING, _TAKING, _AWAITING = "new", "horizon", "probing", "taking", "awaiting"
_COUNTING, _OPENING, _READING = "counting", "opening", "reading"
_SENDING, _DONE = "sending", "done"


class SyncRound(Exchanging):
    """One ``sync_with_peer`` round for one peer and tier (see the module docstring).

    ``snapshot_id``: the round answers that snapshot request. ``ack_timeout_s`` only goes into
    the message of a round that waited in vain for the peer's snapshot request. ``observer`` is
    told when the round begins (with the items it expects to send) and of each batch the peer
    acknowledges or refuses (memrepl.sync.observer).
    """

    def __init__(
        self,
        peer_id: str,
        tier: MemoryTier,
        builder: BatchBuilder,
        *,
        snapshot_id: str | None = None,
        ack_timeout_s: float = 30.0,
        observer: SyncObserver | None = None,
    ) -> None:
        super().__init__(peer_id, tier, builder)
        self.observer = observer or SyncObserver()
        #: Items the round expects to send, counted as it began (announced to the receiver).
        self.total = 0
        #: The snapshot being sent (None: a delta, unless the peer asks for one now).
        self.snapshot_id = snapshot_id
        self.ack_timeout_s = ack_timeout_s
        self.state = _NEW
        self.horizon = 0
        #: The peer's acknowledged position: what it reported, then what it acknowledged since.
        self.cursor = 0
        #: The last cursor recorded (None: nothing to record yet).
        self.saved: int | None = None
        self.echoes = False
        self._acked_before = 0
        self._expecting = False
        self._since = 0
        self._mark: SnapshotMark | None = None
        self._reached = 0
        self._last = False

    @property
    def snapshot(self) -> bool:
        """Whether this round sends a snapshot."""
        return self.snapshot_id is not None

    def start(self) -> list[Action]:
        if self.state != _NEW:
            raise RoundStateError(f"round with {self.peer_id!r} already started")
        if self.snapshot_id is None:
            self.state = _HORIZON
            return [ReadHorizon()]
        return self._probe(0)

    def handle(self, event: Event) -> list[Action]:
        state = self.state
        if state == _HORIZON and isinstance(event, HorizonRead):
            return self._probe(event.horizon)
        if state in (_PROBING, _OPENING, _SENDING):
            return self._answered(event)
        if state == _TAKING and isinstance(event, CursorTaken):
            return self._cursor_taken(event.acked_before)
        if state == _AWAITING and isinstance(event, SnapshotRequested | TimedOut | ConnectionLost):
            return self._request_awaited(event)
        if state == _COUNTING and isinstance(event, Counted):
            return self._counted(event.total)
        if state == _READING and isinstance(event, DeltaRead):
            return self._delta_read(event)
        self._refuse(state, event)

    def abort(self) -> list[Action]:
        """The driver stops early (cancelled, or failed): what must still be done -- stop
        expecting a snapshot request, record what the peer acknowledged. The machine is finished
        afterwards."""
        self.state = _DONE
        actions: list[Action] = []
        if self._expecting:
            self._expecting = False
            actions.append(StopExpecting())
        if self.saved is not None and self.cursor != self.saved:
            self.saved = self.cursor
            actions.append(RecordCursor(self.cursor))
        return actions

    # -- the steps --------------------------------------------------------------------------

    def _probe(self, horizon: int) -> list[Action]:
        self.horizon = horizon
        actions: list[Action] = []
        if horizon:
            self._expecting = True
            actions.append(ExpectRequest())
        probe = self.builder.probe(self.tier, self.peer_id, purge_horizon=horizon or None)
        actions.append(self._send(probe))
        self.state = _PROBING
        return actions

    def _answered(self, event: Event) -> list[Action]:
        if not isinstance(event, Answered):
            if not isinstance(event, TimedOut | ConnectionLost | Unreachable):
                self._refuse(self.state, event)
            verdict = self._no_answer(event)
            if isinstance(verdict, Send):
                return [verdict]
            status, why = verdict
            return self._finish(
                status, self._no_answer_error(status, why, probe=self.state == _PROBING)
            )
        answer = event.answer
        if not isinstance(answer, Ack):
            self._in_flight = None
            self.observer.batch_rejected(self.peer_id, self.tier, code=answer.code)
            return self._finish(SyncStatus.REJECTED, f"{answer.code}: {answer.reason}")
        if self.state == _PROBING:
            # The receiver's durable inbound cursor is the truth about what it holds: resume
            # there, even below our own record (it may have lost data) -- never skip past it.
            self._in_flight = None
            self.cursor = answer.cursor
            self.state = _TAKING
            return [TakeCursor(answer.cursor)]
        batch = self._count(answer)
        self.observer.batch_acked(
            self.peer_id,
            self.tier,
            items=len(batch.items),
            applied=answer.applied,
            conflicts=answer.conflicts,
        )
        if self.state == _OPENING:
            return self._read()
        self._since = self._reached
        self.cursor = max(self.cursor, self._reached)
        actions: list[Action] = []
        if self.batches % ACK_SAVE_EVERY_BATCHES == 0:
            actions.append(RecordCursor(self.cursor))
            self.saved = self.cursor
        if self._last:
            return actions + self._finish(SyncStatus.SYNCED)
        return actions + self._read()

    def _cursor_taken(self, acked_before: int | None) -> list[Action]:
        if acked_before is None:
            error = (
                f"bad-ack-cursor: {self.peer_id} reports cursor {self.cursor}, beyond every "
                "change this node ever made"
            )
            self.cursor = 0
            return self._finish(SyncStatus.REJECTED, error)
        self._acked_before = acked_before
        if self._expecting:
            # Below the purge horizon a delta can no longer carry every delete: the peer was
            # told, and asks for a snapshot (it may have asked already, whatever its cursor).
            self.state = _AWAITING
            return [AwaitRequest(wait=self.cursor < self.horizon)]
        return self._begin()

    def _request_awaited(self, event: Event) -> list[Action]:
        self._expecting = False
        if isinstance(event, SnapshotRequested):
            self.snapshot_id = event.snapshot_id
            return [StopExpecting(), *self._begin()]
        if isinstance(event, ConnectionLost):
            return [
                StopExpecting(),
                *self._finish(
                    SyncStatus.UNREACHABLE,
                    f"the connection to {self.peer_id!r} was lost while waiting for its "
                    "snapshot request",
                ),
            ]
        if self.cursor < self.horizon:
            return [
                StopExpecting(),
                *self._finish(
                    SyncStatus.TIMEOUT,
                    f"{self.peer_id} is below this node's purge horizon and did not ask for a "
                    f"snapshot within {self.ack_timeout_s:g} s",
                ),
            ]
        return [StopExpecting(), *self._begin()]

    def _begin(self) -> list[Action]:
        # Below what it acknowledged before, the peer may have lost data, including what it once
        # sent us: resend from its cursor without holding back its own items (the echo filter).
        self.echoes = self.cursor < self._acked_before
        self.saved = self.cursor
        self._since = 0 if self.snapshot else self.cursor
        self.state = _COUNTING
        return [CountItems(self._since, self.snapshot, self.echoes)]

    def _counted(self, total: int) -> list[Action]:
        self.total = total
        self.observer.round_started(self.peer_id, self.tier, total=total, snapshot=self.snapshot)
        if self.snapshot_id is None:
            return self._read()
        self._mark = SnapshotMark(self.snapshot_id)
        # An empty opening batch, so the receiver knows the snapshot started even if the tier
        # is empty and the next batch is already the final one.
        self.state = _OPENING
        return [self._send(self.builder.probe(self.tier, self.peer_id, snapshot=self._mark))]

    def _reading(self) -> ReadDelta:
        return ReadDelta(self._since, self.snapshot, self.echoes)

    def _read(self) -> list[Action]:
        self.state = _READING
        return [self._reading()]

    def _delta_read(self, event: DeltaRead) -> list[Action]:
        delta = event.delta
        reached = delta.cursor
        done = not delta.items and reached <= self._since
        mark = self._mark
        if done and mark is None:
            return self._finish(SyncStatus.SYNCED if self.batches else SyncStatus.UP_TO_DATE)
        # What is left after this batch, as far as the count at the start knew.
        pending = 0 if done else max(0, self.total - self.items - len(delta.items))
        if mark is None:
            batch = self.builder.delta(
                self.tier, self.peer_id, delta, sync_vector=event.sync_vector, pending=pending
            )
        else:
            # The last batch of a snapshot is an empty one marked final, with the purge horizon
            # read after every other batch: what it may make the peer forget.
            batch = self.builder.delta(
                self.tier,
                self.peer_id,
                delta,
                sync_vector=event.sync_vector,
                snapshot=dataclasses.replace(mark, final=done),
                purge_horizon=event.horizon if done else None,
                pending=pending,
            )
        self._reached, self._last = reached, done
        then = None if done else ReadDelta(reached, self.snapshot, self.echoes)
        self.state = _SENDING
        return [self._send(batch, then)]

    def _finish(self, status: SyncStatus, error: str | None = None) -> list[Action]:
        actions: list[Action] = []
        if self._expecting:
            self._expecting = False
            actions.append(StopExpecting())
        if self.saved is not None and self.cursor != self.saved:
            actions.append(RecordCursor(self.cursor))
            self.saved = self.cursor
        self.state = _DONE
        actions.append(self._result(status, self.cursor, error, snapshot=self.snapshot))
        return actions
