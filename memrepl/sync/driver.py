"""The driver of a sync round's state machine: :class:`RoundDriver` does what its actions ask.

The machines (memrepl.sync.rounds) decide; the driver does the I/O: it reads and writes the
store (the purge horizon, the changes to send, the cursors), sends batches through the mesh and
waits for their answers (memrepl.sync.awaiting), and feeds back what happened. It is the only
place where a round meets a store or a mesh, and it holds no rule of the exchange itself.

Two options change how long it waits and when it reads, never what is sent or when a cursor
moves (:class:`RoundOptions`; a node turns both on):

- **read-ahead**: while a batch waits for its ACK, the driver reads the batch the machine will
  ask for next (the action's ``then_reads``). Sending a batch read a moment earlier is always
  correct: it holds the state of every row changed in ``(since, cursor]`` when it was read, and
  any later change of such a row has a ``modified_at`` above ``cursor``, so it comes in a later
  batch. A batch read ahead is used only within :data:`READ_AHEAD_MAX_AGE_S`.
- **the lost-peer rule** (``lost_peer_wait_s``): a batch for a peer that is not connected is not
  queued -- the exchange ends ``unreachable`` at once -- and a batch whose connection was lost
  is sent again only if the peer is back within ``lost_peer_wait_s``. So a round with a peer
  that is gone ends within that time, and a node that stops never waits on one (the scheduler
  starts a round when the peer is back). Without it, the mesh queues the batch for a peer that
  is down, and the round waits for the answer up to the timeout. The rule needs a mesh that
  reports its connections (memrepl.sync.transport.LinkWatching).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memrepl.errors import MemreplError, RoundStateError
from memrepl.protocol.enums import MessageTypes
from memrepl.storage.counts import count_since
from memrepl.storage.tiers import Tier
from memrepl.sync import tombstones, vectors
from memrepl.sync.answers import SnapshotAnswers
from memrepl.sync.awaiting import Awaiting, NoAnswer
from memrepl.sync.batches import read_delta
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.push import BatchPush
from memrepl.sync.round_events import (
    Action,
    Answered,
    AwaitRequest,
    ConnectionLost,
    Counted,
    CountItems,
    CursorTaken,
    DeltaRead,
    Done,
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
from memrepl.sync.rounds import SyncRound
from memrepl.sync.transport import Mesh

__all__ = ["READ_AHEAD_MAX_AGE_S", "RoundDriver", "RoundOptions"]

log = logging.getLogger(__name__)

#: A batch read ahead is used only this soon after it was read.
READ_AHEAD_MAX_AGE_S = 5.0
#: Event-loop turns the driver lets pass (the batch reaching the socket) before reading ahead.
READ_AHEAD_YIELDS = 6

#: ``on_refused(peer_id, tier, code, reason)``: the peer refused one of this node's batches.
Refused = Callable[[str, int, str, str], None]


@dataclass(frozen=True, slots=True)
class RoundOptions:
    """How a :class:`RoundDriver` waits and reads (module docstring); both off by default."""

    read_ahead: bool = False
    #: None: no lost-peer rule.
    lost_peer_wait_s: float | None = None


@dataclass(slots=True)
class _Run:
    """What the driver keeps while it runs one machine."""

    machine: SyncRound | BatchPush
    memory: Tier | None
    wanted: asyncio.Future[str] | None = None
    #: A read done ahead: the action it answers, when it was read, and what it read.
    ahead: tuple[ReadDelta, float, DeltaRead] | None = None


class RoundDriver:
    """Runs round and push machines for one sync manager over its mesh (module docstring)."""

    def __init__(
        self,
        mesh: Mesh,
        awaiting: Awaiting,
        answers: SnapshotAnswers,
        *,
        ack_timeout_s: float,
        max_batch_items: int,
        on_refused: Refused,
        options: RoundOptions | None = None,
    ) -> None:
        self.mesh = mesh
        self.awaiting = awaiting
        self.answers = answers
        self.ack_timeout_s = ack_timeout_s
        self.max_batch_items = max_batch_items
        self.on_refused = on_refused
        self.options = options or RoundOptions()

    async def run(self, machine: SyncRound | BatchPush, memory: Tier | None = None) -> Done:
        """Drive ``machine`` to its end; ``memory`` is the tier a round reads and records in."""
        run = _Run(machine, memory)
        actions: deque[Action] = deque(machine.start())
        try:
            while actions:
                action = actions.popleft()
                if isinstance(action, Done):
                    return action
                event = await self._perform(run, action)
                if event is not None:
                    if actions:
                        raise RoundStateError(f"{action!r} was not the last action of its list")
                    actions.extend(machine.handle(event))
            raise RoundStateError(f"{type(machine).__name__} stopped without a result")
        except BaseException:
            if isinstance(machine, SyncRound):
                for late in machine.abort():
                    try:
                        await self._perform(run, late)
                    except Exception:
                        # A closed store must not hide why the round ended.
                        log.warning("could not finish an ended round (%s)", late, exc_info=True)
            raise

    async def _perform(self, run: _Run, action: Action) -> Event | None:
        machine = run.machine
        peer, tier = machine.peer_id, machine.tier
        if isinstance(action, Send):
            return await self._send(run, action)
        if isinstance(action, ExpectRequest):
            run.wanted = self.answers.expect(peer, tier)
            return None
        if isinstance(action, StopExpecting):
            if run.wanted is not None:
                self.answers.done_expecting(peer, tier, run.wanted)
                run.wanted = None
            return None
        if isinstance(action, AwaitRequest):
            return await self._await_request(run, action)
        memory = run.memory
        if memory is None:
            raise RoundStateError(f"{action!r} needs a tier")
        if isinstance(action, ReadHorizon):
            with memory.store.read() as conn:
                return HorizonRead(tombstones.purged_through(conn, tier))
        if isinstance(action, ReadDelta):
            return self._read(run, memory, action)
        if isinstance(action, CountItems):
            exclude = None if action.snapshot or action.echoes else peer
            with memory.store.read() as conn:
                total = count_since(conn, memory.spec, action.since, exclude_received_from=exclude)
            return Counted(total)
        if isinstance(action, TakeCursor):
            return CursorTaken(self._take_cursor(memory, peer, action.cursor))
        if isinstance(action, RecordCursor):
            with memory.store.write() as conn:
                vectors.advance_acked_cursor(conn, tier, peer, action.cursor, time.time_ns())
            return None
        raise RoundStateError(f"unknown action {action!r}")

    # -- sending ------------------------------------------------------------------------------

    async def _send(self, run: _Run, action: Send) -> Event:
        peer = run.machine.peer_id
        wait_s = self.options.lost_peer_wait_s
        if wait_s is not None and peer not in self.mesh.peers():
            if not action.resend:
                return Unreachable(f"{peer!r} is not connected")
            if not await self.awaiting.wait_connected(self.mesh, peer, wait_s):
                log.info(
                    "batch %s: %s is gone and not back within %g s",
                    action.batch.batch_id,
                    peer,
                    wait_s,
                )
                return Unreachable(f"{peer!r} is gone, and not back within {wait_s:g} s")
        if action.resend:
            log.info("batch %s: its connection was lost; sending it again", action.batch.batch_id)
        asking = self.awaiting.ask(
            self.mesh,
            peer,
            action.batch.batch_id,
            MessageTypes.VECTOR_SYNC,
            action.packed,
            timeout_s=self.ack_timeout_s,
        )
        then = action.then_reads
        if not (self.options.read_ahead and then is not None and run.memory is not None):
            answer = await asking
        else:
            waiting = asyncio.ensure_future(asking)
            try:
                # Let the batch reach the socket first, then read the next one meanwhile.
                for _ in range(READ_AHEAD_YIELDS):
                    await asyncio.sleep(0)
                if not waiting.done():
                    self._read_ahead(run, run.memory, then)
                answer = await waiting
            finally:
                if not waiting.done():
                    waiting.cancel()
                    await asyncio.gather(waiting, return_exceptions=True)
        return self._event_for(run, answer)

    def _event_for(self, run: _Run, answer: object) -> Event:
        if isinstance(answer, Nack):
            machine = run.machine
            self.on_refused(machine.peer_id, int(machine.tier), answer.code, answer.reason)
            return Answered(answer)
        if isinstance(answer, Ack):
            return Answered(answer)
        if answer is NoAnswer.LOST:
            return ConnectionLost()
        if answer is NoAnswer.UNREACHABLE:
            return Unreachable("the mesh has no connection to it")
        return TimedOut()

    async def _await_request(self, run: _Run, action: AwaitRequest) -> Event:
        wanted = run.wanted
        if wanted is None:
            raise RoundStateError("AwaitRequest without ExpectRequest")
        if not wanted.done() and action.wait:
            lost = self.awaiting.loss_of(run.machine.peer_id)
            either: set[asyncio.Future[Any]] = {wanted, lost}
            try:
                await asyncio.wait(
                    either, timeout=self.ack_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                lost.cancel()
            if lost.done() and not lost.cancelled() and not wanted.done():
                return ConnectionLost()
        if wanted.done() and not wanted.cancelled():
            return SnapshotRequested(wanted.result())
        return TimedOut()

    # -- the store ----------------------------------------------------------------------------

    def _read(self, run: _Run, memory: Tier, action: ReadDelta) -> DeltaRead:
        ahead, run.ahead = run.ahead, None
        if (
            ahead is not None
            and ahead[0] == action
            and time.monotonic() - ahead[1] < READ_AHEAD_MAX_AGE_S
        ):
            found = ahead[2]
            if action.snapshot:
                # A snapshot's purge horizon is read after every other batch: now.
                with memory.store.read() as conn:
                    horizon = tombstones.purged_through(conn, memory.tier)
                found = DeltaRead(found.delta, found.sync_vector, horizon)
            return found
        return self._read_now(run, memory, action)

    def _read_now(self, run: _Run, memory: Tier, action: ReadDelta) -> DeltaRead:
        peer = run.machine.peer_id
        with memory.store.read() as conn:
            vector = vectors.acked_cursors(conn, memory.tier)
            delta = read_delta(
                conn,
                memory.spec,
                action.since,
                max_items=self.max_batch_items,
                exclude_peer=None if action.snapshot or action.echoes else peer,
            )
            horizon = tombstones.purged_through(conn, memory.tier) if action.snapshot else 0
        return DeltaRead(delta, vector, horizon)

    def _read_ahead(self, run: _Run, memory: Tier, action: ReadDelta) -> None:
        try:
            found = self._read_now(run, memory, action)
        except MemreplError as exc:
            log.debug("read-ahead for %s failed: %s", run.machine.peer_id, exc)
            return
        run.ahead = (action, time.monotonic(), found)

    @staticmethod
    def _take_cursor(memory: Tier, peer: str, cursor: int) -> int | None:
        """Record the peer's reported cursor as its sync vector entry; the entry before. None
        (nothing recorded) when the cursor is beyond this node's clock: no batch of this node
        ever carried it."""
        store = memory.store
        with store.write() as conn, store.stamping(conn) as clock:
            if cursor > clock.last_ns:
                log.warning(
                    "%s reported cursor %d for the %s tier, beyond this node's clock (%d): refused",
                    peer,
                    cursor,
                    memory.tier.name.lower(),
                    clock.last_ns,
                )
                return None
            before = vectors.acked_cursors(conn, memory.tier).get(peer, 0)
            vectors.set_acked_cursor(conn, memory.tier, peer, cursor, time.time_ns())
        return before
