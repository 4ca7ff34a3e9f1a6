"""Snapshots: asked for by the receiver, and what their end may make it forget.

A snapshot (REPLICATE) brings a peer everything the sender holds, live items and kept
tombstones. Tombstones the sender already collected cannot travel any more, so a receiver that
missed them would keep -- and later spread back -- items deleted everywhere else: at the end of a
snapshot the receiver forgets some of what the sender lacks. Because that is the one way a peer
can make a node drop data, it is fenced in by these rules:

- **Only a snapshot this node asked for.** A node asks with a REPLICATE request, whose batch id
  is the snapshot id (:class:`SnapshotRequests`). Snapshot batches whose (tier, sender, id) is not
  the open request are refused whole (:class:`~memrepl.errors.UnrequestedSnapshotError`, NACK
  ``unrequested-snapshot``), nothing applied. One request per tier and peer is open at a time; a
  new one replaces the old.
- **Requests live in memory.** A receiver that restarts mid-snapshot has no request any more, so
  the rest of that snapshot is refused. Snapshot batches never move the inbound cursor (only the
  final one does, in the transaction that finishes the snapshot), so the restarted receiver still
  reports a cursor below the sender's purge horizon, the sender's next round tells it so, and it
  asks for a whole new snapshot. Nothing is ever forgotten on the strength of half a snapshot.
- **Forgetting is bounded** (:func:`forget_bound`, :func:`finish_snapshot`). An item the
  snapshot lacked is forgotten only if the sender had seen it (its state came from the sender,
  or it changed here no later than the sender had acknowledged when the request was made) AND its
  latest write is not newer than what the sender's purge horizon explains: a delete that
  superseded the item was stamped at or after its latest write, and a tombstone the sender
  collected was changed there no later than its horizon, so an item written after the horizon
  cannot have been deleted-and-collected there. Nor, on a peer's word, is an item forgotten whose
  latest write is younger than this node's own tombstone grace period (minus the skew
  tolerance): a peer with the same grace cannot have collected its delete yet.
- **Nothing vanishes without a trace.** Every forgotten item is copied whole into
  ``forgotten_items`` in the same transaction. Every item the sender lacks but had seen and that
  is kept gets a fresh ``modified_at`` (and no ``received_from``), so the next round sends it
  back to the sender.
- **A peer's word makes this node ask for a snapshot rarely.** Finishing a snapshot costs this
  node a pass over every row the sender had seen, and re-stamps -- so re-sends to every peer --
  whatever it lacked; a sender that claims a purge horizon above this node's cursor after every
  snapshot (an honest one cannot: it purges only below what this node acknowledged, and a
  snapshot brings this node to its latest position) would make it do that over and over. So
  after a snapshot from a peer finished, this node asks that peer for the next one of the tier
  only after :data:`REASK_BASE_S`, doubling with each further one up to :data:`REASK_CAP_S`
  (:meth:`SnapshotRequests.may_ask`); a snapshot asked for on this node's own account
  (bootstrap, ``request_replicate``) is never held back.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

from sqlalchemy import literal, or_, select
from sqlalchemy.engine import Connection

from memrepl.clock import HybridLogicalClock
from memrepl.errors import UnrequestedSnapshotError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LOAD_CHUNK_ITEMS, forget_items, resend_items
from memrepl.storage.schema import TierSpec, forgotten_items


@dataclass(slots=True)
class SnapshotRequest:
    """A snapshot this node asked a peer for, and what of it has arrived."""

    tier: MemoryTier
    peer_id: str
    snapshot_id: str
    #: This node's sync vector entry for the peer when it asked: local changes at or below it
    #: are ones the sender had seen (a change acknowledged later may be missing from batches the
    #: sender read before it).
    acked_at_request: int
    requested_at_ns: int
    #: Ids the sender sent while the snapshot was open (its batches and any other of its batches
    #: for the tier): the items it holds.
    present: set[str] = field(default_factory=set)


#: After a snapshot from a peer finished, the next one of that tier is asked for on the peer's
#: word only this long after it, doubling with each further snapshot up to the cap (a quiet cap
#: since the last one starts over). An honest sender never needs a second one that soon.
REASK_BASE_S = 300.0
REASK_CAP_S = 86_400.0


@dataclass(slots=True)
class _Finished:
    """The snapshots of one tier from one peer finished lately."""

    at: float
    streak: int


class SnapshotRequests:
    """The open snapshot requests of one manager, by tier and peer (see the module docstring)."""

    def __init__(self) -> None:
        self._open: dict[tuple[MemoryTier, str], SnapshotRequest] = {}
        self._finished: dict[tuple[MemoryTier, str], _Finished] = {}

    def open(
        self, tier: MemoryTier, peer_id: str, snapshot_id: str, *, acked: int, now_ns: int
    ) -> SnapshotRequest:
        """Record a request about to be sent (replacing any open one for the tier and peer)."""
        request = SnapshotRequest(tier, peer_id, snapshot_id, acked, now_ns)
        self._open[(tier, peer_id)] = request
        return request

    def close(self, request: SnapshotRequest) -> None:
        """Drop ``request`` if it is still the open one (finished, or never answered)."""
        key = (request.tier, request.peer_id)
        if self._open.get(key) is request:
            del self._open[key]

    def finished(self, request: SnapshotRequest, now_s: float) -> None:
        """``request``'s snapshot was applied to its end (``now_s``: ``time.monotonic()``)."""
        key = (request.tier, request.peer_id)
        last = self._finished.get(key)
        streak = 1 if last is None or now_s - last.at > REASK_CAP_S else last.streak + 1
        self._finished[key] = _Finished(now_s, streak)
        self.close(request)

    def may_ask(self, tier: MemoryTier, peer_id: str, now_s: float) -> float:
        """0 if this node may ask ``peer_id`` for a snapshot of ``tier`` on the peer's word now,
        else the seconds until it may (see the module docstring)."""
        last = self._finished.get((tier, peer_id))
        if last is None:
            return 0.0
        wait = min(REASK_CAP_S, REASK_BASE_S * float(2 ** min(last.streak - 1, 32)))
        return max(0.0, last.at + wait - now_s)

    def get(self, tier: MemoryTier, peer_id: str) -> SnapshotRequest | None:
        return self._open.get((tier, peer_id))

    def for_batch(self, tier: MemoryTier, batch: MemorySyncBatch) -> SnapshotRequest | None:
        """The open request a batch from its sender belongs to (None: no snapshot open).

        Raises :class:`UnrequestedSnapshotError` for a snapshot batch outside the open request.
        """
        request = self._open.get((tier, batch.source_node))
        mark = batch.snapshot
        if mark is None:
            return request
        if request is None or request.snapshot_id != mark.snapshot_id:
            asked = f"asked for {request.snapshot_id!r}" if request else "asked for none"
            raise UnrequestedSnapshotError(
                f"batch {batch.batch_id!r} belongs to snapshot {mark.snapshot_id!r} of the "
                f"{tier.name} tier from {batch.source_node!r}, which this node did not request "
                f"({asked}): nothing applied",
                snapshot_id=mark.snapshot_id,
                peer_id=batch.source_node,
            )
        return request

    def __len__(self) -> int:
        return len(self._open)


def forget_bound(horizon: int, *, wall_ns: int, grace_ns: int, max_skew_ns: int) -> int:
    """The newest latest-write stamp a snapshot may make this node forget (module docstring):
    the sender's purge horizon, and no later than this node's grace period allows."""
    return max(0, min(horizon, wall_ns - grace_ns + max_skew_ns))


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    """What finishing a snapshot did."""

    #: Ids forgotten (each copied into ``forgotten_items`` first).
    forgotten: list[str]
    #: How many items the sender lacked and this node kept: re-stamped, to be sent back.
    resent: int
    #: The newest latest-write stamp that could be forgotten (:func:`forget_bound`).
    bound: int


def finish_snapshot(
    conn: Connection,
    spec: TierSpec,
    clock: HybridLogicalClock,
    request: SnapshotRequest,
    *,
    present: Set[str],
    horizon: int,
    bound: int,
    now_ns: int,
) -> SnapshotEnd:
    """Forget what the sender lacks within ``bound``, record it, re-stamp the rest it lacks.

    Runs in the write transaction that applies the snapshot's final batch; ``present`` holds
    every id the sender sent, that batch's included. ``horizon`` is the sender's purge horizon as
    its final batch said (recorded with each forgotten item).
    """
    table = spec.table
    seen = conn.execute(
        select(table.c.item_id, table.c.version_ts).where(
            or_(
                table.c.modified_at <= request.acked_at_request,
                table.c.received_from == request.peer_id,
            )
        )
    ).all()
    doomed: list[str] = []
    kept: list[str] = []
    for item_id, version_ts in seen:
        if item_id in present:
            continue
        (doomed if version_ts <= bound else kept).append(item_id)
    for start in range(0, len(doomed), LOAD_CHUNK_ITEMS):
        chunk = doomed[start : start + LOAD_CHUNK_ITEMS]
        _record_forgotten(conn, spec, chunk, request=request, horizon=horizon, now_ns=now_ns)
    forget_items(conn, spec, doomed)
    resend_items(conn, spec, clock, kept)
    return SnapshotEnd(doomed, len(kept), bound)


def _record_forgotten(
    conn: Connection,
    spec: TierSpec,
    ids: list[str],
    *,
    request: SnapshotRequest,
    horizon: int,
    now_ns: int,
) -> None:
    """Copy rows into ``forgotten_items`` exactly as stored (SQL to SQL: no re-encoding)."""
    table = spec.table
    columns = (
        "tier", "item_id", "content", "deleted", "version_ts", "version_origin",
        "causal_context", "modified_at", "received_from", "peer_id", "snapshot_id",
        "purged_through", "forgotten_at_ns",
    )  # fmt: skip
    rows = select(
        literal(int(spec.tier)),
        table.c.item_id,
        table.c.content,
        table.c.deleted,
        table.c.version_ts,
        table.c.version_origin,
        table.c.causal_context,
        table.c.modified_at,
        table.c.received_from,
        literal(request.peer_id),
        literal(request.snapshot_id),
        literal(horizon),
        literal(now_ns),
    ).where(table.c.item_id.in_(ids))
    conn.execute(forgotten_items.insert().from_select(columns, rows))
