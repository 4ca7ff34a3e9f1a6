"""A sync batch: header, JSON metadata, items data (PROTOCOL.md §3).

This module owns :class:`MemorySyncBatch` and the byte layout
``[32-byte header][u32 BE metadata length][metadata JSON][items data]``, including memrepl's one
extra metadata key (:data:`~memrepl.protocol.limits.EXTENSION_KEY`) that carries each item's
:class:`~memrepl.protocol.item.ItemVersionInfo` and the sender's cursor.

The rules that keep it right:

- v2 compatibility: the seven v2 metadata keys come first, in v2's order, with v2's meaning;
  everything memrepl adds is under the one extension key, which v2 readers ignore, and a reader
  ignores keys it does not know. With ``legacy_header=True`` the bytes are exactly the original's.
- Strictness: :meth:`MemorySyncBatch.unpack` checks every length and count against every other
  (header payload_len and batch_count, metadata length and item_count, the items themselves)
  and refuses the whole message with a :class:`~memrepl.errors.ProtocolError` on any mismatch;
  it never returns a partial batch (PROTOCOL.md §6).
- Round trip: ``unpack(b.pack(compress_threshold=t))`` equals ``b`` with its ``COMPRESSED`` flag
  set exactly when the items data was compressed; packing that again gives the same bytes.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from memrepl.errors import BatchError, BatchTooLargeError, ProtocolError, UnknownTierError
from memrepl.protocol import fast
from memrepl.protocol.compression import compress_items, decompress_items
from memrepl.protocol.enums import (
    HEADER_PRIORITY_FOR,
    HeaderFlags,
    MemoryTier,
    MessageTypes,
    Priority,
    SyncFlags,
    SyncPriority,
)
from memrepl.protocol.header import MessageHeader, as_bytes, pack_header
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem, pack_items, unpack_items
from memrepl.protocol.limits import (
    DEFAULT_COMPRESS_THRESHOLD_BYTES,
    EXTENSION_KEY,
    EXTENSION_VERSION,
    HEADER_SIZE,
    ITEM_HEADER_SIZE,
    MAX_BATCH_ITEMS,
    MAX_ITEM_PAYLOAD_BYTES,
    MAX_METADATA_BYTES,
    U64_MAX,
)

__all__ = ["MemorySyncBatch", "SnapshotMark"]

_META_LEN = struct.Struct(">I")
_META_START = HEADER_SIZE + _META_LEN.size
_TIERS: dict[int, MemoryTier] = {t.value: t for t in MemoryTier}
# The v2 keys whose values are strings, in v2's order (PROTOCOL.md §3).
_STRING_KEYS = ("batch_id", "source_node", "target_node")
_COMPRESSED = int(SyncFlags.COMPRESSED)
# The speed tricks of memrepl.protocol.fast: flags bytes looked up, frozen values set directly.
_SYNC_FLAGS = fast.SYNC_FLAGS_BY_BYTE
_BATCHED = fast.HEADER_BATCHED
_BATCHED_COMPRESSED = fast.HEADER_BATCHED_COMPRESSED

_new = fast.new
_set = fast.set_field


def _is_u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def _bad_metadata(message: str) -> ProtocolError:
    return ProtocolError(f"batch metadata: {message}", code="bad-metadata")


@dataclass(frozen=True, slots=True)
class SnapshotMark:
    """Marks a batch as part of a snapshot (REPLICATE): the sender's whole tier, in batches.

    Every batch of one snapshot carries the same ``snapshot_id``; the last one has ``final``
    set, which tells the receiver that everything the sender holds has arrived (memrepl's
    extension, carried under the metadata's extension key as ``"snapshot"``).
    """

    snapshot_id: str
    final: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.snapshot_id, str) or not isinstance(self.final, bool):
            raise BatchError(f"snapshot mark {self.snapshot_id!r}/{self.final!r} is malformed")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.snapshot_id, "final": self.final}

    @classmethod
    def from_json(cls, obj: object) -> SnapshotMark:
        if (
            type(obj) is not dict
            or type(obj.get("id")) is not str
            or type(obj.get("final")) is not bool
        ):
            raise _bad_metadata('snapshot mark is not {"id": string, "final": bool}')
        return cls(obj["id"], obj["final"])


@dataclass(frozen=True, slots=True)
class MemorySyncBatch:
    """A batch of items for one tier, from one node to another, as the seed writes it.

    ``created_ns`` defaults to the wall clock at construction. ``sync_vector`` is copied into a
    plain dict (treat it as read-only). ``cursor`` is the sender's highest local change stamp that
    the batch covers (memrepl's extension; ``None`` for a v2 batch). ``snapshot`` marks the
    batches of a snapshot (:class:`SnapshotMark`; ``None`` for a delta). ``purge_horizon`` is the
    highest ``modified_at`` of a tombstone the sender collected in the tier (its
    ``tombstone_horizons`` entry, a stamp of the sender's clock): a probe carries it so that a
    receiver below it asks for a snapshot, and a snapshot's final batch so that the receiver
    knows what the sender may have forgotten (``None``: not said). ``pending`` is how many more
    items the sender expects to send in this round after this batch (an estimate made when the
    round began; ``None`` when not announced): what lets a receiver show how far behind it is
    while it catches up. It changes nothing about how a batch applies.

    Construction raises :class:`BatchTooLargeError` (over 255 items), :class:`UnknownTierError`,
    or :class:`BatchError` (a field of the wrong type, flags outside one byte, a stamp outside
    u64).
    """

    batch_id: str
    source_node: str
    target_node: str
    tier: MemoryTier
    items: Sequence[MemorySyncItem]
    flags: SyncFlags = SyncFlags.NONE
    sync_vector: Mapping[str, int] = field(default_factory=dict, hash=False)
    created_ns: int | None = None
    cursor: int | None = None
    snapshot: SnapshotMark | None = None
    purge_horizon: int | None = None
    pending: int | None = None

    def __post_init__(self) -> None:
        for name in _STRING_KEYS:
            if not isinstance(getattr(self, name), str):
                raise BatchError(f"batch: {name} {getattr(self, name)!r} is not a string")
        tier = _TIERS.get(self.tier) if isinstance(self.tier, int) else None
        if tier is None or isinstance(self.tier, bool):
            raise UnknownTierError(f"batch: unknown tier {self.tier!r}", tier=self.tier)
        if not isinstance(self.items, Iterable) or isinstance(self.items, str | bytes):
            raise BatchError("batch: items is not a sequence of MemorySyncItem")
        items = tuple(self.items)
        # The header's count is one byte; the original wrapped it silently (PROTOCOL.md §6).
        if len(items) > MAX_BATCH_ITEMS:
            raise BatchTooLargeError(
                f"batch {self.batch_id!r}: {len(items)} items, at most {MAX_BATCH_ITEMS} fit",
                limit=MAX_BATCH_ITEMS,
            )
        for item in items:
            if not isinstance(item, MemorySyncItem):
                raise BatchError(f"batch {self.batch_id!r}: {item!r} is not a MemorySyncItem")
        flags = self.flags
        if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags <= 0xFF:
            raise BatchError(f"batch {self.batch_id!r}: flags {flags!r} are not in 0..0xFF")
        if not isinstance(self.sync_vector, Mapping):
            raise BatchError(f"batch {self.batch_id!r}: sync_vector is not a mapping")
        vector: dict[str, int] = {}
        for node, stamp in self.sync_vector.items():
            if not isinstance(node, str) or not _is_u64(stamp):
                raise BatchError(f"batch {self.batch_id!r}: sync_vector entry {node!r}: {stamp!r}")
            vector[node] = int(stamp)
        created_ns = time.time_ns() if self.created_ns is None else self.created_ns
        if not _is_u64(created_ns):
            raise BatchError(f"batch {self.batch_id!r}: created_ns {created_ns!r} is not a u64")
        if self.cursor is not None and not _is_u64(self.cursor):
            raise BatchError(f"batch {self.batch_id!r}: cursor {self.cursor!r} is not a u64")
        if self.snapshot is not None and not isinstance(self.snapshot, SnapshotMark):
            raise BatchError(f"batch {self.batch_id!r}: snapshot is not a SnapshotMark")
        if self.purge_horizon is not None and not _is_u64(self.purge_horizon):
            raise BatchError(
                f"batch {self.batch_id!r}: purge_horizon {self.purge_horizon!r} is not a u64"
            )
        if self.pending is not None and not _is_u64(self.pending):
            raise BatchError(f"batch {self.batch_id!r}: pending {self.pending!r} is not a u64")
        _set(self, "tier", tier)
        _set(self, "items", items)
        _set(self, "flags", _SYNC_FLAGS[flags])
        _set(self, "sync_vector", vector)
        _set(self, "created_ns", int(created_ns))
        if self.cursor is not None:
            _set(self, "cursor", int(self.cursor))
        if self.purge_horizon is not None:
            _set(self, "purge_horizon", int(self.purge_horizon))

    @property
    def priority(self) -> SyncPriority:
        """The most urgent item's priority (NORMAL for an empty batch)."""
        # The set holds at most five values: cheaper than comparing every item.
        return max({item.priority for item in self.items}, default=SyncPriority.NORMAL)

    def pack(
        self,
        *,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD_BYTES,
        legacy_header: bool = False,
    ) -> bytes:
        """Return the batch as one MEMORY_SYNC message.

        Items data longer than ``compress_threshold`` bytes is gzipped and the metadata's flags
        get COMPRESSED; otherwise that bit is cleared, whatever the batch's own flags say. The
        header carries the batch's priority (through ``HEADER_PRIORITY_FOR``) and BATCHED
        (|COMPRESSED); ``legacy_header=True`` writes NORMAL and 0 instead, exactly as the
        original did. Raises :class:`BatchError` if the metadata would exceed 8 MiB.
        """
        items = self.items
        items_data = pack_items(items)
        # Plain int arithmetic: IntFlag's ``~`` only covers the defined bits and would drop
        # unknown ones (0x40, 0x80), which must survive a round trip.
        flags = int(self.flags) & ~_COMPRESSED
        compressed = len(items_data) > compress_threshold
        if compressed:
            items_data = compress_items(items_data)
            flags |= _COMPRESSED
        # Key order and json's default separators are v2's: TV5/TV6 depend on both.
        metadata: dict[str, Any] = {
            "batch_id": self.batch_id,
            "source_node": self.source_node,
            "target_node": self.target_node,
            "tier": int(self.tier),
            "item_count": len(items),
            "flags": flags,
            "sync_vector": self.sync_vector,
        }
        versions = [item.version for item in items]
        if (
            self.cursor is not None
            or self.snapshot is not None
            or self.purge_horizon is not None
            or self.pending is not None
            or versions.count(None) != len(versions)
        ):
            extension: dict[str, Any] = {
                "v": EXTENSION_VERSION,
                "cursor": self.cursor,
                "items": [None if version is None else version.to_json() for version in versions],
            }
            if self.snapshot is not None:
                extension["snapshot"] = self.snapshot.to_json()
            if self.purge_horizon is not None:
                extension["purged_through"] = self.purge_horizon
            if self.pending is not None:
                extension["pending"] = self.pending
            metadata[EXTENSION_KEY] = extension
        metadata_bytes = json.dumps(metadata).encode("utf-8")
        if len(metadata_bytes) > MAX_METADATA_BYTES:
            raise BatchError(
                f"batch {self.batch_id!r}: metadata of {len(metadata_bytes)} bytes exceeds "
                f"{MAX_METADATA_BYTES}"
            )
        if legacy_header:
            priority, header_flags = Priority.NORMAL, HeaderFlags.NONE
        else:
            priority = HEADER_PRIORITY_FOR[self.priority]
            header_flags = _BATCHED_COMPRESSED if compressed else _BATCHED
        header = pack_header(
            MessageTypes.MEMORY_SYNC,
            _META_LEN.size + len(metadata_bytes) + len(items_data),
            cast(int, self.created_ns),  # never None after __post_init__
            priority=priority,
            flags=header_flags,
            batch_count=len(items),
        )
        return b"".join((header, _META_LEN.pack(len(metadata_bytes)), metadata_bytes, items_data))

    @classmethod
    def unpack(cls, data: bytes) -> MemorySyncBatch:
        """Parse one whole MEMORY_SYNC message, checking every length and count.

        The header's priority and flags are not used (v2 writers leave them NORMAL and 0); the
        metadata's flags decide. Raises :class:`ProtocolError` (and nothing else, whatever the
        bytes): any header or item fault, ``"wrong-msg-type"``, ``"bad-payload-len"``,
        ``"truncated"``, ``"bad-metadata-len"``, ``"bad-metadata"``, ``"unknown-tier"``,
        ``"count-mismatch"``, ``"trailing-bytes"``, or a :class:`CompressionError`.
        """
        data = as_bytes(data)
        header = MessageHeader.unpack(data)
        if header.msg_type is not MessageTypes.MEMORY_SYNC:
            raise ProtocolError(
                f"batch: message type {header.msg_type.name}, expected MEMORY_SYNC",
                code="wrong-msg-type",
            )
        if header.payload_len != len(data) - HEADER_SIZE:
            raise ProtocolError(
                f"batch: header announces {header.payload_len} payload bytes, "
                f"{len(data) - HEADER_SIZE} present",
                code="bad-payload-len",
            )
        if len(data) < _META_START:
            raise ProtocolError("batch: no room for the metadata length", code="truncated")
        (metadata_len,) = _META_LEN.unpack_from(data, HEADER_SIZE)
        metadata_end = _META_START + metadata_len
        if metadata_len > MAX_METADATA_BYTES or metadata_end > len(data):
            raise ProtocolError(
                f"batch: metadata length {metadata_len} does not fit the "
                f"{len(data) - _META_START} bytes left (limit {MAX_METADATA_BYTES})",
                code="bad-metadata-len",
            )
        metadata = _load_metadata(data[_META_START:metadata_end])
        batch_id, source_node, target_node, tier, item_count, flags, sync_vector = (
            _check_v2_metadata(metadata)
        )
        if item_count != header.batch_count:
            raise ProtocolError(
                f"batch {batch_id!r}: metadata item_count {item_count}, header batch_count "
                f"{header.batch_count}",
                code="count-mismatch",
            )
        versions: list[ItemVersionInfo | None] | None = None
        cursor: int | None = None
        snapshot: SnapshotMark | None = None
        horizon: int | None = None
        pending: int | None = None
        if EXTENSION_KEY in metadata:
            versions, cursor, snapshot, horizon, pending = _check_extension(
                metadata[EXTENSION_KEY], item_count
            )
        if flags & _COMPRESSED:
            # The tightest bound the announced count allows (PROTOCOL.md §6).
            items_data = decompress_items(
                data[metadata_end:], limit=item_count * (ITEM_HEADER_SIZE + MAX_ITEM_PAYLOAD_BYTES)
            )
            items = unpack_items(items_data, item_count, versions)
        else:  # parse in place: no copy of the items data
            items = unpack_items(data, item_count, versions, start=metadata_end)
        # Every field was checked above: skip __post_init__ (and its clock read).
        batch = _new(cls)
        _set(batch, "batch_id", batch_id)
        _set(batch, "source_node", source_node)
        _set(batch, "target_node", target_node)
        _set(batch, "tier", tier)
        _set(batch, "items", items)
        _set(batch, "flags", _SYNC_FLAGS[flags])
        _set(batch, "sync_vector", sync_vector)
        _set(batch, "created_ns", header.timestamp_ns)
        _set(batch, "cursor", cursor)
        _set(batch, "snapshot", snapshot)
        _set(batch, "purge_horizon", horizon)
        _set(batch, "pending", pending)
        return batch


def _load_metadata(raw: bytes) -> dict[str, Any]:
    """Decode the metadata as a UTF-8 JSON object."""
    try:
        metadata = json.loads(raw.decode("utf-8"))
    # ValueError covers JSONDecodeError, UnicodeDecodeError and over-long integer literals;
    # RecursionError is deeply nested arrays or objects.
    except (ValueError, RecursionError) as exc:
        raise _bad_metadata(f"not UTF-8 JSON ({type(exc).__name__})") from exc
    if type(metadata) is not dict:
        raise _bad_metadata("not a JSON object")
    return metadata


def _check_v2_metadata(
    metadata: dict[str, Any],
) -> tuple[str, str, str, MemoryTier, int, int, dict[str, int]]:
    """Check the seven v2 keys; return their values (PROTOCOL.md §3)."""
    try:
        strings = [metadata[key] for key in _STRING_KEYS]
        tier = metadata["tier"]
        item_count = metadata["item_count"]
        flags = metadata["flags"]
        sync_vector = metadata["sync_vector"]
    except KeyError as exc:
        raise _bad_metadata(f"missing key {exc.args[0]!r}") from exc
    for key, value in zip(_STRING_KEYS, strings, strict=True):
        if type(value) is not str:
            raise _bad_metadata(f"{key} is not a string")
    # JSON gives exact types, so ``type(x) is int`` also rules out true/false.
    if type(tier) is not int:
        raise _bad_metadata("tier is not an integer")
    tier_enum = _TIERS.get(tier)
    if tier_enum is None:
        raise ProtocolError(f"batch metadata: unknown tier {tier}", code="unknown-tier")
    if type(item_count) is not int or item_count < 0:
        raise _bad_metadata("item_count is not a non-negative integer")
    if type(flags) is not int or not 0 <= flags <= 0xFF:
        raise _bad_metadata("flags is not an integer in 0..255")
    if type(sync_vector) is not dict:
        raise _bad_metadata("sync_vector is not an object")
    for node, stamp in sync_vector.items():
        if type(stamp) is not int or not 0 <= stamp <= U64_MAX:
            raise _bad_metadata(f"sync_vector[{node!r}] is not a u64")
    return strings[0], strings[1], strings[2], tier_enum, item_count, flags, sync_vector


def _check_extension(
    extension: object, item_count: int
) -> tuple[list[ItemVersionInfo | None], int | None, SnapshotMark | None, int | None, int | None]:
    """Check memrepl's extension; return the per-item versions, the cursor, the snapshot mark,
    the purge horizon and the items pending."""
    if type(extension) is not dict:
        raise _bad_metadata(f"{EXTENSION_KEY!r} is not an object")
    version = extension.get("v")
    # A version this reader does not know may change the meaning of what it can parse: refuse
    # rather than merge with half the data.
    if type(version) is not int or version != EXTENSION_VERSION:
        raise _bad_metadata(f"{EXTENSION_KEY!r} version {version!r} is not {EXTENSION_VERSION}")
    if "cursor" not in extension or "items" not in extension:
        raise _bad_metadata(f"{EXTENSION_KEY!r} lacks 'cursor' or 'items'")
    cursor = extension["cursor"]
    if cursor is not None and (type(cursor) is not int or not 0 <= cursor <= U64_MAX):
        raise _bad_metadata(f"{EXTENSION_KEY!r} cursor is not null or a u64")
    raw_items = extension["items"]
    if type(raw_items) is not list or len(raw_items) != item_count:
        raise _bad_metadata(f"{EXTENSION_KEY!r} items is not a list of {item_count} entries")
    from_json = ItemVersionInfo.from_json
    versions = [None if entry is None else from_json(entry) for entry in raw_items]
    raw_snapshot = extension.get("snapshot")
    snapshot = None if raw_snapshot is None else SnapshotMark.from_json(raw_snapshot)
    return (
        versions,
        cursor,
        snapshot,
        _optional_u64(extension, "purged_through"),
        _optional_u64(extension, "pending"),
    )


def _optional_u64(extension: dict[str, Any], key: str) -> int | None:
    """``extension[key]``: absent or null (None), or a u64; else a ProtocolError."""
    value = extension.get(key)
    if value is not None and (type(value) is not int or not 0 <= value <= U64_MAX):
        raise _bad_metadata(f"{EXTENSION_KEY!r} {key} is not null or a u64")
    return value
