"""The outbound queue of one peer: priority order, a bounded size, and the unacknowledged window.

``TcpMesh.send`` only pushes into a peer's :class:`Outbox` and never blocks; the connection's
writer pops frames from it. Order (ARCHITECTURE.md, "Priority-based replication"):

1. control frames (HEARTBEAT, ACK, NACK, HANDSHAKE, DISCONNECT) first, FIFO among themselves;
2. then data frames by priority, highest first, FIFO among equals. A VECTOR_SYNC frame's
   priority is the one in its inner batch header (``data[10:12]`` of ``batch.pack()``, the v2
   header priority: EMERGENCY > CRITICAL > HIGH > NORMAL > LOW), so the frames of URGENT and
   HIGH batches overtake queued background ones. Other data frames count as NORMAL.

Backpressure: at most ``max_unacked`` VECTOR_SYNC frames may be written and not yet answered
(by an ACK or NACK from the peer). While that window is full no VECTOR_SYNC frame leaves (nor a
data frame queued behind one), but control frames do, so ACKs for the peer's batches are never
stuck behind our own batches (no deadlock when both sides are sending). A slot also comes back
if no answer arrives within ``unacked_timeout_s``, so a peer that never answers slows the sender
down but cannot stop it for good.

The rules that keep it right: the order above is total and stable (a monotonic counter breaks
ties), :meth:`Outbox.push` refuses instead of growing past ``max_frames`` frames or ``max_bytes``
bytes (an empty outbox always takes one frame, however large), and only :meth:`Outbox.next`
removes frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from memrepl.protocol.enums import MessageTypes, Priority
from memrepl.protocol.limits import HEADER_SIZE, MAGIC

__all__ = ["CONTROL_TYPES", "OutboundFrame", "Outbox", "frame_priority"]

#: Message types that bypass data ordering and the unacknowledged window.
CONTROL_TYPES = frozenset(
    {
        MessageTypes.HEARTBEAT,
        MessageTypes.ACK,
        MessageTypes.NACK,
        MessageTypes.HANDSHAKE,
        MessageTypes.DISCONNECT,
    }
)

#: Frames the peer answers one for one (ACK/NACK, or MEMORY_RESPONSE for a digest query).
_ANSWERED_TYPES = frozenset({MessageTypes.VECTOR_SYNC, MessageTypes.MEMORY_QUERY})

_PRIORITIES = {p.value: p for p in Priority}
_MAGIC_BYTES = MAGIC.to_bytes(8, "big")


def frame_priority(msg_type: MessageTypes, data: bytes) -> Priority:
    """The priority a data frame is queued with (see the module docstring)."""
    if (
        msg_type is MessageTypes.VECTOR_SYNC
        and len(data) >= HEADER_SIZE
        and data[:8] == _MAGIC_BYTES
    ):
        return _PRIORITIES.get(int.from_bytes(data[10:12], "big"), Priority.NORMAL)
    return Priority.NORMAL


@dataclass(frozen=True, slots=True, order=True)
class OutboundFrame:
    """A message waiting to be written: ``(msg_type, data)`` and where it sorts."""

    #: Sort key: (negated priority, arrival number); only data frames are sorted.
    sort_key: tuple[int, int]
    msg_type: MessageTypes = field(compare=False)
    data: bytes = field(compare=False)

    @property
    def is_batch(self) -> bool:
        """Whether this frame takes a slot in the unacknowledged window: a batch, or a digest
        query (answered by a MEMORY_RESPONSE or a NACK)."""
        return self.msg_type in _ANSWERED_TYPES


class Outbox:
    """One peer's queue; see the module docstring for its order and bounds."""

    def __init__(
        self,
        *,
        max_frames: int,
        max_bytes: int,
        max_unacked: int,
        unacked_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.max_unacked = max_unacked
        self.unacked_timeout_s = unacked_timeout_s
        self._clock = clock
        self._control: deque[OutboundFrame] = deque()
        self._data: list[OutboundFrame] = []
        self._arrivals = itertools.count()
        self._bytes = 0
        # Send times of the written, unanswered VECTOR_SYNC frames, oldest first.
        self._unacked: deque[float] = deque()
        self._changed = asyncio.Event()
        #: Credits returned because an answer did not come in time.
        self.expired = 0

    def __len__(self) -> int:
        return len(self._control) + len(self._data)

    @property
    def queued_bytes(self) -> int:
        """Bytes of data in queued frames."""
        return self._bytes

    @property
    def unacked(self) -> int:
        """VECTOR_SYNC frames written and not yet answered (nor expired)."""
        self._expire()
        return len(self._unacked)

    def push(self, msg_type: MessageTypes, data: bytes) -> bool:
        """Queue a frame; False (and nothing queued) if the outbox is full."""
        if len(self) and (len(self) >= self.max_frames or self._bytes + len(data) > self.max_bytes):
            return False
        arrival = next(self._arrivals)
        if msg_type in CONTROL_TYPES:
            self._control.append(OutboundFrame((0, arrival), msg_type, data))
        else:
            key = (-int(frame_priority(msg_type, data)), arrival)
            heapq.heappush(self._data, OutboundFrame(key, msg_type, data))
        self._bytes += len(data)
        self._changed.set()
        return True

    def _expire(self) -> None:
        deadline = self._clock() - self.unacked_timeout_s
        while self._unacked and self._unacked[0] <= deadline:
            self._unacked.popleft()
            self.expired += 1

    def _pop_ready(self) -> OutboundFrame | None:
        if self._control:
            frame = self._control.popleft()
        elif self._data and (not self._data[0].is_batch or self.unacked < self.max_unacked):
            frame = heapq.heappop(self._data)
        else:
            return None
        self._bytes -= len(frame.data)
        return frame

    async def next(self, timeout_s: float | None = None) -> OutboundFrame | None:
        """The next frame the window allows, waiting for one; None after ``timeout_s``."""
        # The caller's timeout is in event-loop time; ``clock`` only dates window slots.
        now = asyncio.get_running_loop().time
        deadline = None if timeout_s is None else now() + timeout_s
        while True:
            frame = self._pop_ready()
            if frame is not None:
                return frame
            waits = []
            if deadline is not None:
                waits.append(deadline - now())
            if self._data and self._unacked:
                # Blocked by the window: wake when the oldest credit expires.
                waits.append(self._unacked[0] + self.unacked_timeout_s - self._clock())
            wait = min(waits) if waits else None
            if wait is not None and wait <= 0:
                if deadline is not None and now() >= deadline:
                    return None
                continue
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    def sent(self, frame: OutboundFrame) -> None:
        """Record that ``frame`` was written (a VECTOR_SYNC frame takes a window slot)."""
        if frame.is_batch:
            self._unacked.append(self._clock())

    def answered(self) -> None:
        """An ACK or NACK arrived: the oldest unanswered batch frees its slot."""
        if self._unacked:
            self._unacked.popleft()
            self._changed.set()

    def reset_window(self) -> None:
        """A new connection: answers to frames written on the old one will never come."""
        self._unacked.clear()
        self._changed.set()

    def clear(self) -> int:
        """Drop every queued frame; return how many there were."""
        dropped = len(self)
        self._control.clear()
        self._data.clear()
        self._bytes = 0
        return dropped
