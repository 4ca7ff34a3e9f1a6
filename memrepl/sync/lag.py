"""How far behind each peer is, from this node's side: :func:`send_lags`.

What a node can know from its own tables (ARCHITECTURE.md, "Deltas, cursors and sync vectors"),
per tier and known peer: the peer's acknowledged cursor, how many rows changed here after it that
a delta would send the peer (rows whose state came as is from that peer are never sent back), and
when the oldest of them changed. ``memrepl status`` and ``--metrics`` both read it here.

The rule that keeps it right: **lag in seconds is the age of the oldest change the peer has not
acknowledged** -- ``now - modified_at`` of the first row a delta would send it, 0 when there is
none. It says how stale the peer's copy is, in time, and grows while the peer is away; it is not
a gap between two stamps, nor a prediction of how long catching up takes. ``modified_at`` is this
node's hybrid-clock stamp, which follows its wall clock (ahead of it only when the clock stepped
back). A round records the acknowledged cursor every 16 batches, so while one runs the lag can
trail the truth by that much.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from memrepl.storage.counts import count_since, oldest_since
from memrepl.storage.schema import TierSpec
from memrepl.sync import vectors

__all__ = ["SendLag", "send_lags"]

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SendLag:
    """What one peer lacks of one tier, as this node's tables say."""

    peer_id: str
    #: The highest local ``modified_at`` it acknowledged (None: never anything).
    acked_cursor: int | None
    #: Rows changed here after that which a delta would send it.
    items: int
    #: ``modified_at`` of the oldest of them (None when there are none).
    oldest_ns: int | None
    #: The highest cursor of the peer's own batches applied here (None: nothing came from it).
    inbound_cursor: int | None

    def seconds(self, now_ns: int) -> float:
        """The age of the oldest change the peer lacks, in seconds (0 when it lacks none)."""
        if self.oldest_ns is None:
            return 0.0
        return max(0.0, (now_ns - self.oldest_ns) / NS_PER_S)


def send_lags(conn: Connection, spec: TierSpec) -> list[SendLag]:
    """The :class:`SendLag` of every peer known for the tier (in its sync vector or its inbound
    cursors), by peer id; run it in one read transaction."""
    acked = vectors.acked_cursors(conn, spec.tier)
    inbound = vectors.applied_cursors(conn, spec.tier)
    found = []
    for peer in sorted(set(acked) | set(inbound)):
        cursor = acked.get(peer)
        since = cursor or 0
        items = count_since(conn, spec, since, exclude_received_from=peer)
        oldest = oldest_since(conn, spec, since, exclude_received_from=peer) if items else None
        found.append(SendLag(peer, cursor, items, oldest, inbound.get(peer)))
    return found
