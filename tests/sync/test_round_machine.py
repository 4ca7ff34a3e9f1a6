"""The sync round's state machine, driven by hand: no mesh, no store, no event loop.

Each test plays the driver: it feeds the events a store and a peer would produce and checks the
actions the machine asks for. A property test plays a peer whose connection is lost at random
moments (before or after the batch arrives) and checks the rule that keeps a round right: a
recorded cursor never passes what the peer holds, and a round that says SYNCED left the peer
holding everything.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memrepl.errors import RoundStateError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, SyncFlags, SyncOperation
from memrepl.protocol.item import MemorySyncItem
from memrepl.sync.batches import Delta
from memrepl.sync.builder import BatchBuilder
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.observer import SyncObserver
from memrepl.sync.push import MAX_SENDS, BatchPush
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
    Done,
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
from memrepl.sync.rounds import ACK_SAVE_EVERY_BATCHES, SyncRound

TIER = MemoryTier.WORKING
PEER = "b"


def builder() -> BatchBuilder:
    counter = itertools.count()
    return BatchBuilder("a", max_batch_items=100, new_id=lambda: f"batch-{next(counter)}")


def item(n: int) -> MemorySyncItem:
    return MemorySyncItem(
        item_id=f"item-{n}",
        timestamp_ns=n,
        tier=TIER,
        operation=SyncOperation.INSERT,
        payload=b'{"n": %d}' % n,
    )


def ack(batch: MemorySyncBatch, cursor: int, applied: int = 0) -> Answered:
    return Answered(Ack(batch.batch_id, int(TIER), cursor, applied, 0))


def only_send(actions: list[Action]) -> Send:
    assert len(actions) == 1 and isinstance(actions[0], Send), actions
    return actions[0]


def started(horizon: int = 0, reported: int = 0, acked_before: int = 0) -> SyncRound:
    """A round past its probe: the peer reported ``reported``, it acknowledged
    ``acked_before`` before."""
    machine = SyncRound(PEER, TIER, builder())
    assert machine.start() == [ReadHorizon()]
    probe = only_send(machine.handle(HorizonRead(horizon)))
    assert machine.handle(ack(probe.batch, reported)) == [TakeCursor(reported)]
    return machine


def test_a_delta_round_from_probe_to_synced() -> None:
    machine = SyncRound(PEER, TIER, builder())
    assert machine.start() == [ReadHorizon()]
    probe = only_send(machine.handle(HorizonRead(0)))
    assert (probe.batch.items, probe.batch.purge_horizon, probe.batch.cursor) == ((), None, None)
    assert MemorySyncBatch.unpack(probe.packed) == probe.batch
    # The peer holds everything up to 5: the round resumes there, echoes filtered.
    assert machine.handle(ack(probe.batch, 5)) == [TakeCursor(5)]
    assert machine.handle(CursorTaken(acked_before=5)) == [CountItems(5, False, False)]
    # It counted 3 items to send; the batch of 2 announces 1 more.
    assert machine.handle(Counted(3)) == [ReadDelta(5, False, False)]
    sent = only_send(machine.handle(DeltaRead(Delta([item(6), item(7)], 9), {"c": 3})))
    batch = sent.batch
    assert (batch.cursor, batch.sync_vector, len(batch.items)) == (9, {"c": 3}, 2)
    assert batch.pending == 1
    assert batch.flags == SyncFlags.DELTA_ONLY | SyncFlags.REQUIRES_ACK
    assert sent.then_reads == ReadDelta(9, False, False)
    assert machine.handle(ack(batch, 9, applied=2)) == [ReadDelta(9, False, False)]
    *rest, done = machine.handle(DeltaRead(Delta([], 9)))
    assert rest == [RecordCursor(9)]
    assert isinstance(done, Done)
    result = done.result
    assert (result.status, result.batches, result.items, result.applied, result.cursor) == (
        SyncStatus.SYNCED,
        1,
        2,
        2,
        9,
    )
    assert done.bytes_sent == len(probe.packed) + len(sent.packed)
    with pytest.raises(RoundStateError):
        machine.handle(TimedOut())


def test_nothing_to_send_is_up_to_date_and_records_nothing() -> None:
    machine = started(reported=4)
    assert machine.handle(CursorTaken(4)) == [CountItems(4, False, False)]
    assert machine.handle(Counted(0)) == [ReadDelta(4, False, False)]
    (done,) = machine.handle(DeltaRead(Delta([], 4)))
    assert isinstance(done, Done) and done.result.status is SyncStatus.UP_TO_DATE


def test_a_peer_below_what_it_acknowledged_gets_its_own_items_back() -> None:
    machine = started(reported=2)
    assert machine.handle(CursorTaken(acked_before=8)) == [CountItems(2, False, True)]
    assert machine.handle(Counted(0)) == [ReadDelta(2, False, True)]


def test_a_cursor_beyond_this_nodes_clock_is_refused() -> None:
    machine = started(reported=10**18)
    (done,) = machine.handle(CursorTaken(acked_before=None))
    assert isinstance(done, Done)
    assert done.result.status is SyncStatus.REJECTED
    assert done.result.error is not None and done.result.error.startswith("bad-ack-cursor")


def test_a_lost_connection_resends_the_batch_in_flight() -> None:
    machine = started(reported=0)
    machine.handle(CursorTaken(0))
    machine.handle(Counted(0))
    first = only_send(machine.handle(DeltaRead(Delta([item(1)], 1))))
    again = only_send(machine.handle(ConnectionLost()))
    assert again.resend and again.batch == first.batch and again.packed == first.packed
    for _ in range(MAX_SENDS - 2):
        only_send(machine.handle(ConnectionLost()))
    (done,) = machine.handle(ConnectionLost())
    assert isinstance(done, Done) and done.result.status is SyncStatus.UNREACHABLE
    assert done.bytes_sent >= MAX_SENDS * len(first.packed)


def test_the_cursor_is_recorded_every_few_batches_and_at_the_end() -> None:
    machine = started(reported=0)
    machine.handle(CursorTaken(0))
    machine.handle(Counted(0))
    recorded = []
    for n in range(1, ACK_SAVE_EVERY_BATCHES + 3):
        sent = only_send(machine.handle(DeltaRead(Delta([item(n)], n))))
        actions = machine.handle(ack(sent.batch, n))
        recorded += [a.cursor for a in actions if isinstance(a, RecordCursor)]
        assert actions[-1] == ReadDelta(n, False, False)
    assert recorded == [ACK_SAVE_EVERY_BATCHES]
    # A NACK ends the round; what was acknowledged since is recorded, nothing more.
    sent = only_send(machine.handle(DeltaRead(Delta([item(99)], 99))))
    record, done = machine.handle(Answered(Nack(sent.batch.batch_id, "clock-skew", "ahead")))
    assert record == RecordCursor(ACK_SAVE_EVERY_BATCHES + 2)
    assert isinstance(done, Done)
    assert (done.result.status, done.result.error) == (SyncStatus.REJECTED, "clock-skew: ahead")


def test_abort_records_what_was_acknowledged() -> None:
    machine = started(reported=0)
    machine.handle(CursorTaken(0))
    machine.handle(Counted(0))
    sent = only_send(machine.handle(DeltaRead(Delta([item(1)], 3))))
    machine.handle(ack(sent.batch, 3))
    assert machine.abort() == [RecordCursor(3)]


def test_a_probe_without_answer_ends_the_round() -> None:
    machine = SyncRound(PEER, TIER, builder())
    machine.start()
    only_send(machine.handle(HorizonRead(0)))
    (done,) = machine.handle(TimedOut())
    assert isinstance(done, Done)
    assert (done.result.status, done.result.error) == (SyncStatus.TIMEOUT, "peer 'b': timeout")
    machine = SyncRound(PEER, TIER, builder())
    machine.start()
    only_send(machine.handle(HorizonRead(0)))
    (done,) = machine.handle(Unreachable("not connected"))
    assert isinstance(done, Done) and done.result.status is SyncStatus.UNREACHABLE


def test_a_peer_below_the_purge_horizon_gets_the_snapshot_it_asks_for() -> None:
    machine = SyncRound(PEER, TIER, builder())
    machine.start()
    expect, probe = machine.handle(HorizonRead(50))
    assert expect == ExpectRequest()
    assert isinstance(probe, Send) and probe.batch.purge_horizon == 50
    assert machine.handle(ack(probe.batch, 10)) == [TakeCursor(10)]
    assert machine.handle(CursorTaken(10)) == [AwaitRequest(wait=True)]
    stop, count = machine.handle(SnapshotRequested("snap-1"))
    assert (stop, count) == (StopExpecting(), CountItems(0, True, False))
    opening = only_send(machine.handle(Counted(1)))
    assert opening.batch.snapshot is not None and opening.batch.snapshot.snapshot_id == "snap-1"
    assert not opening.batch.items and not opening.batch.snapshot.final
    # A snapshot reads the whole state from 0, echoes included.
    assert machine.handle(ack(opening.batch, 10)) == [ReadDelta(0, True, False)]
    middle = only_send(machine.handle(DeltaRead(Delta([item(1)], 20))))
    assert middle.batch.snapshot is not None and not middle.batch.snapshot.final
    assert middle.batch.purge_horizon is None and middle.batch.flags == SyncFlags.REQUIRES_ACK
    assert machine.handle(ack(middle.batch, 10)) == [ReadDelta(20, True, False)]
    final = only_send(machine.handle(DeltaRead(Delta([], 20), horizon=55)))
    assert final.batch.snapshot is not None and final.batch.snapshot.final
    assert final.batch.purge_horizon == 55
    record, done = machine.handle(ack(final.batch, 20))
    assert record == RecordCursor(20)
    assert isinstance(done, Done) and done.result.snapshot and done.result.ok


def test_a_peer_that_never_asks_ends_the_round_in_a_timeout() -> None:
    machine = SyncRound(PEER, TIER, builder())
    machine.start()
    _, probe = machine.handle(HorizonRead(50))
    assert isinstance(probe, Send)
    machine.handle(ack(probe.batch, 10))
    assert machine.handle(CursorTaken(10)) == [AwaitRequest(wait=True)]
    stop, done = machine.handle(TimedOut())
    assert stop == StopExpecting()
    assert isinstance(done, Done) and done.result.status is SyncStatus.TIMEOUT


def test_at_the_horizon_a_request_is_only_taken_if_it_came() -> None:
    machine = SyncRound(PEER, TIER, builder())
    machine.start()
    _, probe = machine.handle(HorizonRead(50))
    assert isinstance(probe, Send)
    machine.handle(ack(probe.batch, 60))
    assert machine.handle(CursorTaken(60)) == [AwaitRequest(wait=False)]
    assert machine.handle(TimedOut()) == [StopExpecting(), CountItems(60, False, False)]


def test_answering_a_request_probes_without_a_horizon() -> None:
    machine = SyncRound(PEER, TIER, builder(), snapshot_id="asked")
    probe = only_send(machine.start())
    assert probe.batch.purge_horizon is None
    machine.handle(ack(probe.batch, 0))
    assert machine.handle(CursorTaken(0)) == [CountItems(0, True, False)]
    opening = only_send(machine.handle(Counted(0)))
    assert opening.batch.snapshot is not None and opening.batch.snapshot.snapshot_id == "asked"


class Recorder(SyncObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def round_started(self, peer_id: str, tier: MemoryTier, *, total: int, snapshot: bool) -> None:
        self.calls.append(("started", (peer_id, tier, total, snapshot)))

    def batch_acked(
        self, peer_id: str, tier: MemoryTier, *, items: int, applied: int, conflicts: int
    ) -> None:
        self.calls.append(("acked", (items, applied)))

    def batch_rejected(self, peer_id: str, tier: MemoryTier, *, code: str) -> None:
        self.calls.append(("rejected", code))


def test_the_observer_hears_the_start_each_acknowledged_batch_and_a_refusal() -> None:
    recorder = Recorder()
    machine = SyncRound(PEER, TIER, builder(), observer=recorder)
    machine.start()
    probe = only_send(machine.handle(HorizonRead(0)))
    machine.handle(ack(probe.batch, 0))
    machine.handle(CursorTaken(0))
    machine.handle(Counted(2))
    first = only_send(machine.handle(DeltaRead(Delta([item(1)], 1))))
    assert first.batch.pending == 1
    machine.handle(ack(first.batch, 1, applied=1))
    second = only_send(machine.handle(DeltaRead(Delta([item(2)], 2))))
    assert second.batch.pending == 0
    machine.handle(Answered(Nack(second.batch.batch_id, "clock-skew", "ahead")))
    # The probe is not a batch of the round's items: its ACK is not reported.
    assert recorder.calls == [
        ("started", (PEER, TIER, 2, False)),
        ("acked", (1, 1)),
        ("rejected", "clock-skew"),
    ]


def test_an_event_out_of_turn_is_a_driver_bug() -> None:
    machine = SyncRound(PEER, TIER, builder())
    with pytest.raises(RoundStateError):
        machine.handle(CursorTaken(0))
    machine.start()
    with pytest.raises(RoundStateError, match="cannot take DeltaRead"):
        machine.handle(DeltaRead(Delta([], 0)))
    with pytest.raises(RoundStateError):
        machine.start()


def test_a_push_sends_each_batch_after_the_last_was_acknowledged() -> None:
    made = builder()
    batches = made.items(TIER, PEER, [item(n) for n in range(250)])
    assert [len(b.items) for b in batches] == [100, 100, 50]
    assert all(b.cursor is None for b in batches)
    push = BatchPush(PEER, TIER, made, batches)
    sent = only_send(push.start())
    assert sent.batch == batches[0]
    assert only_send(push.handle(ConnectionLost())).batch == batches[0]
    sent = only_send(push.handle(ack(batches[0], 0, applied=100)))
    assert sent.batch == batches[1]
    (done,) = push.handle(Answered(Nack(batches[1].batch_id, "clock-skew", "ahead")))
    assert isinstance(done, Done)
    assert (done.result.status, done.result.batches, done.result.applied) == (
        SyncStatus.REJECTED,
        1,
        100,
    )


def test_repair_batches_are_marked_as_such() -> None:
    (batch,) = builder().items(TIER, PEER, [item(1)], repair=True)
    assert batch.batch_id.startswith("ae-")
    assert batch.flags == SyncFlags.REQUIRES_ACK | SyncFlags.CONFLICT_RESOLUTION


class Peer:
    """The receiving side of the property test: what it holds, and its inbound cursor."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.cursor = 0

    def apply(self, batch: MemorySyncBatch) -> None:
        self.held.update(i.item_id for i in batch.items)
        if batch.cursor is not None:
            self.cursor = max(self.cursor, batch.cursor)


#: What happens to one send: answered, lost before it arrives, lost after it was applied.
FATES = st.sampled_from(["answered", "lost-before", "lost-after"])


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(0, 40),
    per_batch=st.integers(1, 7),
    fates=st.lists(FATES, max_size=60),
)
def test_lost_connections_never_record_what_the_peer_lacks(
    count: int, per_batch: int, fates: list[str]
) -> None:
    changes = [item(n) for n in range(1, count + 1)]
    peer = Peer()
    recorded = 0
    machine = SyncRound(PEER, TIER, builder())
    actions = machine.start()
    fate = iter(fates)
    while True:
        action = actions.pop(0)
        if isinstance(action, Done):
            break
        if isinstance(action, RecordCursor):
            assert action.cursor >= recorded
            recorded = action.cursor
            assert recorded <= peer.cursor  # the rule
            continue
        if isinstance(action, ReadHorizon):
            event: object = HorizonRead(0)
        elif isinstance(action, TakeCursor):
            event = CursorTaken(recorded)
        elif isinstance(action, CountItems):
            event = Counted(count)
        elif isinstance(action, ReadDelta):
            after = [c for c in changes if c.timestamp_ns > action.since][:per_batch]
            reached = after[-1].timestamp_ns if after else max(action.since, count)
            event = DeltaRead(Delta(after, reached))
        else:
            assert isinstance(action, Send)
            what = next(fate, "answered")
            if what != "lost-before":
                peer.apply(action.batch)
            event = ack(action.batch, peer.cursor) if what == "answered" else ConnectionLost()
        assert not actions
        actions = machine.handle(event)  # type: ignore[arg-type]
    result = action.result
    assert recorded <= peer.cursor
    if result.ok:
        assert peer.held == {c.item_id for c in changes}
        assert result.cursor == recorded == max(count, 0)
    else:
        assert result.status is SyncStatus.UNREACHABLE
