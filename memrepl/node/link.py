"""How a node's sync manager reaches the mesh: :class:`NodeLink` and :class:`NodeSyncManager`.

:class:`NodeLink` is the :class:`~memrepl.sync.transport.Mesh` the manager talks through (the
real mesh plus traffic counters, REPLICATE notices and draining on stop);
:class:`NodeSyncManager` is the manager with what a long-running process adds to an exchange
(giving up when the peer is gone, reading the next batch ahead). The rule that keeps them right:
neither changes what is sent or when a cursor moves -- only how long a round waits and when the
node's own work is done; see each class.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from memrepl.errors import MemreplError, PeerUnavailableError, ProtocolError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.sync.batches import is_replicate_request
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.messages import Ack, Nack
from memrepl.sync.results import SyncStatus
from memrepl.sync.transport import Handler, Mesh

__all__ = ["NodeLink", "NodeSyncManager", "ServingMesh"]

log = logging.getLogger(__name__)

#: Byte 14 of a packed batch's header is its item count (PROTOCOL.md §1, ``flags_batch``).
_ITEM_COUNT_OFFSET = 14
#: How often an exchange waiting for an ACK checks that its peer is still connected.
LOST_PEER_CHECK_S = 0.1
#: A batch read ahead is used only this soon after it was read.
READ_AHEAD_MAX_AGE_S = 5.0
#: Event-loop turns an exchange lets pass (the send reaching the socket) before reading ahead.
READ_AHEAD_YIELDS = 6
#: A REPLICATE request is a one-item batch of a few hundred bytes; only such frames are peeked.
_MAX_REQUEST_BYTES = 2048


@runtime_checkable
class ServingMesh(Mesh, Protocol):
    """A mesh with a life cycle (``TcpMesh``): the node starts and closes it."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class NodeSyncManager(MemorySyncManager):
    """The sync manager of a node: what a long-running process adds to the exchange.

    - **An exchange ends as soon as its peer is gone.** :meth:`MemorySyncManager.exchange`
      waits for the ACK up to ``ack_timeout_s``; a peer that disconnected (killed, stopped,
      network cut) cannot answer any more, so the wait is cut short (within
      :data:`LOST_PEER_CHECK_S`) with ``UNREACHABLE`` -- nothing is marked as acknowledged, and
      the round starts afresh when the peer is back. Rounds, snapshot answers and URGENT pushes
      all go through here, so none of them holds a stopping node for long.
    - **Read-ahead.** A round sends a batch, waits for its ACK, then reads the next batch from
      the batch's cursor. While the peer applies a batch, this node would sit idle; instead it
      reads the next batch then (:meth:`create_delta_batch` hands it out if the round asks for
      exactly that cursor). Sending a batch read a moment earlier is always correct: it holds
      the state of every row changed in ``(since, cursor]`` at the time it was read, and any
      later change of such a row has a ``modified_at`` above ``cursor``, so it comes in a later
      batch. A read-ahead batch unused for :data:`READ_AHEAD_MAX_AGE_S` is dropped.
    """

    def __init__(self, node_id: str, mesh: Mesh | None = None, **options: Any) -> None:
        super().__init__(node_id, mesh, **options)
        # (tier, peer) -> (since, snapshot, read at (monotonic), the batch)
        self._ahead: dict[tuple[MemoryTier, str], tuple[int, bool, float, MemorySyncBatch]] = {}

    def create_delta_batch(
        self,
        tier: MemoryTier | int,
        target_node: str,
        since_timestamp: int | None = None,
        *,
        snapshot: bool = False,
        include_echoes: bool = False,
    ) -> MemorySyncBatch:
        # Read-ahead batches are cut with the echo filter; a round without it reads afresh.
        if since_timestamp is not None and not include_echoes:
            found = self._ahead.pop((MemoryTier(tier), target_node), None)
            if (
                found is not None
                and found[:2] == (since_timestamp, snapshot)
                and time.monotonic() - found[2] < READ_AHEAD_MAX_AGE_S
            ):
                return found[3]
        return super().create_delta_batch(
            tier, target_node, since_timestamp, snapshot=snapshot, include_echoes=include_echoes
        )

    async def exchange(self, peer_id: str, batch: MemorySyncBatch) -> Ack | Nack | SyncStatus:
        waiting = asyncio.ensure_future(super().exchange(peer_id, batch))
        try:
            if batch.cursor is not None and batch.items:
                # Let the batch reach the socket first, then read the next one meanwhile.
                for _ in range(READ_AHEAD_YIELDS):
                    await asyncio.sleep(0)
                if not waiting.done():
                    self._read_ahead(peer_id, batch)
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=LOST_PEER_CHECK_S)
                if done:
                    return waiting.result()
                if self.mesh is not None and peer_id not in self.mesh.peers():
                    log.info(
                        "batch %s: %s is gone, not waiting for its ACK", batch.batch_id, peer_id
                    )
                    return SyncStatus.UNREACHABLE
        finally:
            if not waiting.done():
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)

    def _read_ahead(self, peer_id: str, batch: MemorySyncBatch) -> None:
        assert batch.cursor is not None
        snapshot = batch.snapshot is not None
        try:
            following = super().create_delta_batch(
                batch.tier, peer_id, batch.cursor, snapshot=snapshot
            )
        except MemreplError as exc:
            log.debug("read-ahead for %s failed: %s", peer_id, exc)
            return
        self._ahead[(batch.tier, peer_id)] = (
            batch.cursor,
            snapshot,
            time.monotonic(),
            following,
        )


class NodeLink:
    """The :class:`Mesh` a node's sync manager talks through: the real mesh plus two things.

    It tells the node when a peer asks for a snapshot (REPLICATE), and, once :attr:`draining`,
    refuses new sync batches with :class:`PeerUnavailableError` so that rounds end after the
    batch in hand. (The traffic is counted by the manager's observer, memrepl.node.monitor.)
    """

    def __init__(
        self, mesh: Mesh, on_replicate: Callable[[str, MemoryTier], None] | None = None
    ) -> None:
        self.mesh = mesh
        self.on_replicate = on_replicate
        self.draining = False

    @property
    def node_id(self) -> str:
        return self.mesh.node_id

    def send(self, peer_id: str, msg_type: MessageTypes, data: bytes) -> None:
        if msg_type == MessageTypes.VECTOR_SYNC and self.draining:
            raise PeerUnavailableError(
                f"send to {peer_id!r}: node {self.node_id!r} is stopping", peer_id=peer_id
            )
        self.mesh.send(peer_id, msg_type, data)

    def register_handler(self, msg_type: MessageTypes, handler: Handler) -> None:
        if msg_type == MessageTypes.VECTOR_SYNC:
            handler = self._peeking(handler)
        self.mesh.register_handler(msg_type, handler)

    def peers(self) -> list[str]:
        return self.mesh.peers()

    def _peeking(self, handler: Handler) -> Handler:
        def peek(data: bytes, peer_id: str) -> Any:
            if (
                self.on_replicate is not None
                and len(data) <= _MAX_REQUEST_BYTES
                and len(data) > _ITEM_COUNT_OFFSET
                and data[_ITEM_COUNT_OFFSET] == 1
            ):
                try:
                    batch = MemorySyncBatch.unpack(data)
                except ProtocolError:
                    pass  # the manager refuses it with a NACK
                else:
                    if is_replicate_request(batch):
                        self.on_replicate(peer_id, batch.tier)
            return handler(data, peer_id)

        return peek
