"""The wire codes of MEMSHADOW v2, with the seed's names (PROTOCOL.md sections 1 and 2).

Every enum here is a wire value: changing a number breaks compatibility with v2 nodes.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class MemoryTier(IntEnum):
    """Which memory tier an item or batch belongs to (item byte 40, metadata ``tier``)."""

    #: L1: small, hot, evictable.
    WORKING = 1
    #: L2: events of episodes.
    EPISODIC = 2
    #: L3: the knowledge graph.
    SEMANTIC = 3


class SyncOperation(IntEnum):
    """What an item on the wire does (item byte 41)."""

    #: A new item (a whole write).
    INSERT = 1
    #: Replace an item's whole content (a whole write).
    UPDATE = 2
    #: Remove an item; it travels as a tombstone with an empty payload.
    DELETE = 3
    #: Merge fields into an item: each field keeps its latest write.
    MERGE = 4
    #: Full replication request.
    REPLICATE = 5


class SyncPriority(IntEnum):
    """How urgently an item replicates (item bytes 42-43). Not the header's numbers."""

    BACKGROUND = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4


class SyncFlags(IntFlag):
    """Batch flags, carried in the batch metadata's ``flags`` (not the header)."""

    NONE = 0
    #: The items data is gzip-compressed.
    COMPRESSED = 0x01
    ENCRYPTED = 0x02
    #: Only changes since a cursor (as opposed to a full snapshot).
    DELTA_ONLY = 0x04
    REQUIRES_ACK = 0x08
    CONFLICT_RESOLUTION = 0x10
    CROSS_TIER = 0x20


class Priority(IntEnum):
    """The v2 header's priority (header bytes 10-11)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3
    EMERGENCY = 4


class HeaderFlags(IntFlag):
    """The v2 header's flag bits; only the low 8 bits fit (header byte 15)."""

    NONE = 0
    ENCRYPTED = 0x01
    COMPRESSED = 0x02
    BATCHED = 0x04
    REQUIRES_ACK = 0x08
    FRAGMENTED = 0x10
    LAST_FRAGMENT = 0x20
    FROM_KERNEL = 0x40
    HIGH_CONFIDENCE = 0x80


class MessageTypes(IntEnum):
    """The v2 message types memrepl speaks (header bytes 12-13).

    The full v2 table has more groups (0x01xx psych, 0x02xx threat, 0x04xx federation, 0x05xx
    improvement); a header carrying one of those is refused with a clear ``ProtocolError``.
    """

    HEARTBEAT = 0x0001
    ACK = 0x0002
    NACK = 0x0003
    HANDSHAKE = 0x0004
    DISCONNECT = 0x0005
    MEMORY_STORE = 0x0301
    MEMORY_QUERY = 0x0302
    MEMORY_RESPONSE = 0x0303
    MEMORY_SYNC = 0x0304
    VECTOR_SYNC = 0x0305


#: The header priority a batch gets from its most urgent item (the original always wrote NORMAL).
HEADER_PRIORITY_FOR: dict[SyncPriority, Priority] = {
    SyncPriority.BACKGROUND: Priority.LOW,
    SyncPriority.LOW: Priority.LOW,
    SyncPriority.NORMAL: Priority.NORMAL,
    SyncPriority.HIGH: Priority.HIGH,
    SyncPriority.URGENT: Priority.CRITICAL,
}
