"""The 32-byte MEMSHADOW v2 message header and the frames built on it (PROTOCOL.md §1, §5).

This module owns the header's byte layout (``>QHHHHQQ``) and the mesh frame: a header followed by
exactly ``payload_len`` bytes. The rule that keeps it right: a :class:`MessageHeader` can only
hold values that fit their fields, so :meth:`MessageHeader.pack` never masks or truncates, and
:meth:`MessageHeader.unpack` / :func:`decode_frame` refuse every other byte string with a
:class:`~memrepl.errors.ProtocolError` whose ``code`` names the fault.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from memrepl.errors import ProtocolError
from memrepl.protocol.enums import HeaderFlags, MessageTypes, Priority
from memrepl.protocol.limits import (
    HEADER_SIZE,
    MAGIC,
    MAX_BATCH_ITEMS,
    PROTOCOL_VERSION,
    U64_MAX,
)

__all__ = ["MessageHeader", "as_bytes", "decode_frame", "encode_frame", "pack_header"]

# magic u64, version u16, priority u16, msg_type u16, flags_batch u16, payload_len u64,
# timestamp_ns u64: all big-endian (PROTOCOL.md §1).
_HEADER = struct.Struct(">QHHHHQQ")

# Dict lookups instead of ``Enum(value)``: several times faster, and a miss is a plain None.
_MSG_TYPES: dict[int, MessageTypes] = {m.value: m for m in MessageTypes}
_PRIORITIES: dict[int, Priority] = {p.value: p for p in Priority}
# Every flags byte as a HeaderFlags, so that no hot path calls IntFlag's slow constructor.
_FLAGS: tuple[HeaderFlags, ...] = tuple(HeaderFlags(value) for value in range(0x100))


def as_bytes(data: object) -> bytes:
    """Return ``data`` as ``bytes``; accept bytes-like objects, refuse anything else.

    Raises :class:`ProtocolError` (code ``"not-bytes"``) for a value that is not bytes-like, so
    that the decoders keep their one promise: only ``ProtocolError`` escapes them.
    """
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            return bytes(data)
        except (TypeError, ValueError, BufferError) as exc:  # a released memoryview
            raise ProtocolError(f"cannot read {type(data).__name__}", code="not-bytes") from exc
    raise ProtocolError(f"expected bytes, got {type(data).__name__}", code="not-bytes")


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True is never a meaningful wire number.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """A v2 message header: what follows it, how urgent it is, when it was made.

    Construction validates every field and raises :class:`ProtocolError` for a value that does
    not fit the wire (codes ``"unknown-msg-type"``, ``"unknown-priority"``, ``"bad-flags"``,
    ``"bad-batch-count"``, ``"bad-payload-len"``, ``"bad-timestamp"``, ``"bad-version"``).
    """

    msg_type: MessageTypes
    payload_len: int
    timestamp_ns: int
    priority: Priority = Priority.NORMAL
    flags: HeaderFlags = HeaderFlags.NONE
    batch_count: int = 0
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        msg_type = _MSG_TYPES.get(self.msg_type) if _is_int(self.msg_type) else None
        if msg_type is None:
            raise ProtocolError(
                f"header: unknown message type {self.msg_type!r}", code="unknown-msg-type"
            )
        priority = _PRIORITIES.get(self.priority) if _is_int(self.priority) else None
        if priority is None:
            raise ProtocolError(
                f"header: unknown priority {self.priority!r}", code="unknown-priority"
            )
        # Only the low byte of flags_batch holds flags (PROTOCOL.md §1): refuse, never mask.
        if not _is_int(self.flags) or not 0 <= self.flags <= 0xFF:
            raise ProtocolError(
                f"header: flags {self.flags!r} do not fit one byte", code="bad-flags"
            )
        if not _is_int(self.batch_count) or not 0 <= self.batch_count <= MAX_BATCH_ITEMS:
            raise ProtocolError(
                f"header: batch_count {self.batch_count!r} is not in 0..{MAX_BATCH_ITEMS}",
                code="bad-batch-count",
            )
        if not _is_int(self.payload_len) or not 0 <= self.payload_len <= U64_MAX:
            raise ProtocolError(
                f"header: payload_len {self.payload_len!r} is not a u64", code="bad-payload-len"
            )
        if not _is_int(self.timestamp_ns) or not 0 <= self.timestamp_ns <= U64_MAX:
            raise ProtocolError(
                f"header: timestamp_ns {self.timestamp_ns!r} is not a u64", code="bad-timestamp"
            )
        if not _is_int(self.version) or self.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"header: version {self.version!r} is not {PROTOCOL_VERSION}", code="bad-version"
            )
        object.__setattr__(self, "msg_type", msg_type)
        object.__setattr__(self, "priority", priority)
        object.__setattr__(self, "flags", _FLAGS[self.flags])

    def pack(self) -> bytes:
        """Return the header's 32 bytes."""
        return pack_header(
            self.msg_type,
            self.payload_len,
            self.timestamp_ns,
            priority=self.priority,
            flags=self.flags,
            batch_count=self.batch_count,
        )

    @classmethod
    def unpack(cls, data: bytes) -> MessageHeader:
        """Read a header from the first 32 bytes of ``data`` (later bytes are not looked at).

        Raises :class:`ProtocolError`: ``"truncated"`` (under 32 bytes), ``"bad-magic"``,
        ``"bad-version"``, ``"unknown-msg-type"`` (a v2 type memrepl does not speak, too),
        ``"unknown-priority"``, ``"not-bytes"``.
        """
        data = as_bytes(data)
        if len(data) < HEADER_SIZE:
            raise ProtocolError(
                f"header: {len(data)} bytes, a header needs {HEADER_SIZE}", code="truncated"
            )
        magic, version, priority, msg_type, flags_batch, payload_len, timestamp_ns = (
            _HEADER.unpack_from(data)
        )
        if magic != MAGIC:
            raise ProtocolError(f"header: bad magic 0x{magic:016x}", code="bad-magic")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"header: protocol version {version}, memrepl speaks {PROTOCOL_VERSION}",
                code="bad-version",
            )
        msg_type_enum = _MSG_TYPES.get(msg_type)
        if msg_type_enum is None:
            raise ProtocolError(
                f"header: unknown message type 0x{msg_type:04x}", code="unknown-msg-type"
            )
        priority_enum = _PRIORITIES.get(priority)
        if priority_enum is None:
            raise ProtocolError(f"header: unknown priority {priority}", code="unknown-priority")
        # All 8 flag bits are defined (PROTOCOL.md §1), so any flags byte is valid; every
        # value read from a fixed-width field fits, so skip __post_init__'s checks.
        header = object.__new__(cls)
        object.__setattr__(header, "msg_type", msg_type_enum)
        object.__setattr__(header, "payload_len", payload_len)
        object.__setattr__(header, "timestamp_ns", timestamp_ns)
        object.__setattr__(header, "priority", priority_enum)
        object.__setattr__(header, "flags", _FLAGS[flags_batch & 0xFF])
        object.__setattr__(header, "batch_count", flags_batch >> 8)
        object.__setattr__(header, "version", version)
        return header


def pack_header(
    msg_type: MessageTypes,
    payload_len: int,
    timestamp_ns: int,
    *,
    priority: Priority,
    flags: HeaderFlags,
    batch_count: int,
) -> bytes:
    """Return a header's 32 bytes from fields of the right types, without building the object.

    For callers whose values are valid by construction (``MemorySyncBatch.pack``, once per
    batch). Still never masks: flags and batch_count must each fit their byte, and ``struct``
    refuses any other integer out of range.
    """
    if not (0 <= flags <= 0xFF and 0 <= batch_count <= MAX_BATCH_ITEMS):
        raise ProtocolError(
            f"header: flags {flags!r} or batch_count {batch_count!r} do not fit one byte",
            code="bad-header",
        )
    return _HEADER.pack(
        MAGIC,
        PROTOCOL_VERSION,
        priority,
        msg_type,
        (batch_count << 8) | flags,
        payload_len,
        timestamp_ns,
    )


def encode_frame(
    msg_type: MessageTypes,
    payload: bytes,
    *,
    priority: Priority = Priority.NORMAL,
    flags: HeaderFlags = HeaderFlags.NONE,
    batch_count: int = 0,
    timestamp_ns: int | None = None,
) -> bytes:
    """Return a v2 frame: a header announcing ``len(payload)`` bytes, then the payload.

    ``timestamp_ns`` defaults to the current wall time. Raises :class:`ProtocolError` for a
    header field that does not fit (see :class:`MessageHeader`) or a payload that is not bytes.
    """
    payload = as_bytes(payload)
    header = MessageHeader(
        msg_type=msg_type,
        payload_len=len(payload),
        timestamp_ns=time.time_ns() if timestamp_ns is None else timestamp_ns,
        priority=priority,
        flags=flags,
        batch_count=batch_count,
    )
    return header.pack() + payload


def decode_frame(data: bytes, *, max_payload: int | None = None) -> tuple[MessageHeader, bytes]:
    """Split one whole frame into its header and payload.

    ``data`` must be exactly ``32 + payload_len`` bytes. Raises :class:`ProtocolError`: any
    header fault, ``"frame-too-large"`` (payload_len over ``max_payload``, checked first so a
    reader can refuse before buffering), ``"truncated"``, ``"trailing-bytes"``.
    """
    data = as_bytes(data)
    header = MessageHeader.unpack(data)
    if max_payload is not None and header.payload_len > max_payload:
        raise ProtocolError(
            f"frame: payload of {header.payload_len} bytes exceeds the limit of {max_payload}",
            code="frame-too-large",
        )
    end = HEADER_SIZE + header.payload_len
    if len(data) < end:
        raise ProtocolError(
            f"frame: header announces {header.payload_len} payload bytes, "
            f"{len(data) - HEADER_SIZE} present",
            code="truncated",
        )
    if len(data) > end:
        raise ProtocolError(
            f"frame: {len(data) - end} bytes after the announced payload", code="trailing-bytes"
        )
    return header, data[HEADER_SIZE:]
