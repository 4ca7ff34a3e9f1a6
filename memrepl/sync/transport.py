"""The ``Mesh`` interface the sync manager needs, and every transport implements.

A mesh moves opaque messages between nodes: ``send(peer_id, msg_type, data)`` queues one
message for a peer, and a handler registered per message type receives ``(data, peer_id)``. The
sync manager is written against this interface only, so the in-process mesh and the TCP mesh are
interchangeable. The interface lives here, in the sync layer that needs it, so that the mesh
layer above implements it without the sync layer importing a transport (ARCHITECTURE.md, layers).

Ordering: messages from one sender to one receiver are delivered in the order sent, except that
a transport may move URGENT/HIGH sync batches ahead of queued background ones; the sync protocol
does not rely on ordering between different batches (each is acknowledged by its id).

A transport with connections may also report them (:class:`LinkWatching`): a message sent on a
connection that is lost before its answer came may be lost with it, and the sync layer sends it
again on the next connection at once (memrepl.sync.awaiting) instead of waiting out its timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from memrepl.protocol.enums import MessageTypes

#: A connection report: ``listener(peer_id, up)``, True when a connection to the peer came up,
#: False when the current one was lost.
LinkListener = Callable[[str, bool], None]

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


@runtime_checkable
class LinkWatching(Protocol):
    """A mesh that reports its connections (``TcpMesh``, ``LocalMesh``'s partitions)."""

    def watch_links(self, listener: LinkListener) -> None:
        """Call ``listener(peer_id, up)`` whenever a peer's connection comes up or is lost (on
        the event loop, at the moment it happens; a connection replaced by another is not
        lost)."""
        ...
