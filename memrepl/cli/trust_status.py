"""What ``memrepl status`` shows about trouble with peers: clock skew, refusals, forgetting.

Three things an operator must be able to see without reading logs (issue 12, "operational
safety"), each read from the store in the status command's one read transaction:

- **this node's clock against wall time** (``node.clock_last_ns``): after a fast wall clock is
  fixed, the hybrid clock keeps the offset, and peers refuse this node's batches until wall time
  catches up or the clock is rewound (``memrepl clock rewind``);
- **refusals**, per peer (``sync_refusals``, memrepl.sync.refusals): the batches this node refused
  (``inbound``: with the peer, the code, how often, and for clock trouble how far ahead the
  peer's stamps were) and those its peers refused (``outbound``: how a node with a fast clock
  learns of it while its own wall clock still looks right to it);
- **items forgotten at the end of snapshots** (``forgotten_items``), per tier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from memrepl.cli.output import emit, emit_table, format_ns
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.schema import forgotten_items, node
from memrepl.sync.refusals import Refusal, refusals

NS_PER_S = 1_000_000_000
#: The clock is reported as ahead from this much on (a node's clock may run a little ahead of
#: its wall time when it took a stamp from a peer whose clock is slightly ahead).
AHEAD_NOTICE_NS = NS_PER_S
#: Characters of a refusal's reason shown in the text table.
REASON_CHARS = 72


@dataclass(frozen=True, slots=True)
class TrustStatus:
    """The clock, the refusals and the forgotten items of one store."""

    clock_last_ns: int
    wall_ns: int
    refusals: list[Refusal]
    #: Per tier name, items forgotten at the end of snapshots (tiers with none left out).
    forgotten: dict[str, int]

    @property
    def clock_ahead_s(self) -> float:
        """How far the clock's last stamp is ahead of wall time (0 when it is not)."""
        return max(0, self.clock_last_ns - self.wall_ns) / NS_PER_S


def trust_status(conn: Connection, wall_ns: int) -> TrustStatus:
    # A store made by ``alembic upgrade head`` alone has no node row yet: no clock to show.
    last = int(conn.execute(select(node.c.clock_last_ns)).scalar_one_or_none() or 0)
    counts = conn.execute(
        select(forgotten_items.c.tier, func.count()).group_by(forgotten_items.c.tier)
    ).all()
    return TrustStatus(
        clock_last_ns=last,
        wall_ns=wall_ns,
        refusals=refusals(conn),
        forgotten={MemoryTier(tier).name.lower(): int(n) for tier, n in counts},
    )


def trust_json(status: TrustStatus) -> dict[str, Any]:
    """The keys ``memrepl status --json`` adds: ``clock``, ``refusals``, ``forgotten``."""
    return {
        "clock": {
            "last_ns": status.clock_last_ns,
            "wall_ns": status.wall_ns,
            "ahead_s": status.clock_ahead_s,
        },
        "refusals": [
            asdict(r) | {"ahead_s": None if r.ahead_ns is None else r.ahead_ns / NS_PER_S}
            for r in status.refusals
        ],
        "forgotten": status.forgotten,
    }


def emit_trust(status: TrustStatus, *, tolerance_ns: int) -> None:
    """The text ``memrepl status`` adds (nothing when there is nothing to see)."""
    ahead_ns = status.clock_last_ns - status.wall_ns
    if ahead_ns >= AHEAD_NOTICE_NS:
        advice = (
            "peers refuse its batches: if the wall clock was fast and is fixed now, stop the "
            "node and run 'memrepl clock rewind'"
            if ahead_ns > tolerance_ns
            else "within what peers accept"
        )
        emit()
        emit(
            f"clock: {status.clock_ahead_s:.3f} s ahead of wall time (last stamp "
            f"{format_ns(status.clock_last_ns)}): {advice}"
        )
    if status.refusals:
        emit()
        emit_table(
            ["peer", "tier", "refused", "code", "count", "last", "ahead (s)", "reason"],
            [
                [
                    r.peer_id,
                    MemoryTier(r.tier).name.lower() if r.tier else "",
                    "by this node" if r.direction == "inbound" else "by the peer",
                    r.code,
                    r.count,
                    format_ns(r.last_at_ns),
                    "" if r.ahead_ns is None else f"{r.ahead_ns / NS_PER_S:.3f}",
                    _short(r.reason),
                ]
                for r in status.refusals
            ],
            right=(4, 6),
        )
    if status.forgotten:
        emit()
        counts = ", ".join(f"{tier} {n}" for tier, n in sorted(status.forgotten.items()))
        emit(
            f"forgotten at the end of snapshots: {counts} (kept whole: SELECT * FROM "
            "forgotten_items)"
        )


def _short(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."
