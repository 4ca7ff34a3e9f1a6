"""The peer table of a :class:`~memrepl.mesh.tcp.TcpMesh`: what it knows about each peer, and
which of its connections is the current one.

A peer's :class:`PeerState` outlives its connections: its outbox (so frames queued while it
reconnects are kept), its counters, its dial address and the time it went down.

The rule that keeps it right: a peer has at most one *current* connection, the only one whose
writer takes frames from the peer's outbox. When a second authenticated connection to the same
peer appears, :func:`keeps_existing` decides which one stays, the same way on both nodes:

- between connections dialled by different nodes, the one dialled by the node whose id is
  smaller (string order) wins;
- between connections dialled by the same node, the newer one wins (the older one is a leftover
  from before that node restarted).

The loser is retired gracefully (:meth:`~memrepl.mesh.connection.Connection.retire`), so that no
frame written on it before both sides agreed is lost.

The table reports every change of a peer's current connection to its link listeners
(:class:`~memrepl.sync.transport.LinkWatching`): up when a connection is adopted, lost when the
current one ends (a connection replaced by a duplicate is not lost: it lingers until the peer's
DISCONNECT, and nothing written on it is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.connection import Connection, Deliver
from memrepl.mesh.framing import FaultCode
from memrepl.mesh.handshake import Established
from memrepl.mesh.outbox import Outbox
from memrepl.mesh.stats import Counters, PeerStats
from memrepl.sync.transport import LinkListener

__all__ = ["PeerState", "PeerTable", "keeps_existing"]

log = logging.getLogger(__name__)


def keeps_existing(node_id: str, peer_id: str, existing_dialler: str, new_dialler: str) -> bool:
    """Whether the existing connection between ``node_id`` and ``peer_id`` beats a new one.

    See the module docstring: the connection dialled by ``min(node_id, peer_id)`` wins; between
    two dialled by the same node, the new one.
    """
    preferred = min(node_id, peer_id)
    return existing_dialler == preferred and new_dialler != preferred


@dataclass(slots=True)
class PeerState:
    """What the mesh keeps about one known peer."""

    peer_id: str
    outbox: Outbox
    address: tuple[str, int] | None = None
    connection: Connection | None = None
    #: ``time.monotonic()`` when it was last seen connected (or when the mesh started).
    down_since: float = field(default_factory=time.monotonic)
    counters: Counters = field(default_factory=Counters)
    dialer: asyncio.Task[None] | None = None
    #: Set whenever ``connection`` changes.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def stats(self) -> PeerStats:
        """A snapshot of this peer's state and counters."""
        return PeerStats(
            peer_id=self.peer_id,
            connected=self.connection is not None,
            address=None if self.address is None else f"{self.address[0]}:{self.address[1]}",
            dialled_by=None if self.connection is None else self.connection.dialled_by,
            tls=self.connection is not None and self.connection.tls,
            certificate_serial=None if self.connection is None else self.connection.identity.serial,
            queued_frames=len(self.outbox),
            queued_bytes=self.outbox.queued_bytes,
            unacked=self.outbox.unacked,
            traffic=self.counters.snapshot(),
        )


class PeerTable:
    """Every peer a node knows, and the adoption of new connections by the duplicate rule."""

    def __init__(self, node_id: str, config: TcpMeshConfig, totals: Counters) -> None:
        self.node_id = node_id
        self.config = config
        self.totals = totals
        #: Failed handshakes of peers not in the table (strangers, or peers that dial us and
        #: were never configured here): counted apart, never per claimed id.
        self.strangers = Counters()
        self._peers: dict[str, PeerState] = {}
        #: Told ``(peer_id, up)`` when a peer's current connection comes up or is lost.
        self.link_listeners: list[LinkListener] = []

    def get(self, peer_id: str) -> PeerState | None:
        return self._peers.get(peer_id)

    def ensure(self, peer_id: str) -> PeerState:
        """The state of ``peer_id``, created (known, not connected) on first use."""
        peer = self._peers.get(peer_id)
        if peer is None:
            config = self.config
            outbox = Outbox(
                max_frames=config.max_queued_frames,
                max_bytes=config.max_queued_bytes,
                max_unacked=config.max_unacked_batches,
                unacked_timeout_s=config.unacked_timeout_s,
            )
            peer = self._peers[peer_id] = PeerState(peer_id, outbox)
        return peer

    def all(self) -> list[PeerState]:
        """Every known peer, by id."""
        return [self._peers[peer_id] for peer_id in sorted(self._peers)]

    def connected(self) -> list[str]:
        """The ids of the peers with a current connection, sorted."""
        return [peer.peer_id for peer in self.all() if peer.connection is not None]

    def record_handshake_failure(self, peer_id: str | None, code: str, text: str) -> None:
        """Count a failed handshake in the totals, and for ``peer_id`` only if it is known (a
        stranger's claimed id never adds a row to the table)."""
        self.totals.refused[code] += 1
        self.totals.handshake_failures += 1
        self.totals.record_error(code, text)
        known = self._peers.get(peer_id) if peer_id is not None else None
        counters = self.strangers if known is None else known.counters
        counters.handshake_failures += 1
        counters.record_error(code, text)

    async def serve(
        self,
        done: Established,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        dialled_by: str,
        deliver: Deliver,
    ) -> None:
        """Adopt an authenticated connection (unless it loses to a duplicate) and run it until
        it ends; the caller closes the stream afterwards in any case."""
        peer = self.ensure(done.peer_id)
        conn = Connection(
            reader=reader,
            writer=writer,
            session=done.session,
            identity=done.identity,
            dialled_by=dialled_by,
            outbox=peer.outbox,
            counters=peer.counters,
            totals=self.totals,
            config=self.config,
            deliver=deliver,
        )
        existing = peer.connection
        if existing is not None:
            if keeps_existing(self.node_id, done.peer_id, existing.dialled_by, dialled_by):
                log.info("keeping %r over a duplicate", existing)
                conn.retire(
                    FaultCode.DUPLICATE, f"the connection dialled by {existing.dialled_by!r} wins"
                )
                await conn.run()
                return
            existing.retire(FaultCode.DUPLICATE, "replaced by another connection")
        peer.connection = conn
        peer.outbox.reset_window()
        for counters in (peer.counters, self.totals):
            counters.connects += 1
        peer.changed.set()
        log.info("%s connected to %r (dialled by %r)", self.node_id, done.peer_id, dialled_by)
        self._report(done.peer_id, up=True)
        try:
            await conn.run()
        finally:
            if peer.connection is conn:
                peer.connection = None
                peer.down_since = time.monotonic()
                peer.changed.set()
                self._report(done.peer_id, up=False)
            for counters in (peer.counters, self.totals):
                counters.disconnects += 1
            log.info("%s lost %r: %s", self.node_id, done.peer_id, conn.end_reason)

    def _report(self, peer_id: str, *, up: bool) -> None:
        for listener in list(self.link_listeners):
            try:
                listener(peer_id, up)
            except Exception:
                log.exception("a link listener failed on %r", peer_id)
