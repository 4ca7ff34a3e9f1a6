"""Driving the handshake of :mod:`memrepl.mesh.auth` over an asyncio stream, for either side.

:func:`initiate` runs the dialler's side, :func:`respond` the listener's; each returns an
:class:`Established` (the peer's proven identity and the connection's session) or raises. In
certificate mode the caller has completed mutual TLS and passes the identity the peer's
certificate proves (:func:`memrepl.mesh.identity.peer_identity`).

The rules that keep it right: nothing the peer sends is believed before its proof verifies (the
HMAC proof over the transcript, or its certificate); a claimed node id must be the certificate's;
the listener sends nothing that depends on the key before the dialler's proof verified; no frame
other than HANDSHAKE is read before the handshake is done; every refusal tells the peer why (a
``refuse`` message, or a NACK for a non-HANDSHAKE frame) before the caller closes the connection,
except a listener whose proof fails, which is simply dropped (it is no memrepl node). The caller
bounds the whole exchange with its handshake timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from memrepl.errors import HandshakeError
from memrepl.mesh.auth import (
    MAX_HANDSHAKE_PAYLOAD_BYTES,
    Auth,
    Challenge,
    HandshakeMessage,
    Hello,
    Refuse,
    Session,
    TlsSession,
    Welcome,
    decode_handshake,
    new_nonce,
    proof,
    session_key,
    transcript,
    verify_proof,
)
from memrepl.mesh.framing import FaultCode, FrameFaultError, parse_header, read_frame, write_frame
from memrepl.mesh.identity import Credentials, NodeCertificate
from memrepl.mesh.revocation import PeerIdentity
from memrepl.mesh.stats import Counters
from memrepl.protocol.enums import MessageTypes
from memrepl.protocol.header import encode_frame
from memrepl.protocol.limits import PROTOCOL_VERSION

__all__ = ["Established", "HandshakeError", "initiate", "nack_payload", "refuse", "respond"]


@dataclass(frozen=True, slots=True)
class Established:
    """A completed handshake: who the peer proved to be, and the session to seal frames with."""

    identity: PeerIdentity
    session: Session | TlsSession
    initiator: bool

    @property
    def peer_id(self) -> str:
        return self.identity.node_id


def nack_payload(code: str, reason: str) -> bytes:
    """The JSON of a mesh-level NACK: ``{"batch_id": "", "code", "reason"}``."""
    return json.dumps({"batch_id": "", "code": code, "reason": reason}).encode("utf-8")


class _Stream:
    """One connection during its handshake: plain (unsealed) frames, counted in ``counters``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_timeout_s: float,
        counters: Counters,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_timeout_s = idle_timeout_s
        self.counters = counters
        self.peer_id: str | None = None

    async def send(self, msg_type: MessageTypes, payload: bytes) -> None:
        frame = encode_frame(msg_type, payload)
        await write_frame(self.writer, frame, idle_timeout_s=self.idle_timeout_s)
        self.counters.frames_out += 1
        self.counters.bytes_out += len(frame)

    async def receive(self) -> HandshakeMessage:
        raw = await read_frame(
            self.reader,
            max_payload=MAX_HANDSHAKE_PAYLOAD_BYTES,
            idle_timeout_s=self.idle_timeout_s,
        )
        if raw is None:
            raise ConnectionResetError("the peer closed the connection during the handshake")
        self.counters.frames_in += 1
        self.counters.bytes_in += raw.size
        header = parse_header(raw.header)
        if header.msg_type is not MessageTypes.HANDSHAKE:
            raise FrameFaultError(
                FaultCode.HANDSHAKE_REQUIRED,
                f"{header.msg_type.name} frame before the handshake completed",
                in_sync=True,
            )
        return decode_handshake(raw.payload)

    async def refuse(self, code: FaultCode, reason: str) -> HandshakeError:
        """Tell the peer why (best effort) and return the error to raise."""
        with contextlib.suppress(OSError, FrameFaultError):
            await self.send(MessageTypes.HANDSHAKE, Refuse(code.value, reason).encode())
        return HandshakeError(code.value, reason, peer_id=self.peer_id)

    async def receive_or_refusal(self) -> HandshakeMessage:
        """The next message; a ``refuse`` from the peer raises :class:`HandshakeError`."""
        message = await self.receive()
        if isinstance(message, Refuse):
            raise _refused_by_peer(message, self.peer_id)
        return message

    async def answer_fault(self, fault: FrameFaultError) -> None:
        """NACK a refused frame when the stream still allows it (best effort)."""
        if not fault.in_sync:
            return
        with contextlib.suppress(OSError, FrameFaultError):
            await self.send(MessageTypes.NACK, nack_payload(fault.code, fault.reason))


def _refused_by_peer(message: Refuse, peer_id: str | None) -> HandshakeError:
    return HandshakeError(message.code, f"refused by the peer: {message.reason}", peer_id=peer_id)


async def refuse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    code: FaultCode,
    reason: str,
    *,
    peer_id: str | None,
    idle_timeout_s: float,
    counters: Counters,
) -> HandshakeError:
    """Refuse a connection before its handshake (revoked, throttled...): tell the peer why, best
    effort, and return the error to raise."""
    stream = _Stream(reader, writer, idle_timeout_s, counters)
    stream.peer_id = peer_id
    return await stream.refuse(code, reason)


async def _check_terms(
    stream: _Stream, *, version: int, schema: str, our_schema: str, auth: str, our_auth: str
) -> None:
    if auth != our_auth:
        raise await stream.refuse(
            FaultCode.AUTH_MODE_MISMATCH,
            f"the peer authenticates with {auth}, this node with {our_auth}; every node of a "
            "cluster must use the same mode",
        )
    if version != PROTOCOL_VERSION:
        raise await stream.refuse(
            FaultCode.VERSION_MISMATCH,
            f"protocol version {version}, this node speaks {PROTOCOL_VERSION}",
        )
    if schema != our_schema:
        raise await stream.refuse(
            FaultCode.SCHEMA_MISMATCH,
            f"replication revision {schema!r} differs from this node's {our_schema!r}; "
            "upgrade the older node's memrepl",
        )


async def _check_certificate(
    stream: _Stream, claimed: str, certified: PeerIdentity | None, *, what: str
) -> PeerIdentity:
    """Certificate mode: the node id the peer claims must be the one its certificate names."""
    if certified is None:  # pragma: no cover - the mesh always passes it in this mode
        raise await stream.refuse(FaultCode.BAD_CERTIFICATE, "no peer certificate")
    if claimed != certified.node_id:
        raise await stream.refuse(
            FaultCode.IDENTITY_MISMATCH,
            f"{what} claims node id {claimed!r}, but its certificate (serial "
            f"{certified.serial}) is for {certified.node_id!r}",
        )
    return certified


async def initiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_id: str,
    credentials: Credentials,
    certified: PeerIdentity | None,
    schema: str,
    expected_peer: str | None,
    idle_timeout_s: float,
    counters: Counters,
) -> Established:
    """Run the dialler's side: prove first, then check the listener's proof.

    ``certified`` is the identity the listener's certificate proved (certificate mode only).
    Raises :class:`HandshakeError`, :class:`FrameFaultError`, ``OSError``.
    """
    stream = _Stream(reader, writer, idle_timeout_s, counters)
    stream.peer_id = expected_peer
    mode = credentials.mode
    try:
        nonce = new_nonce()
        await stream.send(MessageTypes.HANDSHAKE, Hello(node_id, schema, nonce, mode).encode())
        message = await stream.receive_or_refusal()
        if not isinstance(message, Challenge):
            raise await stream.refuse(FaultCode.BAD_HANDSHAKE, "expected a challenge")
        await _check_terms(
            stream,
            version=message.version,
            schema=message.schema,
            our_schema=schema,
            auth=message.auth,
            our_auth=mode,
        )
        if message.node_id == node_id or (
            expected_peer is not None and message.node_id != expected_peer
        ):
            raise await stream.refuse(
                FaultCode.WRONG_PEER,
                f"dialled {expected_peer!r} (this is {node_id!r}), reached {message.node_id!r}",
            )
        stream.peer_id = message.node_id
        if isinstance(credentials, NodeCertificate):
            identity = await _check_certificate(
                stream, message.node_id, certified, what="the listener"
            )
            await stream.send(MessageTypes.HANDSHAKE, Auth().encode())
            answer = await stream.receive_or_refusal()
            if not isinstance(answer, Welcome):
                raise await stream.refuse(FaultCode.BAD_HANDSHAKE, "expected a welcome")
            return Established(identity, TlsSession(), initiator=True)
        key = credentials.key
        terms = transcript(
            node_id,
            message.node_id,
            initiator_nonce=nonce,
            responder_nonce=message.nonce,
            schema_revision=schema,
        )
        mine = Auth(proof(key, initiator=True, transcript_bytes=terms))
        await stream.send(MessageTypes.HANDSHAKE, mine.encode())
        answer = await stream.receive_or_refusal()
        if not isinstance(answer, Welcome):
            raise await stream.refuse(FaultCode.BAD_HANDSHAKE, "expected a welcome")
        if answer.proof is None or not verify_proof(
            key, initiator=False, transcript_bytes=terms, claimed=answer.proof
        ):
            # It accepted our proof without holding the key: no memrepl node. Just drop it.
            raise HandshakeError(
                FaultCode.AUTH_FAILED.value,
                "the listener did not prove it holds the cluster key",
                peer_id=message.node_id,
            )
    except FrameFaultError as fault:
        await stream.answer_fault(fault)
        raise
    session = Session.for_role(session_key(key, terms), initiator=True)
    return Established(PeerIdentity(message.node_id), session, initiator=True)


async def respond(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_id: str,
    credentials: Credentials,
    certified: PeerIdentity | None,
    schema: str,
    idle_timeout_s: float,
    counters: Counters,
) -> Established:
    """Run the listener's side: nothing that depends on the key goes out before the dialler's
    proof verified.

    ``certified`` is the identity the dialler's certificate proved (certificate mode only).
    Raises :class:`HandshakeError`, :class:`FrameFaultError`, ``OSError``.
    """
    stream = _Stream(reader, writer, idle_timeout_s, counters)
    stream.peer_id = certified.node_id if certified is not None else None
    mode = credentials.mode
    try:
        hello = await stream.receive_or_refusal()
        if not isinstance(hello, Hello):
            raise await stream.refuse(FaultCode.BAD_HANDSHAKE, "expected a hello")
        stream.peer_id = hello.node_id
        await _check_terms(
            stream,
            version=hello.version,
            schema=hello.schema,
            our_schema=schema,
            auth=hello.auth,
            our_auth=mode,
        )
        if hello.node_id == node_id:
            raise await stream.refuse(FaultCode.WRONG_PEER, f"{node_id!r} is this node's own id")
        identity = PeerIdentity(hello.node_id)
        if isinstance(credentials, NodeCertificate):
            identity = await _check_certificate(
                stream, hello.node_id, certified, what="the dialler"
            )
        nonce = new_nonce()
        await stream.send(MessageTypes.HANDSHAKE, Challenge(node_id, schema, nonce, mode).encode())
        answer = await stream.receive_or_refusal()
        if not isinstance(answer, Auth):
            raise await stream.refuse(FaultCode.BAD_HANDSHAKE, "expected an auth message")
        if isinstance(credentials, NodeCertificate):
            await stream.send(MessageTypes.HANDSHAKE, Welcome().encode())
            return Established(identity, TlsSession(), initiator=False)
        key = credentials.key
        terms = transcript(
            hello.node_id,
            node_id,
            initiator_nonce=hello.nonce,
            responder_nonce=nonce,
            schema_revision=schema,
        )
        if answer.proof is None or not verify_proof(
            key, initiator=True, transcript_bytes=terms, claimed=answer.proof
        ):
            raise await stream.refuse(
                FaultCode.AUTH_FAILED, "the dialler did not prove it holds the cluster key"
            )
        welcome = Welcome(proof(key, initiator=False, transcript_bytes=terms))
        await stream.send(MessageTypes.HANDSHAKE, welcome.encode())
    except FrameFaultError as fault:
        await stream.answer_fault(fault)
        raise
    session = Session.for_role(session_key(key, terms), initiator=False)
    return Established(identity, session, initiator=False)
