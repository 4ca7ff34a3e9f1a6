"""The sans-I/O MEMSHADOW v2 codec: bytes in, values out, and back (PROTOCOL.md).

This package owns the wire format and nothing else: no sockets, no SQL, no event loop; the only
side effect is reading the wall clock for a batch's default creation time. Values are frozen,
slotted dataclasses; wire codes are the ``IntEnum``/``IntFlag`` classes of :mod:`.enums`.

The invariant every decoder keeps (like h11's): whatever the bytes, ``unpack``/``decode``
functions either return a valid value or raise :class:`~memrepl.errors.ProtocolError` (or its
subclass :class:`~memrepl.errors.CompressionError`) with a ``code`` naming the fault. Builders
refuse values the wire cannot carry intact instead of truncating them.
"""

from __future__ import annotations

from memrepl.errors import CompressionError, ProtocolError
from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.protocol.compression import compress_items, decompress_items
from memrepl.protocol.enums import (
    HEADER_PRIORITY_FOR,
    HeaderFlags,
    MemoryTier,
    MessageTypes,
    Priority,
    SyncFlags,
    SyncOperation,
    SyncPriority,
)
from memrepl.protocol.header import MessageHeader, decode_frame, encode_frame
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem
from memrepl.protocol.limits import (
    DEFAULT_COMPRESS_THRESHOLD_BYTES,
    EXTENSION_KEY,
    HEADER_SIZE,
    ITEM_HEADER_SIZE,
    MAGIC,
    MAX_BATCH_ITEMS,
    MAX_ITEM_ID_BYTES,
    MAX_ITEM_PAYLOAD_BYTES,
    MAX_ITEMS_DATA_BYTES,
    MAX_METADATA_BYTES,
    PROTOCOL_VERSION,
)

__all__ = [
    "DEFAULT_COMPRESS_THRESHOLD_BYTES",
    "EXTENSION_KEY",
    "HEADER_PRIORITY_FOR",
    "HEADER_SIZE",
    "ITEM_HEADER_SIZE",
    "MAGIC",
    "MAX_BATCH_ITEMS",
    "MAX_ITEMS_DATA_BYTES",
    "MAX_ITEM_ID_BYTES",
    "MAX_ITEM_PAYLOAD_BYTES",
    "MAX_METADATA_BYTES",
    "PROTOCOL_VERSION",
    "CompressionError",
    "HeaderFlags",
    "ItemVersionInfo",
    "MemorySyncBatch",
    "MemorySyncItem",
    "MemoryTier",
    "MessageHeader",
    "MessageTypes",
    "Priority",
    "ProtocolError",
    "SnapshotMark",
    "SyncFlags",
    "SyncOperation",
    "SyncPriority",
    "compress_items",
    "decode_frame",
    "decompress_items",
    "encode_frame",
]
