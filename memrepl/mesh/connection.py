"""One authenticated connection to a peer: its reader, its writer, and the faults it counts.

A :class:`Connection` exists only after a completed handshake (:mod:`memrepl.mesh.handshake`).
Its reader checks every frame (its header's seal before its size, then the whole frame's seal,
the sequence, the header's fields) before anything else looks at it and hands accepted frames to
the mesh; its writer takes frames from the peer's
:class:`~memrepl.mesh.outbox.Outbox`, seals them and writes them, and sends a HEARTBEAT when it
has been quiet for the heartbeat interval.

The rules that keep it right:

- Only the writer task writes to the socket while the connection runs, and it seals a frame
  (taking its sequence number) and hands it to the transport with no ``await`` in between, so
  sequence numbers go out in order and frames never interleave. The farewell DISCONNECT is
  written only after the writer has stopped.
- A refused frame never reaches a handler. It is counted (per peer and in total) and logged. A
  frame that fails its seal (altered, replayed, reordered: memrepl.mesh.auth) or whose framing
  is broken ends the connection at once: it says DISCONNECT ``{"code", "reason"}`` and closes,
  and the dialler reconnects. An authentic frame refused for what it says (an unknown type, a
  HANDSHAKE after the handshake) is answered with a NACK ``{"batch_id": "", "code", "reason"}``,
  and the connection closes only once ``max_faults`` such frames were refused.
- DISCONNECT is the last frame a side writes on a connection. A connection :meth:`retired
  <Connection.retire>` in favour of another one to the same peer stops writing, says DISCONNECT,
  and goes on reading until the peer's DISCONNECT, so nothing either side wrote is dropped.
- Every timeout in the mesh is ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11,
  ``wait_for`` can swallow a cancellation that races with its result, which once left a
  "cancelled" writer sending heartbeats forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from memrepl.mesh.auth import Session, TlsSession
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.framing import (
    FaultCode,
    FrameFaultError,
    close_stream,
    parse_header,
    read_frame,
    write_frame,
)
from memrepl.mesh.handshake import nack_payload
from memrepl.mesh.outbox import Outbox, frame_priority
from memrepl.mesh.revocation import PeerIdentity
from memrepl.mesh.stats import Counters
from memrepl.protocol.enums import MessageTypes
from memrepl.protocol.header import encode_frame

__all__ = ["Connection", "Deliver"]

log = logging.getLogger(__name__)

#: Frames that answer one of ours that took a window slot (outbox.Outbox.answered).
_ANSWER_TYPES = frozenset({MessageTypes.ACK, MessageTypes.NACK, MessageTypes.MEMORY_RESPONSE})

#: How the mesh takes an accepted frame: ``deliver(msg_type, data, peer_id)``, returning the
#: task of a coroutine handler (which the connection bounds), or None.
Deliver = Callable[[MessageTypes, bytes, str], "asyncio.Future[None] | None"]

#: How long the farewell DISCONNECT may take to write.
GOODBYE_TIMEOUT_S = 1.0
#: How long a retired connection keeps reading after its DISCONNECT, waiting for the peer's.
LINGER_S = 2.0


class Connection:
    """An authenticated connection to ``peer_id``; :meth:`run` serves it until it ends."""

    def __init__(
        self,
        *,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session | TlsSession,
        identity: PeerIdentity,
        dialled_by: str,
        outbox: Outbox,
        counters: Counters,
        totals: Counters,
        config: TcpMeshConfig,
        deliver: Deliver,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.session = session
        #: Who the peer proved to be (its certificate, in certificate mode).
        self.identity = identity
        self.peer_id = identity.node_id
        #: The node that dialled this connection (decides between duplicates).
        self.dialled_by = dialled_by
        self.outbox = outbox
        self.config = config
        self._counters = (counters, totals)
        self._deliver = deliver
        self._pending: set[asyncio.Future[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._goodbye: tuple[str, str] | None = None
        self._retiring = False
        self._said_goodbye = False
        self._broken = False
        self.faults = 0
        #: Why the connection ended, once it has.
        self.end_reason: str | None = None
        self.closed = asyncio.Event()

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted with TLS."""
        return self.writer.get_extra_info("ssl_object") is not None

    def __repr__(self) -> str:
        return f"<Connection to {self.peer_id!r} dialled by {self.dialled_by!r}>"

    # -- life cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the peer leaves, a fatal fault, or a close request."""
        try:
            if self._goodbye is not None and not self._retiring:
                return  # closed before it started
            self._reader = asyncio.create_task(self._read_loop(), name=f"mesh-read-{self.peer_id}")
            if not self._retiring:
                self._writer = asyncio.create_task(
                    self._write_loop(), name=f"mesh-write-{self.peer_id}"
                )
            while not self._reader.done():
                if self._writer is not None and not self._writer.done():
                    await asyncio.wait(
                        (self._reader, self._writer), return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                if self._retiring:
                    # Graceful: our DISCONNECT is the last frame we write; every frame the peer
                    # wrote before its own DISCONNECT is still read and delivered.
                    await self._say_goodbye()
                    await asyncio.wait((self._reader,), timeout=LINGER_S)
                break
        finally:
            tasks = [t for t in (self._reader, self._writer) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self._say_goodbye()
            finally:
                await close_stream(self.writer)
                self.closed.set()

    def request_close(self, code: FaultCode, reason: str) -> None:
        """Say DISCONNECT with ``code`` and close now (await :attr:`closed`)."""
        if self._goodbye is None:
            self._goodbye = (code.value, reason)
        self.end_reason = self.end_reason or f"{code.value}: {reason}"
        self._retiring = False
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()

    def retire(self, code: FaultCode, reason: str) -> None:
        """Stop writing, say DISCONNECT, and keep reading until the peer's DISCONNECT (or for
        at most ``LINGER_S``): used when another connection to the same peer takes over, so
        that no frame already in flight on this one is lost."""
        if self._goodbye is not None:
            return
        self._goodbye = (code.value, reason)
        self.end_reason = f"{code.value}: {reason}"
        self._retiring = True
        if self._writer is not None:
            self._writer.cancel()

    async def _say_goodbye(self) -> None:
        if self._goodbye is None or self._broken or self._said_goodbye:
            return
        self._said_goodbye = True
        code, reason = self._goodbye
        payload = json.dumps({"code": code, "reason": reason}).encode("utf-8")
        frame = self.session.seal(encode_frame(MessageTypes.DISCONNECT, payload))
        try:
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                await write_frame(self.writer, frame, idle_timeout_s=GOODBYE_TIMEOUT_S)
        except (OSError, FrameFaultError, TimeoutError):
            return
        self._count_out(len(frame))

    # -- counting -----------------------------------------------------------------------------

    def _count_in(self, size: int) -> None:
        for counters in self._counters:
            counters.frames_in += 1
            counters.bytes_in += size

    def _count_out(self, size: int) -> None:
        for counters in self._counters:
            counters.frames_out += 1
            counters.bytes_out += size

    def _refuse(self, fault: FrameFaultError) -> bool:
        """Count, log and answer a refused frame; True if the connection must close."""
        self.faults += 1
        text = f"{fault.code}: {fault.reason}"
        for counters in self._counters:
            counters.refused[fault.code] += 1
            counters.record_error(fault.code, text)
        log.warning("refused a frame from peer %r: %s", self.peer_id, text)
        if not fault.in_sync:
            self.request_close(fault.fault, fault.reason)
            return True
        self.outbox.push(MessageTypes.NACK, nack_payload(fault.code, fault.reason))
        if self.faults >= self.config.max_faults:
            log.warning(
                "disconnecting peer %r: %d refused frames on this connection",
                self.peer_id,
                self.faults,
            )
            self.request_close(FaultCode.TOO_MANY_FAULTS, f"{self.faults} refused frames")
            return True
        return False

    # -- reading ------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        config = self.config
        try:
            while True:
                raw = await read_frame(
                    self.reader,
                    max_payload=config.max_frame_bytes,
                    idle_timeout_s=config.idle_timeout_s,
                    seal=self.session,
                )
                if raw is None:
                    self.end_reason = self.end_reason or "closed by the peer"
                    self._broken = True
                    return
                self._count_in(raw.size)
                try:
                    header = parse_header(raw.header)
                except FrameFaultError as fault:
                    if self._refuse(fault):
                        return
                    continue
                if await self._handle(header.msg_type, raw.payload):
                    return
        except FrameFaultError as fault:
            self._refuse(fault)
        except (EOFError, OSError) as exc:
            self._broken = True
            self.end_reason = self.end_reason or f"connection lost: {exc!r}"

    async def _handle(self, msg_type: MessageTypes, payload: bytes) -> bool:
        """Act on an accepted frame; True if the connection must close."""
        if msg_type is MessageTypes.HANDSHAKE:
            return self._refuse(
                FrameFaultError(
                    FaultCode.UNEXPECTED_HANDSHAKE,
                    "HANDSHAKE frame after the handshake completed",
                    in_sync=True,
                )
            )
        if msg_type is MessageTypes.DISCONNECT:
            self.end_reason = f"the peer disconnected: {payload[:200].decode('utf-8', 'replace')}"
            log.info("peer %r disconnected: %s", self.peer_id, self.end_reason)
            return True
        if msg_type in _ANSWER_TYPES and not self._retiring:
            # A retired connection's window slots were given back when it was replaced.
            self.outbox.answered()
        task = self._deliver(msg_type, payload, self.peer_id)
        if task is not None and not task.done():
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            if len(self._pending) >= self.config.max_pending_handlers:
                await asyncio.wait(set(self._pending), return_when=asyncio.FIRST_COMPLETED)
        return False

    # -- writing ------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        config = self.config
        try:
            while True:
                frame = await self.outbox.next(timeout_s=config.heartbeat_interval_s)
                if frame is None:
                    msg_type, data = MessageTypes.HEARTBEAT, b""
                else:
                    msg_type, data = frame.msg_type, frame.data
                    self.outbox.sent(frame)
                wire = self.session.seal(
                    encode_frame(msg_type, data, priority=frame_priority(msg_type, data))
                )
                await write_frame(self.writer, wire, idle_timeout_s=config.idle_timeout_s)
                self._count_out(len(wire))
                if msg_type is MessageTypes.NACK:
                    self._count_nack(data)
        except FrameFaultError as fault:
            self._broken = True
            self.end_reason = self.end_reason or f"{fault.code}: {fault.reason}"
            for counters in self._counters:
                counters.record_error(fault.code, self.end_reason)
            log.warning("disconnecting peer %r: %s", self.peer_id, self.end_reason)
        except OSError as exc:
            self._broken = True
            self.end_reason = self.end_reason or f"connection lost: {exc!r}"

    def _count_nack(self, data: bytes) -> None:
        try:
            code = json.loads(data.decode("utf-8")).get("code")
        except (ValueError, AttributeError, RecursionError):
            code = None
        key = code if isinstance(code, str) else "unknown"
        for counters in self._counters:
            counters.nacks_sent[key[:64]] += 1
