"""A hand-driven mesh client for the security tests: it speaks the handshake and the frame
trailer step by step with the mesh's own auth and framing functions, and can break any rule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
import time
import zlib
from typing import Any

from memrepl.mesh.auth import (
    Auth,
    Challenge,
    HandshakeMessage,
    Hello,
    Refuse,
    Session,
    Welcome,
    decode_handshake,
    new_nonce,
    proof,
    session_key,
    transcript,
    verify_proof,
)
from memrepl.mesh.framing import RawFrame, read_frame
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import (
    HeaderFlags,
    MemoryTier,
    MessageTypes,
    Priority,
    SyncOperation,
    SyncPriority,
)
from memrepl.protocol.header import MessageHeader, encode_frame
from memrepl.protocol.item import MemorySyncItem
from memrepl.protocol.limits import MAGIC

READ_TIMEOUT_S = 5.0


class RawPeer:
    """One raw connection to a mesh node."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node_id: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.node_id = node_id
        self.session: Session | None = None
        #: The listener's challenge, as it arrived.
        self.challenge_payload = b""

    @classmethod
    async def connect(
        cls,
        port: int,
        node_id: str = "mallory",
        *,
        source: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> RawPeer:
        """Connect from address ``source`` (any 127.x.y.z is this machine), over ``tls``."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0), ssl=tls
        )
        return cls(reader, writer, node_id)

    async def hello(self, schema: str, auth: str = "shared-key") -> HandshakeMessage:
        """Send a hello as :attr:`node_id`; the listener's answer (a challenge or a refusal)."""
        hello = Hello(self.node_id, schema, new_nonce(), auth)
        await self.send_plain(MessageTypes.HANDSHAKE, hello.encode())
        _, payload = await self.read_plain()
        return decode_handshake(payload)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_plain(self, msg_type: MessageTypes, payload: bytes) -> None:
        await self.write(encode_frame(msg_type, payload))

    async def read(self, *, sealed: bool) -> RawFrame | None:
        return await read_frame(
            self.reader,
            max_payload=1 << 26,
            idle_timeout_s=READ_TIMEOUT_S,
            seal=self.session if sealed else None,
        )

    async def read_plain(self) -> tuple[MessageHeader, bytes]:
        frame = await self.read(sealed=False)
        assert frame is not None, "connection closed"
        return MessageHeader.unpack(frame.header), frame.payload

    async def handshake(self, key: bytes, schema: str) -> Refuse | None:
        """Run the dialler's side (shared-key mode); returns the listener's refusal, or None once
        welcomed (and the listener's proof verified)."""
        nonce = new_nonce()
        await self.send_plain(MessageTypes.HANDSHAKE, Hello(self.node_id, schema, nonce).encode())
        _, payload = await self.read_plain()
        challenge = decode_handshake(payload)
        if isinstance(challenge, Refuse):
            return challenge
        assert isinstance(challenge, Challenge)
        self.challenge_payload = payload
        terms = transcript(
            self.node_id,
            challenge.node_id,
            initiator_nonce=nonce,
            responder_nonce=challenge.nonce,
            schema_revision=schema,
        )
        auth = Auth(proof(key, initiator=True, transcript_bytes=terms))
        await self.send_plain(MessageTypes.HANDSHAKE, auth.encode())
        _, payload = await self.read_plain()
        answer = decode_handshake(payload)
        if isinstance(answer, Refuse):
            return answer
        assert isinstance(answer, Welcome) and answer.proof is not None
        assert verify_proof(key, initiator=False, transcript_bytes=terms, claimed=answer.proof)
        self.session = Session.for_role(session_key(key, terms), initiator=True)
        return None

    def seal(self, msg_type: MessageTypes, payload: bytes) -> bytes:
        assert self.session is not None
        return self.session.seal(encode_frame(msg_type, payload))

    async def read_sealed(self) -> tuple[MessageHeader, bytes] | None:
        """The next frame, HEARTBEATs skipped; None when the node closed the connection."""
        assert self.session is not None
        while True:
            try:
                frame = await self.read(sealed=True)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if frame is None:
                return None
            header = MessageHeader.unpack(frame.header)
            if header.msg_type is not MessageTypes.HEARTBEAT:
                return header, frame.payload

    async def expect(self, msg_type: MessageTypes) -> dict[str, Any]:
        """Read the next non-heartbeat frame, which must be ``msg_type`` with a JSON payload."""
        got = await self.read_sealed()
        assert got is not None, f"connection closed while waiting for {msg_type.name}"
        header, payload = got
        assert header.msg_type is msg_type, (header.msg_type, payload)
        answer: dict[str, Any] = json.loads(payload)
        return answer

    async def expect_closed(self) -> None:
        """The node sends nothing more (heartbeats aside) and closes the connection."""
        got = await self.read_sealed()
        assert got is None, got


def batch_bytes(
    source: str,
    target: str,
    item_id: str,
    content: dict[str, Any],
    *,
    priority: SyncPriority = SyncPriority.NORMAL,
    tier: MemoryTier = MemoryTier.WORKING,
) -> bytes:
    """A one-item INSERT batch as ``batch.pack()`` (a plain v2 item)."""
    item = MemorySyncItem(
        item_id=item_id,
        timestamp_ns=time.time_ns(),
        tier=tier,
        operation=SyncOperation.INSERT,
        priority=priority,
        payload=json.dumps(content).encode(),
    )
    batch = MemorySyncBatch(
        batch_id=f"raw-{item_id}",
        source_node=source,
        target_node=target,
        tier=tier,
        items=[item],
    )
    return batch.pack()


def gzip_bomb_batch(source: str, target: str, inflated_bytes: int = 24 << 20) -> bytes:
    """A MEMORY_SYNC batch, built by hand (PROTOCOL.md §3), whose COMPRESSED items data claims
    255 items and inflates to ``inflated_bytes`` of zeros: past the 255 * 65,583-byte bound."""
    items_data = zlib.compress(bytes(inflated_bytes), 9, wbits=31)
    metadata = json.dumps(
        {
            "batch_id": "bomb",
            "source_node": source,
            "target_node": target,
            "tier": int(MemoryTier.WORKING),
            "item_count": 255,
            "flags": 1,
            "sync_vector": {},
        }
    ).encode()
    payload = struct.pack(">I", len(metadata)) + metadata + items_data
    header = MessageHeader(
        msg_type=MessageTypes.MEMORY_SYNC,
        payload_len=len(payload),
        timestamp_ns=time.time_ns(),
        flags=HeaderFlags.BATCHED | HeaderFlags.COMPRESSED,
        batch_count=255,
    )
    return header.pack() + payload


def raw_header(msg_type: int, payload_len: int, priority: int = int(Priority.NORMAL)) -> bytes:
    """A v2 header with any values, unchecked (for types and sizes the codec refuses)."""
    return struct.pack(">QHHHHQQ", MAGIC, 2, priority, msg_type, 0, payload_len, time.time_ns())
