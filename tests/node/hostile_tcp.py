"""A hostile key holder on the real wire, for the attack tests against ``memrepl serve``.

:class:`HostilePeer` authenticates with the cluster key (mesh.rawpeer.RawPeer: the real handshake
and frame trailer), then answers the node's rounds honestly -- every batch the node sends it is
ACKed with the cursor an honest peer would report -- while the test sends whatever batches it
builds and reads the node's answer to each, or asks digest queries (anti-entropy). With
:attr:`HostilePeer.hold_repairs` set, the repair batches the node sends (ids ``ae-...``) are kept
unanswered until :meth:`HostilePeer.ack_held`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MessageTypes
from memrepl.storage.migrate import REPLICATION_REVISION
from memrepl.sync.messages import Ack, Nack

from ..mesh.rawpeer import RawPeer

ANSWER_TIMEOUT_S = 15.0


class HostilePeer:
    """One authenticated connection to a node, driven by a test (see the module docstring)."""

    def __init__(self, raw: RawPeer, node: str) -> None:
        self.raw = raw
        self.node = node
        #: Every batch the node sent (its probes, data, REPLICATE requests), in order.
        self.received: list[MemorySyncBatch] = []
        self._inbound: dict[int, int] = {}
        self._waiting: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self._reader: asyncio.Task[None] | None = None
        #: Leave the node's repair batches unanswered (see :meth:`ack_held`).
        self.hold_repairs = False
        self.held: list[MemorySyncBatch] = []
        #: How to answer the node's digest queries: the fields of the answer to each (None:
        #: leave them unanswered). Every query the node sent, in order, is in :attr:`queries`.
        self.answer_queries: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.queries: list[dict[str, Any]] = []
        #: Refuse the node's batches instead: the ``(code, reason)`` of the NACK for each.
        self.nack_batches: Callable[[MemorySyncBatch], tuple[str, str]] | None = None

    @classmethod
    async def connect(cls, port: int, key: bytes, *, node_id: str, node: str) -> HostilePeer:
        raw = await RawPeer.connect(port, node_id)
        refused = await raw.handshake(key, REPLICATION_REVISION)
        assert refused is None, refused
        peer = cls(raw, node)
        peer._reader = asyncio.create_task(peer._read())
        return peer

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.raw.close()

    async def _read(self) -> None:
        while (got := await self.raw.read_sealed()) is not None:
            header, payload = got
            if header.msg_type is MessageTypes.VECTOR_SYNC:
                batch = MemorySyncBatch.unpack(payload)
                self.received.append(batch)
                if self.hold_repairs and batch.batch_id.startswith("ae-"):
                    self.held.append(batch)
                    continue
                if self.nack_batches is not None:
                    code, reason = self.nack_batches(batch)
                    nack = Nack(batch.batch_id, code, reason).encode()
                    await self.raw.write(self.raw.seal(MessageTypes.NACK, nack))
                    continue
                await self._ack(batch)
            elif header.msg_type in (MessageTypes.ACK, MessageTypes.NACK):
                answer = json.loads(payload)
                self._settle(answer["batch_id"], header.msg_type.name, answer)
            elif header.msg_type is MessageTypes.MEMORY_RESPONSE:
                answer = json.loads(payload)
                self._settle(answer["id"], header.msg_type.name, answer)
            elif header.msg_type is MessageTypes.MEMORY_QUERY:
                query = json.loads(payload)
                self.queries.append(query)
                if self.answer_queries is not None:
                    body = {"id": query["id"], **self.answer_queries(query)}
                    data = json.dumps(body).encode()
                    await self.raw.write(self.raw.seal(MessageTypes.MEMORY_RESPONSE, data))

    def _settle(self, request_id: str, kind: str, answer: dict[str, Any]) -> None:
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result((kind, answer))

    async def _ack(self, batch: MemorySyncBatch) -> None:
        tier = int(batch.tier)
        if batch.cursor is not None:
            self._inbound[tier] = max(self._inbound.get(tier, 0), batch.cursor)
        ack = Ack(batch.batch_id, tier, self._inbound.get(tier, 0), len(batch.items), 0)
        await self.raw.write(self.raw.seal(MessageTypes.ACK, ack.encode()))

    async def ack_held(self) -> None:
        """ACK the repair batches kept unanswered so far."""
        held, self.held = self.held, []
        for batch in held:
            await self._ack(batch)

    async def ask(self, query: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Send a digest query (its ``id`` names it); the node's answer: ``("MEMORY_RESPONSE" |
        "NACK", its JSON)``."""
        return await self.request(
            query["id"], MessageTypes.MEMORY_QUERY, json.dumps(query).encode()
        )

    async def request(
        self, request_id: str, msg_type: MessageTypes, data: bytes
    ) -> tuple[str, dict[str, Any]]:
        future: asyncio.Future[tuple[str, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[request_id] = future
        await self.raw.write(self.raw.seal(msg_type, data))
        return await asyncio.wait_for(future, ANSWER_TIMEOUT_S)

    async def send(self, batch: MemorySyncBatch) -> tuple[str, dict[str, Any]]:
        """Send ``batch``; the node's answer: ``("ACK"|"NACK", its JSON)``."""
        return await self.request(batch.batch_id, MessageTypes.VECTOR_SYNC, batch.pack())

    def items_received(self) -> int:
        return sum(len(batch.items) for batch in self.received if batch.cursor is not None)

    def replicate_requests(self) -> list[MemorySyncBatch]:
        return [b for b in self.received if b.items and b.items[0].item_id == "*"]
