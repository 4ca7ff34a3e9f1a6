"""Handing accepted frames to the registered handlers, as ``LocalMesh`` does.

The rule that keeps it right: a handler is called with ``(data, peer_id)`` only for a frame the
connection has already accepted (authentic, in sequence, of a known type); a plain function runs
inline, a coroutine becomes a task that this registry tracks until it ends, so that the mesh's
``close`` can cancel and await every one; a handler's exception is logged, never raised into the
connection that delivered the frame.
"""

from __future__ import annotations

import asyncio
import inspect
import logging

from memrepl.mesh.outbox import CONTROL_TYPES
from memrepl.mesh.stats import Counters
from memrepl.protocol.enums import MessageTypes
from memrepl.sync.transport import Handler

__all__ = ["Handlers"]

log = logging.getLogger(__name__)


class Handlers:
    """The handler registered for each message type, and the tasks of coroutine handlers."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._handlers: dict[MessageTypes, Handler] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    def register(self, msg_type: MessageTypes, handler: Handler) -> None:
        self._handlers[MessageTypes(msg_type)] = handler

    def deliver(
        self, msg_type: MessageTypes, data: bytes, peer_id: str, counters: tuple[Counters, ...]
    ) -> asyncio.Future[None] | None:
        """Call the handler of ``msg_type``; return its task if it is a coroutine."""
        handler = self._handlers.get(msg_type)
        if handler is None:
            if msg_type not in CONTROL_TYPES:
                log.warning("%s has no handler for %s; dropped", self.node_id, msg_type.name)
            return None
        for counter in counters:
            counter.delivered += 1
        try:
            result = handler(data, peer_id)
        except Exception:
            log.exception("handler for %s from %r failed", msg_type.name, peer_id)
            return None
        if not inspect.isawaitable(result):
            return None
        task = asyncio.ensure_future(result)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handler task failed", exc_info=task.exception())

    async def cancel_all(self) -> None:
        """Cancel every running handler task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
