"""The per-peer outbox: priority order, the unacknowledged window, its bounds."""

from __future__ import annotations

import json

from memrepl.mesh.outbox import Outbox, frame_priority
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import (
    MemoryTier,
    MessageTypes,
    Priority,
    SyncOperation,
    SyncPriority,
)
from memrepl.protocol.item import MemorySyncItem


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def packed(name: str, priority: SyncPriority) -> bytes:
    """A real ``batch.pack()`` whose most urgent item has ``priority``."""
    item = MemorySyncItem(
        item_id=name,
        timestamp_ns=1,
        tier=MemoryTier.WORKING,
        operation=SyncOperation.INSERT,
        priority=priority,
        payload=json.dumps({"n": name}).encode(),
    )
    batch = MemorySyncBatch(
        batch_id=name, source_node="a", target_node="b", tier=MemoryTier.WORKING, items=[item]
    )
    return batch.pack()


def outbox(clock: FakeClock | None = None, **options: float) -> Outbox:
    settings: dict[str, float] = {
        "max_frames": 100,
        "max_bytes": 1 << 20,
        "max_unacked": 8,
        "unacked_timeout_s": 30.0,
    }
    settings.update(options)
    return Outbox(
        max_frames=int(settings["max_frames"]),
        max_bytes=int(settings["max_bytes"]),
        max_unacked=int(settings["max_unacked"]),
        unacked_timeout_s=settings["unacked_timeout_s"],
        clock=clock or FakeClock(),
    )


async def drain(box: Outbox) -> list[bytes]:
    out = []
    while (frame := await box.next(timeout_s=0)) is not None:
        box.sent(frame)
        out.append(frame.data)
    return out


def test_frame_priority_reads_the_inner_batch_header() -> None:
    assert frame_priority(MessageTypes.VECTOR_SYNC, packed("u", SyncPriority.URGENT)) is (
        Priority.CRITICAL
    )
    assert frame_priority(MessageTypes.VECTOR_SYNC, packed("h", SyncPriority.HIGH)) is Priority.HIGH
    assert frame_priority(MessageTypes.VECTOR_SYNC, packed("b", SyncPriority.BACKGROUND)) is (
        Priority.LOW
    )
    # Not a batch: NORMAL, whatever the bytes say.
    assert frame_priority(MessageTypes.VECTOR_SYNC, b"short") is Priority.NORMAL
    assert frame_priority(MessageTypes.MEMORY_STORE, packed("u", SyncPriority.URGENT)) is (
        Priority.NORMAL
    )


async def test_control_first_then_batches_by_priority_then_fifo() -> None:
    box = outbox()
    box.push(MessageTypes.VECTOR_SYNC, packed("n1", SyncPriority.NORMAL))
    box.push(MessageTypes.VECTOR_SYNC, packed("bg", SyncPriority.BACKGROUND))
    box.push(MessageTypes.VECTOR_SYNC, packed("n2", SyncPriority.NORMAL))
    box.push(MessageTypes.VECTOR_SYNC, packed("h1", SyncPriority.HIGH))
    box.push(MessageTypes.ACK, b"ack")
    box.push(MessageTypes.VECTOR_SYNC, packed("u1", SyncPriority.URGENT))
    box.push(MessageTypes.HEARTBEAT, b"")
    order = await drain(box)
    assert order[:2] == [b"ack", b""]
    names = [MemorySyncBatch.unpack(data).batch_id for data in order[2:]]
    assert names == ["u1", "h1", "n1", "n2", "bg"]


async def test_urgent_batch_overtakes_batches_queued_behind_a_full_window() -> None:
    box = outbox(max_unacked=2)
    for name in ("n1", "n2", "n3", "n4"):
        box.push(MessageTypes.VECTOR_SYNC, packed(name, SyncPriority.NORMAL))
    sent = await drain(box)
    assert len(sent) == 2  # the window is full: n3 and n4 wait
    box.push(MessageTypes.VECTOR_SYNC, packed("urgent", SyncPriority.URGENT))
    box.push(MessageTypes.NACK, b"nack")
    assert await drain(box) == [b"nack"]  # control frames still leave
    box.answered()
    (data,) = await drain(box)
    assert MemorySyncBatch.unpack(data).batch_id == "urgent"
    box.answered()
    (data,) = await drain(box)
    assert MemorySyncBatch.unpack(data).batch_id == "n3"


async def test_window_slot_comes_back_after_the_timeout() -> None:
    clock = FakeClock()
    box = outbox(clock, max_unacked=1, unacked_timeout_s=10.0)
    box.push(MessageTypes.VECTOR_SYNC, b"one")
    box.push(MessageTypes.VECTOR_SYNC, b"two")
    assert await drain(box) == [b"one"]
    assert box.unacked == 1
    clock.now += 9.0
    assert await drain(box) == []
    clock.now += 1.0
    assert await drain(box) == [b"two"]
    assert box.expired == 1


async def test_new_connection_resets_the_window() -> None:
    box = outbox(max_unacked=1)
    box.push(MessageTypes.VECTOR_SYNC, b"one")
    box.push(MessageTypes.VECTOR_SYNC, b"two")
    assert await drain(box) == [b"one"]
    box.reset_window()
    assert await drain(box) == [b"two"]


async def test_next_waits_for_a_push_and_times_out() -> None:
    box = outbox()
    assert await box.next(timeout_s=0.01) is None
    box.push(MessageTypes.ACK, b"x")
    frame = await box.next(timeout_s=1.0)
    assert frame is not None and frame.data == b"x"


def test_push_refuses_past_the_bounds() -> None:
    box = outbox(max_frames=2, max_bytes=10)
    assert box.push(MessageTypes.VECTOR_SYNC, bytes(100))  # an empty outbox takes any frame
    assert not box.push(MessageTypes.ACK, b"x")  # over max_bytes
    box.clear()
    assert box.push(MessageTypes.ACK, b"1") and box.push(MessageTypes.ACK, b"2")
    assert not box.push(MessageTypes.ACK, b"3")  # over max_frames
    assert (len(box), box.queued_bytes) == (2, 2)
    assert box.clear() == 2 and len(box) == 0
