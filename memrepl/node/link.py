"""How a node's sync manager reaches the mesh: :class:`NodeLink` and :class:`NodeSyncManager`.

:class:`NodeLink` is the :class:`~memrepl.sync.transport.Mesh` the manager talks through (the
real mesh plus REPLICATE notices and draining on stop); :class:`NodeSyncManager`
is the manager with the round options of a long-running process (memrepl.sync.driver): reading
the next batch ahead while the peer applies one, and the lost-peer rule -- a round with a peer
that is gone ends within :data:`LOST_PEER_WAIT_S` instead of waiting for an answer that cannot
come, so rounds, snapshot answers, repair batches and URGENT pushes never hold a stopping node
for long. The rule that keeps them right: neither changes what is sent or when a cursor moves --
only how long a round waits and when the node's own work is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from memrepl.errors import PeerUnavailableError, ProtocolError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.sync.batches import is_replicate_request
from memrepl.sync.driver import RoundOptions
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.transport import Handler, LinkListener, LinkWatching, Mesh

__all__ = ["LOST_PEER_WAIT_S", "NODE_ROUND_OPTIONS", "NodeLink", "NodeSyncManager", "ServingMesh"]

log = logging.getLogger(__name__)

#: Byte 14 of a packed batch's header is its item count (PROTOCOL.md §1, ``flags_batch``).
_ITEM_COUNT_OFFSET = 14
#: A batch whose connection was lost goes out again if its peer is back within this long (a
#: lost connection is redialled at once: a reconnect takes a fraction of a second).
LOST_PEER_WAIT_S = 2.0
#: How a node's rounds wait and read.
NODE_ROUND_OPTIONS = RoundOptions(read_ahead=True, lost_peer_wait_s=LOST_PEER_WAIT_S)
#: A REPLICATE request is a one-item batch of a few hundred bytes; only such frames are peeked.
_MAX_REQUEST_BYTES = 2048


@runtime_checkable
class ServingMesh(Mesh, Protocol):
    """A mesh with a life cycle (``TcpMesh``): the node starts and closes it."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class NodeSyncManager(MemorySyncManager):
    """The sync manager of a node: :class:`MemorySyncManager` with :data:`NODE_ROUND_OPTIONS`
    (see the module docstring); ``round_options`` replaces them."""

    def __init__(self, node_id: str, mesh: Mesh | None = None, **options: Any) -> None:
        options.setdefault("round_options", NODE_ROUND_OPTIONS)
        super().__init__(node_id, mesh, **options)


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

    def watch_links(self, listener: LinkListener) -> None:
        """The mesh's connection reports, when it makes them (memrepl.sync.transport)."""
        if isinstance(self.mesh, LinkWatching):
            self.mesh.watch_links(listener)

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
