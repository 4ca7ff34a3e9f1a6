"""Reading and writing mesh frames on asyncio streams, within limits.

A mesh frame is a MEMSHADOW v2 frame (PROTOCOL.md §1, §5): the 32-byte header, then exactly
``payload_len`` bytes of payload. On a connection sealed with the shared key, a fixed-size
*header seal* follows the header and a fixed-size *trailer* follows the payload (see
:mod:`memrepl.mesh.auth` for their layout and the :class:`FrameSeal` that checks them). This
module owns getting those bytes off and onto a stream, refusing frames with
:class:`~memrepl.errors.FrameFaultError` (its fault codes, :class:`~memrepl.errors.FaultCode`,
live with the other errors in :mod:`memrepl.errors`, and are re-exported here).

The rules that keep it right:

- **The header is believed before the body is read, and only once it is authentic.** The reader
  reads the header and its seal, has the seal checked, and only then takes payload_len from it:
  a header altered on the wire -- a length field among them -- is refused at once, instead of
  the reader waiting for a payload that never comes. A frame whose payload_len exceeds the limit
  is refused from its header alone, so a peer can never make it buffer more than
  ``max_payload`` plus the seals.
- A fault that leaves the stream at a frame boundary (``in_sync``: an authentic frame of an
  unknown type, say) can be answered and skipped; any other (a frame that fails its seal, bad
  magic, bad version, oversized) cannot, and the connection is closed at once.
- Every read step is bounded by an idle timeout: a peer that stops sending mid-frame is cut off,
  whatever the frame's size.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Protocol

from memrepl.errors import FaultCode, FrameFaultError, ProtocolError
from memrepl.protocol.header import MessageHeader
from memrepl.protocol.limits import HEADER_SIZE, MAGIC, PROTOCOL_VERSION

__all__ = [
    "READ_CHUNK_BYTES",
    "FaultCode",
    "FrameFaultError",
    "FrameSeal",
    "RawFrame",
    "check_framing",
    "close_stream",
    "parse_header",
    "read_frame",
    "write_frame",
]

#: Large payloads are read and drained in pieces of this size, each under the idle timeout.
READ_CHUNK_BYTES = 1 << 20

# magic u64 at offset 0, version u16 at 8; payload_len u64 at 16 (PROTOCOL.md §1).
_MAGIC_VERSION = struct.Struct(">QH")
_PAYLOAD_LEN = struct.Struct(">Q")
_PAYLOAD_LEN_OFFSET = 16


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame's bytes as read: the header, the payload, the trailer and the header seal
    (those two empty on an unsealed connection)."""

    header: bytes
    payload: bytes
    trailer: bytes
    seal: bytes = b""

    @property
    def size(self) -> int:
        """Bytes the frame took on the wire."""
        return len(self.header) + len(self.seal) + len(self.payload) + len(self.trailer)


class FrameSeal(Protocol):
    """What authenticates a connection's frames (memrepl.mesh.auth's sessions)."""

    #: Bytes right after the header (the header's own seal) and after the payload.
    header_seal_bytes: int
    trailer_bytes: int

    def check_header(self, header: bytes, seal: bytes) -> None:
        """Accept a header, or raise :class:`FrameFaultError` (never in sync)."""
        ...

    def check(self, frame: RawFrame) -> None:
        """Accept a whole frame, or raise :class:`FrameFaultError` (never in sync)."""
        ...


def check_framing(header: bytes, *, max_payload: int) -> int:
    """Check the fields that delimit a frame; return its payload_len.

    Raises :class:`FrameFaultError` (never in sync): ``bad-magic``, ``bad-version``,
    ``frame-too-large``. The other fields (type, priority) are checked by :func:`parse_header`
    once the frame is read and authenticated.
    """
    magic, version = _MAGIC_VERSION.unpack_from(header)
    if magic != MAGIC:
        raise FrameFaultError(FaultCode.BAD_MAGIC, f"bad magic 0x{magic:016x}", in_sync=False)
    if version != PROTOCOL_VERSION:
        raise FrameFaultError(
            FaultCode.BAD_VERSION,
            f"protocol version {version}, memrepl speaks {PROTOCOL_VERSION}",
            in_sync=False,
        )
    (payload_len,) = _PAYLOAD_LEN.unpack_from(header, _PAYLOAD_LEN_OFFSET)
    if payload_len > max_payload:
        raise FrameFaultError(
            FaultCode.FRAME_TOO_LARGE,
            f"payload of {payload_len} bytes exceeds the limit of {max_payload}",
            in_sync=False,
        )
    return int(payload_len)


def parse_header(header: bytes) -> MessageHeader:
    """Decode a header whose framing fields passed :func:`check_framing`.

    Raises :class:`FrameFaultError` (in sync, since the frame was read whole): ``unknown-msg-type``,
    ``unknown-priority``, ``malformed-header``.
    """
    try:
        return MessageHeader.unpack(header)
    except ProtocolError as exc:
        try:
            code = FaultCode(exc.code)
        except ValueError:
            code = FaultCode.MALFORMED_HEADER
        raise FrameFaultError(code, str(exc), in_sync=True) from exc


async def _read_exactly(reader: asyncio.StreamReader, size: int, idle_timeout_s: float) -> bytes:
    """Read ``size`` bytes, in chunks, each of which must arrive within the idle timeout."""
    if size <= READ_CHUNK_BYTES:
        try:
            async with asyncio.timeout(idle_timeout_s):
                return await reader.readexactly(size)
        except TimeoutError:
            raise FrameFaultError(
                FaultCode.IDLE_TIMEOUT, f"no data for {idle_timeout_s} s", in_sync=False
            ) from None
    parts: list[bytes] = []
    left = size
    while left:
        part = await _read_exactly(reader, min(left, READ_CHUNK_BYTES), idle_timeout_s)
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_payload: int,
    idle_timeout_s: float,
    seal: FrameSeal | None = None,
) -> RawFrame | None:
    """Read one frame; None if the peer closed the stream between frames. With ``seal``, the
    header is checked before its payload_len is believed, and the whole frame once read.

    Raises :class:`FrameFaultError` for a frame that fails its seal, a framing fault or an idle
    timeout (never in sync), and ``asyncio.IncompleteReadError`` (an ``EOFError``) or
    ``OSError`` if the stream ends or breaks inside a frame.
    """
    sealed = seal.header_seal_bytes if seal is not None else 0
    try:
        head = await _read_exactly(reader, HEADER_SIZE + sealed, idle_timeout_s)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    header, header_seal = head[:HEADER_SIZE], head[HEADER_SIZE:]
    if seal is not None:
        seal.check_header(header, header_seal)
    payload_len = check_framing(header, max_payload=max_payload)
    trailer_bytes = seal.trailer_bytes if seal is not None else 0
    payload = await _read_exactly(reader, payload_len, idle_timeout_s) if payload_len else b""
    trailer = await _read_exactly(reader, trailer_bytes, idle_timeout_s) if trailer_bytes else b""
    frame = RawFrame(header, payload, trailer, header_seal)
    if seal is not None:
        seal.check(frame)
    return frame


async def write_frame(writer: asyncio.StreamWriter, data: bytes, *, idle_timeout_s: float) -> None:
    """Write a whole frame and wait until the transport has taken it.

    The frame goes into the transport in ONE ``write`` call, so a cancelled writer never leaves
    half a frame behind. Draining may take as long as it keeps making progress; if the
    transport's buffer does not shrink for ``idle_timeout_s``, raises :class:`FrameFaultError`
    (``idle-timeout``): the peer is not reading.
    """
    writer.write(data)
    transport = writer.transport
    last = transport.get_write_buffer_size()
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                await writer.drain()
            return
        except TimeoutError:
            now = transport.get_write_buffer_size()
            if now >= last:
                raise FrameFaultError(
                    FaultCode.IDLE_TIMEOUT,
                    f"the peer read nothing for {idle_timeout_s} s",
                    in_sync=False,
                ) from None
            last = now


async def close_stream(writer: asyncio.StreamWriter, *, timeout_s: float = 1.0) -> None:
    """Close a connection's stream, aborting it if it does not close within ``timeout_s``.

    Never raises (except ``CancelledError``, after aborting): a socket is closed either way.
    """
    writer.close()
    try:
        async with asyncio.timeout(timeout_s):
            await writer.wait_closed()
    except (TimeoutError, OSError, EOFError):
        writer.transport.abort()
    except BaseException:
        writer.transport.abort()
        raise
