"""The vocabulary of a sync round's state machines: the events they take and the actions they ask.

A machine (:mod:`memrepl.sync.rounds`) never touches a store, a mesh or a clock. Its driver
(:mod:`memrepl.sync.driver`) does what each action asks and feeds back what happened as an event,
as h11's ``Connection`` is driven by ``send``/``next_event``. Every class here is a frozen value.

The rule that keeps it right: an action that needs an answer names the event(s) that answer it,
and the driver feeds exactly one of those back before anything else; an action without one
(:class:`RecordCursor`, :class:`ExpectRequest`, :class:`StopExpecting`) is done and the next
action in the list follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from memrepl.protocol.batch import MemorySyncBatch
from memrepl.sync.batches import Delta
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.results import SyncResult

__all__ = [
    "Action",
    "Answered",
    "AwaitRequest",
    "ConnectionLost",
    "CountItems",
    "Counted",
    "CursorTaken",
    "DeltaRead",
    "Done",
    "Event",
    "ExpectRequest",
    "HorizonRead",
    "ReadDelta",
    "ReadHorizon",
    "RecordCursor",
    "Send",
    "SnapshotRequested",
    "StopExpecting",
    "TakeCursor",
    "TimedOut",
    "Unreachable",
]

# -- actions: what a machine asks its driver to do --------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadHorizon:
    """Read this node's tombstone purge horizon for the tier. Answered by :class:`HorizonRead`."""


@dataclass(frozen=True, slots=True)
class ExpectRequest:
    """From now on, a REPLICATE request from the peer for the tier is this round's to answer
    (registered BEFORE the probe goes out: the request may overtake the probe's ACK)."""


@dataclass(frozen=True, slots=True)
class StopExpecting:
    """This round no longer waits for the peer's REPLICATE request."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``batch`` (``packed``: its bytes) to the peer and wait for its answer. Answered by
    :class:`Answered`, :class:`TimedOut`, :class:`ConnectionLost` or :class:`Unreachable`.

    ``resend``: the same batch again, because the connection it went out on was lost.
    ``then_reads``: what the machine will read once this batch is acknowledged (a driver may
    read it meanwhile: memrepl.sync.driver, read-ahead).
    """

    batch: MemorySyncBatch
    packed: bytes = field(repr=False)
    resend: bool = False
    then_reads: ReadDelta | None = None


@dataclass(frozen=True, slots=True)
class TakeCursor:
    """The peer reported ``cursor`` (its durable inbound cursor): record it as its sync vector
    entry, unless it is beyond this node's clock. Answered by :class:`CursorTaken`."""

    cursor: int


@dataclass(frozen=True, slots=True)
class AwaitRequest:
    """Wait for the peer's REPLICATE request (``wait``: up to the answer timeout; otherwise
    only take one that already came). Answered by :class:`SnapshotRequested` or
    :class:`TimedOut`."""

    wait: bool


@dataclass(frozen=True, slots=True)
class ReadDelta:
    """Read the changes after ``since`` (``snapshot``: the whole state, echoes included;
    ``echoes``: keep the items that came from the peer). Answered by :class:`DeltaRead`."""

    since: int
    snapshot: bool
    echoes: bool


@dataclass(frozen=True, slots=True)
class CountItems:
    """Count the items a :class:`ReadDelta` with the same fields would find, without a limit:
    what the round expects to send. Answered by :class:`Counted`."""

    since: int
    snapshot: bool
    echoes: bool


@dataclass(frozen=True, slots=True)
class RecordCursor:
    """Record that the peer acknowledged everything up to ``cursor`` (never moves it back)."""

    cursor: int


@dataclass(frozen=True, slots=True)
class Done:
    """The machine is finished: ``result``, and the bytes of the batches it sent."""

    result: SyncResult
    bytes_sent: int = 0


Action = (
    ReadHorizon
    | ExpectRequest
    | StopExpecting
    | Send
    | TakeCursor
    | AwaitRequest
    | CountItems
    | ReadDelta
    | RecordCursor
    | Done
)

# -- events: what happened -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HorizonRead:
    horizon: int


@dataclass(frozen=True, slots=True)
class Answered:
    """The peer answered the batch in flight."""

    answer: Ack | Nack


@dataclass(frozen=True, slots=True)
class TimedOut:
    """No answer came in time."""


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection the batch in flight went out on ended before its answer came."""


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The batch could not be sent: no connection to the peer (``reason`` says why)."""

    reason: str


@dataclass(frozen=True, slots=True)
class CursorTaken:
    """The reported cursor was recorded; ``acked_before`` is the entry it replaced (None: it
    was beyond this node's clock, and nothing was recorded)."""

    acked_before: int | None


@dataclass(frozen=True, slots=True)
class Counted:
    total: int


@dataclass(frozen=True, slots=True)
class SnapshotRequested:
    snapshot_id: str


@dataclass(frozen=True, slots=True)
class DeltaRead:
    """What a :class:`ReadDelta` found, the sync vector read with it, and (for a snapshot) the
    purge horizon read after it."""

    delta: Delta
    sync_vector: Mapping[str, int] = field(default_factory=dict)
    horizon: int = 0


Event = (
    HorizonRead
    | Answered
    | TimedOut
    | ConnectionLost
    | Unreachable
    | CursorTaken
    | SnapshotRequested
    | Counted
    | DeltaRead
)
