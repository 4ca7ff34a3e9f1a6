"""``LocalMesh``: several nodes in one process, for embedding and for tests.

Create one hub and one endpoint per node; each endpoint is a :class:`~memrepl.mesh.base.Mesh`::

    hub = LocalMesh()
    manager_a = MemorySyncManager(node_id="node-a", mesh=hub.endpoint("node-a"))
    manager_b = MemorySyncManager(node_id="node-b", mesh=hub.endpoint("node-b"))

Delivery is asynchronous, like a real network: inside a running event loop each message is
handed to its handler on a later loop iteration (coroutine handlers run as tasks), never inside
``send``. Outside an event loop, the outermost ``send`` drains the queue before returning, so
plain synchronous code (the seed's ``handle_sync``) works too. For tests the hub can cut links
(``partition``/``heal``) and hold messages (``hold``) to deliver, duplicate or reorder them by hand.
A cut link is reported to both endpoints' link listeners as lost, a healed one as up
(:class:`~memrepl.sync.transport.LinkWatching`), as ``TcpMesh`` reports its connections.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from dataclasses import dataclass

from memrepl.errors import PeerUnavailableError
from memrepl.protocol.enums import MessageTypes
from memrepl.sync.transport import Handler, LinkListener

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalMessage:
    """One message in flight between two endpoints."""

    source: str
    target: str
    msg_type: MessageTypes
    data: bytes


class LocalEndpoint:
    """One node's view of a :class:`LocalMesh`."""

    def __init__(self, hub: LocalMesh, node_id: str) -> None:
        self._hub = hub
        self._node_id = node_id
        self._handlers: dict[MessageTypes, Handler] = {}
        self._link_listeners: list[LinkListener] = []

    @property
    def node_id(self) -> str:
        return self._node_id

    def send(self, peer_id: str, msg_type: MessageTypes, data: bytes) -> None:
        self._hub.route(LocalMessage(self._node_id, peer_id, MessageTypes(msg_type), data))

    def register_handler(self, msg_type: MessageTypes, handler: Handler) -> None:
        self._handlers[MessageTypes(msg_type)] = handler

    def peers(self) -> list[str]:
        return self._hub.reachable_from(self._node_id)

    def handler_for(self, msg_type: MessageTypes) -> Handler | None:
        return self._handlers.get(msg_type)

    def watch_links(self, listener: LinkListener) -> None:
        """Call ``listener(peer_id, up)`` when the hub cuts (False) or heals (True) a link."""
        self._link_listeners.append(listener)

    def link_changed(self, peer_id: str, up: bool) -> None:
        for listener in list(self._link_listeners):
            listener(peer_id, up)


class LocalMesh:
    """A hub connecting endpoints in one process."""

    def __init__(self) -> None:
        self._endpoints: dict[str, LocalEndpoint] = {}
        self._cut: set[frozenset[str]] = set()
        self._queue: deque[LocalMessage] = deque()
        self._draining = False
        self._tasks: set[asyncio.Future[None]] = set()
        #: When True, messages wait in ``held`` until a test delivers them.
        self.hold = False
        self.held: list[LocalMessage] = []
        #: Messages delivered so far, for tests and statistics.
        self.delivered = 0

    def endpoint(self, node_id: str) -> LocalEndpoint:
        """The endpoint of ``node_id``, created on first use."""
        if node_id not in self._endpoints:
            self._endpoints[node_id] = LocalEndpoint(self, node_id)
        return self._endpoints[node_id]

    def reachable_from(self, node_id: str) -> list[str]:
        return sorted(
            peer
            for peer in self._endpoints
            if peer != node_id and frozenset((node_id, peer)) not in self._cut
        )

    def partition(self, a: str, b: str) -> None:
        """Cut the link between ``a`` and ``b``: messages between them are dropped (and both
        ends are told their link was lost)."""
        pair = frozenset((a, b))
        if pair not in self._cut:
            self._cut.add(pair)
            self._report(a, b, up=False)

    def heal(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair in self._cut:
            self._cut.discard(pair)
            self._report(a, b, up=True)

    def _report(self, a: str, b: str, *, up: bool) -> None:
        for node, peer in ((a, b), (b, a)):
            endpoint = self._endpoints.get(node)
            if endpoint is not None:
                endpoint.link_changed(peer, up)

    def route(self, message: LocalMessage) -> None:
        if message.target not in self._endpoints:
            raise PeerUnavailableError(
                f"send to {message.target!r}: no such node on this mesh", peer_id=message.target
            )
        if frozenset((message.source, message.target)) in self._cut:
            log.debug(
                "dropped %s from %s to %s (partitioned)",
                message.msg_type.name,
                message.source,
                message.target,
            )
            return
        if self.hold:
            self.held.append(message)
            return
        self._enqueue(message)

    def release(self, messages: list[LocalMessage] | None = None) -> None:
        """Deliver held messages (all of them, or the given ones in the given order; a message
        may be given twice to duplicate it)."""
        chosen = list(self.held) if messages is None else messages
        if messages is None:
            self.held.clear()
        for message in chosen:
            self._enqueue(message)

    async def settle(self) -> None:
        """Wait until no message is queued and no handler task is running."""
        while self._queue or self._tasks:
            await asyncio.sleep(0)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _enqueue(self, message: LocalMessage) -> None:
        self._queue.append(message)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drain()
            return
        loop.call_soon(self._deliver_one)

    def _drain(self) -> None:
        # The outermost send drains; sends made by handlers only enqueue (no recursion).
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                self._deliver_one()
        finally:
            self._draining = False

    def _deliver_one(self) -> None:
        if not self._queue:
            return
        message = self._queue.popleft()
        handler = self._endpoints[message.target].handler_for(message.msg_type)
        if handler is None:
            log.warning("%s has no handler for %s; dropped", message.target, message.msg_type.name)
            return
        self.delivered += 1
        try:
            result = handler(message.data, message.source)
        except Exception:
            log.exception("handler for %s on %s failed", message.msg_type.name, message.target)
            return
        if inspect.isawaitable(result):
            try:
                task = asyncio.ensure_future(result)
            except RuntimeError:
                log.error("coroutine handler for %s needs a running event loop", message.msg_type)
                if inspect.iscoroutine(result):
                    result.close()
                return
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handler task failed", exc_info=task.exception())
