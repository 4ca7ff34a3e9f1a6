"""Shared by the protocol tests: the PROTOCOL.md test vectors, raw wire builders, strategies.

The raw builders assemble bytes with ``struct`` directly, not with the codec, so a test can write
exactly the fault it is about (a wrong count, a bad length) and nothing else.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from hypothesis import strategies as st

from memrepl.protocol import (
    MAX_ITEM_ID_BYTES,
    ItemVersionInfo,
    MemorySyncBatch,
    MemorySyncItem,
    MemoryTier,
    MessageTypes,
    SyncFlags,
    SyncOperation,
    SyncPriority,
)

U64_MAX = 2**64 - 1
T0 = 1_700_000_000_000_000_000

# --- PROTOCOL.md §4, as written there (spaces only separate fields) -----------------------------

TV1_HEX = "000000004d534857 0002 0002 0304 0a06 0000000000001000 17979cfe362a0000"
TV2_HEX = "000000004d534857 0002 0003 0305 2c80 0000000000000001 0000000000000001"
TV3_HEX = (
    "6162633132336465663435363738393031323334353637383930313233346162 17979cfe3d85cd15 01 01 0002"
    " 0010 0000 7b226b6579223a202276616c7565227d"
)
TV4_HEX = (
    "30313233343536373839616263646566 00000000000000000000000000000000 0000000000000001 03 03"
    " 0004 0000 0000"
)
TV5_HEADER_HEX = "000000004d534857 0002 0001 0304 0100 00000000000000ca 17979cfe362a0000"
TV5_METADATA_LEN_HEX = "00000086"
TV5_METADATA = (
    '{"batch_id": "batch-001", "source_node": "node-a", "target_node": "node-b", "tier": 2, '
    '"item_count": 1, "flags": 0, "sync_vector": {}}'
)
TV6_HEADER_HEX = "000000004d534857 0002 0001 0304 0100 00000000000000e5 17979cfe362a0000"
TV6_METADATA_LEN_HEX = "000000b1"
TV6_METADATA = (
    '{"batch_id": "a1b2c3d4e5f60718", "source_node": "node-001", "target_node": "node-002", '
    '"tier": 1, "item_count": 1, "flags": 12, "sync_vector": {"node-002": 1700000000000000000}}'
)


def hx(text: str) -> bytes:
    """Bytes of a PROTOCOL.md hex string."""
    return bytes.fromhex(text.replace(" ", ""))


TV3 = hx(TV3_HEX)
TV4 = hx(TV4_HEX)
TV5 = hx(TV5_HEADER_HEX) + hx(TV5_METADATA_LEN_HEX) + TV5_METADATA.encode() + TV3
TV6 = hx(TV6_HEADER_HEX) + hx(TV6_METADATA_LEN_HEX) + TV6_METADATA.encode() + TV4


def tv3_item() -> MemorySyncItem:
    return MemorySyncItem(
        item_id="abc123def456789012345678901234ab",
        timestamp_ns=1700000000123456789,
        tier=MemoryTier.WORKING,
        operation=SyncOperation.INSERT,
        priority=SyncPriority.NORMAL,
        payload=b'{"key": "value"}',
    )


def tv4_item() -> MemorySyncItem:
    return MemorySyncItem(
        item_id="0123456789abcdef",
        timestamp_ns=1,
        tier=MemoryTier.SEMANTIC,
        operation=SyncOperation.DELETE,
        priority=SyncPriority.URGENT,
    )


def tv5_batch() -> MemorySyncBatch:
    return MemorySyncBatch(
        batch_id="batch-001",
        source_node="node-a",
        target_node="node-b",
        tier=MemoryTier.EPISODIC,
        items=[tv3_item()],
        created_ns=T0,
    )


def tv6_batch() -> MemorySyncBatch:
    return MemorySyncBatch(
        batch_id="a1b2c3d4e5f60718",
        source_node="node-001",
        target_node="node-002",
        tier=MemoryTier.WORKING,
        items=[tv4_item()],
        flags=SyncFlags.DELTA_ONLY | SyncFlags.REQUIRES_ACK,
        sync_vector={"node-002": T0},
        created_ns=T0,
    )


def sample_version(origin: str = "node-a", stamp: int = T0) -> ItemVersionInfo:
    return ItemVersionInfo(
        origin_node=origin,
        causal_context={origin: stamp, "node-z": stamp - 5},
        whole_timestamp_ns=stamp - 10,
        whole_origin="node-z",
        whole_deleted=False,
        field_clocks={"title": (stamp, origin)},
    )


# --- raw wire builders ---------------------------------------------------------------------------

_HEADER = struct.Struct(">QHHHHQQ")
_ITEM = struct.Struct("!32sQBBHH")


def raw_header(
    *,
    payload_len: int,
    msg_type: int = MessageTypes.MEMORY_SYNC,
    batch_count: int = 0,
    flags: int = 0,
    priority: int = 1,
    version: int = 2,
    magic: int = 0x4D534857,
    timestamp_ns: int = T0,
) -> bytes:
    return _HEADER.pack(
        magic, version, priority, msg_type, (batch_count << 8) | flags, payload_len, timestamp_ns
    )


def raw_item(
    item_id: bytes = b"item-1",
    payload: bytes = b"{}",
    *,
    timestamp_ns: int = T0,
    tier: int = 1,
    operation: int = 1,
    priority: int = 2,
    payload_len: int | None = None,
    padding: bytes = b"\0\0",
) -> bytes:
    size = len(payload) if payload_len is None else payload_len
    return _ITEM.pack(item_id, timestamp_ns, tier, operation, priority, size) + padding + payload


def v2_metadata(item_count: int = 1, /, **changes: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "batch_id": "b-1",
        "source_node": "node-a",
        "target_node": "node-b",
        "tier": 1,
        "item_count": item_count,
        "flags": 0,
        "sync_vector": {},
    }
    metadata.update(changes)
    return metadata


def raw_batch(
    metadata: dict[str, Any] | bytes,
    items_data: bytes,
    *,
    batch_count: int | None = None,
    payload_len_delta: int = 0,
    metadata_len: int | None = None,
    **header: Any,
) -> bytes:
    """A MEMORY_SYNC message with the given metadata (a dict is json-dumped) and items data.

    ``batch_count`` defaults to the metadata's item_count; every length is right unless asked.
    """
    meta = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    if batch_count is None:
        batch_count = metadata.get("item_count", 0) if isinstance(metadata, dict) else 0
    body = struct.pack(">I", len(meta) if metadata_len is None else metadata_len) + meta
    body += items_data
    return (
        raw_header(payload_len=len(body) + payload_len_delta, batch_count=batch_count, **header)
        + body
    )


def gzip_bytes(data: bytes) -> bytes:
    return zlib.compress(data, wbits=31)


# --- hypothesis strategies -----------------------------------------------------------------------

u64 = st.integers(min_value=0, max_value=U64_MAX)


def _fit_id(text: str) -> str:
    # Cut to 32 bytes of UTF-8 without splitting a character.
    return text.encode()[:MAX_ITEM_ID_BYTES].decode("utf-8", errors="ignore")


item_ids = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),  # the seed's ids
    st.text(
        alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]),
        min_size=1,
        max_size=32,
    ).map(_fit_id),
)

# Mostly small payloads; sometimes any size up to the limit, as a cheap repeating pattern.
_PATTERN = bytes(range(256)) * 256
payloads = st.one_of(
    st.binary(max_size=256),
    st.integers(min_value=0, max_value=65535).map(lambda n: _PATTERN[:n]),
)
node_ids = st.text(max_size=12)

versions = st.builds(
    ItemVersionInfo,
    origin_node=node_ids,
    causal_context=st.dictionaries(node_ids, u64, max_size=3),
    whole_timestamp_ns=u64,
    whole_origin=node_ids,
    whole_deleted=st.booleans(),
    field_clocks=st.dictionaries(st.text(max_size=8), st.tuples(u64, node_ids), max_size=3),
)


maybe_versions = st.none() | versions


def items_with(
    payload_strategy: st.SearchStrategy[bytes],
    version_strategy: st.SearchStrategy[ItemVersionInfo | None] = maybe_versions,
) -> st.SearchStrategy[MemorySyncItem]:
    return st.builds(
        MemorySyncItem,
        item_id=item_ids,
        timestamp_ns=u64,
        tier=st.sampled_from(MemoryTier),
        operation=st.sampled_from(SyncOperation),
        priority=st.sampled_from(SyncPriority),
        payload=payload_strategy,
        version=version_strategy,
    )


items = items_with(payloads)


def _batches(extended: bool) -> st.SearchStrategy[MemorySyncBatch]:
    # Batches hold up to 255 items: keep each small so an example stays cheap.
    small = st.binary(max_size=64)
    return st.builds(
        MemorySyncBatch,
        batch_id=st.text(max_size=20),
        source_node=node_ids,
        target_node=node_ids,
        tier=st.sampled_from(MemoryTier),
        # Sizes spread over 1-255 (plain st.lists would stay near its minimum).
        items=st.integers(min_value=1, max_value=255).flatmap(
            lambda n: st.lists(
                items_with(small) if extended else items_with(small, st.none()),
                min_size=n,
                max_size=n,
            )
        ),
        flags=st.integers(min_value=0, max_value=255).map(SyncFlags),
        sync_vector=st.dictionaries(node_ids, u64, max_size=4),
        created_ns=u64,
        cursor=(st.none() | u64) if extended else st.none(),
        purge_horizon=(st.none() | u64) if extended else st.none(),
        pending=(st.none() | u64) if extended else st.none(),
    )


#: Plain v2 batches (no versions, no cursor) and batches with memrepl's extension.
batches = st.one_of(_batches(extended=False), _batches(extended=True))


def empty_batch(**fields: Any) -> MemorySyncBatch:
    """A batch of no items from ``a`` to ``c`` (working tier), with ``fields`` set."""
    return MemorySyncBatch(
        batch_id="b",
        source_node="a",
        target_node="c",
        tier=MemoryTier.WORKING,
        items=[],
        created_ns=1,
        **fields,
    )
