"""The answers a node waits for from its peers, and what a lost connection does to them.

Every batch this node sends is answered by an ACK or a NACK naming its id, every digest query by
an answer naming its id (memrepl.sync.antientropy). :class:`Awaiting` files each wait under
``(peer, id)``:

- **only the peer asked settles a wait**: an answer from any other peer settles nothing;
- **a lost connection settles every wait on that peer at once** with :attr:`NoAnswer.LOST`
  (when the mesh reports its connections: :class:`~memrepl.sync.transport.LinkWatching`), so a
  round resends its batch on the next connection instead of waiting out the answer timeout for
  an answer that can no longer come. A message sent after the loss is not affected: the report
  only settles the waits it finds;
- **draining** (a node stopping) shortens every wait to a grace period, so that stopping never
  waits on a dead connection for long.

:meth:`Awaiting.wait_connected` waits for a peer to be connected (again), for the driver's
lost-peer rule.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import StrEnum
from typing import Any

from memrepl.errors import PeerUnavailableError
from memrepl.protocol.enums import MessageTypes
from memrepl.sync.transport import LinkWatching, Mesh

__all__ = ["Awaiting", "NoAnswer"]


class NoAnswer(StrEnum):
    """Why a wait ended without an answer."""

    #: None came within the timeout.
    TIMEOUT = "timeout"
    #: It could not be sent: the mesh has no connection to the peer.
    UNREACHABLE = "unreachable"
    #: The connection it went out on was lost before the answer came.
    LOST = "connection-lost"


Key = tuple[str, str]
#: How often a wait for a peer to reconnect looks at the mesh (``peers()`` is a cheap call).
CONNECTED_POLL_S = 0.01


class Awaiting:
    """The waits of one sync manager (see the module docstring)."""

    def __init__(self) -> None:
        self._futures: dict[Key, asyncio.Future[Any]] = {}
        self._deadlines: dict[Key, asyncio.Timeout] = {}
        self._grace_s: float | None = None
        self._loss_watchers: dict[str, list[asyncio.Future[None]]] = {}
        #: Whether the mesh reports its connections (set by :meth:`watch`).
        self.watching = False

    def watch(self, mesh: Mesh) -> None:
        """Follow ``mesh``'s connection reports, if it makes them."""
        if isinstance(mesh, LinkWatching):
            mesh.watch_links(self.link_changed)
            self.watching = True

    def link_changed(self, peer_id: str, up: bool) -> None:
        """The mesh's report: ``peer_id``'s connection came up, or was lost."""
        if up:
            return
        for watcher in self._loss_watchers.pop(peer_id, []):
            if not watcher.done():
                watcher.set_result(None)
        for key, future in list(self._futures.items()):
            if key[0] == peer_id and not future.done():
                future.set_result(NoAnswer.LOST)

    def loss_of(self, peer_id: str) -> asyncio.Future[None]:
        """A future done when ``peer_id``'s connection is next reported lost (never done on a
        mesh that does not report its connections). Cancel it when no longer needed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watchers = self._loss_watchers.setdefault(peer_id, [])
        watchers[:] = [w for w in watchers if not w.done()]
        watchers.append(future)
        return future

    def resolve(self, peer_id: str, request_id: str, answer: object) -> None:
        """Hand ``answer`` from ``peer_id`` to whoever waits for ``request_id`` from it."""
        future = self._futures.pop((peer_id, request_id), None)
        if future is not None and not future.done():
            future.set_result(answer)

    async def ask(
        self,
        mesh: Mesh,
        peer_id: str,
        request_id: str,
        msg_type: MessageTypes,
        data: bytes,
        *,
        timeout_s: float,
    ) -> Any:
        """Send one message and wait for the answer filed under ``(peer_id, request_id)``, or
        return the :class:`NoAnswer` saying why none came."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        key = (peer_id, request_id)
        self._futures[key] = future
        try:
            try:
                mesh.send(peer_id, msg_type, data)
            except PeerUnavailableError:
                return NoAnswer.UNREACHABLE
            try:
                async with asyncio.timeout(self._limit(timeout_s)) as deadline:
                    self._deadlines[key] = deadline
                    return await future
            except TimeoutError:
                return NoAnswer.TIMEOUT
        finally:
            if self._futures.get(key) is future:
                del self._futures[key]
            self._deadlines.pop(key, None)

    def _limit(self, timeout_s: float) -> float:
        return timeout_s if self._grace_s is None else min(timeout_s, self._grace_s)

    def drain(self, grace_s: float) -> None:
        """From now on no wait lasts longer than ``grace_s`` (those running end within it)."""
        self._grace_s = grace_s
        when = asyncio.get_running_loop().time() + grace_s
        for deadline in self._deadlines.values():
            current = deadline.when()
            if current is None or current > when:
                deadline.reschedule(when)

    async def wait_connected(self, mesh: Mesh, peer_id: str, timeout_s: float) -> bool:
        """Whether ``peer_id`` is connected, waiting up to ``timeout_s`` for it to be (again)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._limit(timeout_s)):
                while peer_id not in mesh.peers():
                    await asyncio.sleep(CONNECTED_POLL_S)
        return peer_id in mesh.peers()
