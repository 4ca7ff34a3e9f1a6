"""The ``Mesh`` interface the sync manager needs, and every transport implements.

A mesh moves opaque messages between nodes: ``send(peer_id, msg_type, data)`` queues one
message for a peer, and a handler registered per message type receives ``(data, peer_id)``. The
sync manager is written against this interface only, so the in-process mesh and the TCP mesh are
interchangeable. The interface lives here, in the sync layer that needs it, so that the mesh
layer above implements it without the sync layer importing a transport (ARCHITECTURE.md, layers).

Ordering: messages from one sender to one receiver are delivered in the order sent, except that
a transport may move URGENT/HIGH sync batches ahead of queued background ones; the sync protocol
does not rely on ordering between different batches (each is acknowledged by its id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from memrepl.protocol.enums import MessageTypes

#: A message handler: ``handler(data, peer_id)``; it may be a plain function or a coroutine.
Handler = Callable[[bytes, str], Awaitable[None] | None]


@runtime_checkable
class Mesh(Protocol):
    """What the sync manager needs from a transport."""

    @property
    def node_id(self) -> str:
        """This node's id."""
        ...

    def send(self, peer_id: str, msg_type: MessageTypes, data: bytes) -> None:
        """Queue ``data`` for ``peer_id``; raises ``PeerUnavailableError`` for an unknown peer."""
        ...

    def register_handler(self, msg_type: MessageTypes, handler: Handler) -> None:
        """Route every received message of ``msg_type`` to ``handler(data, peer_id)``."""
        ...

    def peers(self) -> list[str]:
        """The ids of the peers this node can currently send to."""
        ...
