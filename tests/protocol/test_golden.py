"""PROTOCOL.md §4's test vectors, byte for byte, both ways; and the seed's API, verbatim."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

from memrepl.protocol import (
    EXTENSION_KEY,
    HEADER_SIZE,
    HeaderFlags,
    MemorySyncBatch,
    MemorySyncItem,
    MemoryTier,
    MessageHeader,
    MessageTypes,
    Priority,
    SyncFlags,
    SyncOperation,
    SyncPriority,
    decode_frame,
    encode_frame,
)

from .helpers import (
    T0,
    TV1_HEX,
    TV2_HEX,
    TV3,
    TV4,
    TV5,
    TV5_METADATA,
    TV6,
    hx,
    sample_version,
    tv3_item,
    tv4_item,
    tv5_batch,
    tv6_batch,
)


def test_tv1_header() -> None:
    header = MessageHeader(
        msg_type=MessageTypes.MEMORY_SYNC,
        payload_len=4096,
        timestamp_ns=T0,
        priority=Priority.HIGH,
        flags=HeaderFlags.BATCHED | HeaderFlags.COMPRESSED,
        batch_count=10,
    )
    assert header.pack() == hx(TV1_HEX)
    assert MessageHeader.unpack(hx(TV1_HEX)) == header
    assert header.flags == 0x06
    assert header.version == 2


def test_tv2_header() -> None:
    header = MessageHeader(
        msg_type=MessageTypes.VECTOR_SYNC,
        payload_len=1,
        timestamp_ns=1,
        priority=Priority.CRITICAL,
        flags=HeaderFlags.HIGH_CONFIDENCE,
        batch_count=44,
    )
    assert header.pack() == hx(TV2_HEX)
    parsed = MessageHeader.unpack(hx(TV2_HEX))
    assert parsed == header
    assert (parsed.batch_count, parsed.flags) == (44, 0x80)


def test_header_unpack_reads_only_the_first_32_bytes() -> None:
    assert MessageHeader.unpack(hx(TV1_HEX) + b"anything") == MessageHeader.unpack(hx(TV1_HEX))


def test_tv3_item() -> None:
    item = tv3_item()
    assert item.pack() == TV3
    assert len(TV3) == 64
    parsed, consumed = MemorySyncItem.unpack(TV3)
    assert consumed == 64
    assert parsed == item
    assert parsed.payload == b'{"key": "value"}'
    assert parsed.version is None


def test_tv4_item() -> None:
    item = tv4_item()
    assert item.pack() == TV4
    assert len(TV4) == 48
    parsed, consumed = MemorySyncItem.unpack(TV4)
    assert consumed == 48
    assert parsed.item_id == "0123456789abcdef"  # the NUL padding is stripped
    assert (parsed.tier, parsed.operation, parsed.priority) == (
        MemoryTier.SEMANTIC,
        SyncOperation.DELETE,
        SyncPriority.URGENT,
    )
    assert parsed == item


def test_item_unpack_at_an_offset() -> None:
    data = TV4 + TV3 + b"tail"
    first, used = MemorySyncItem.unpack(data)
    second, used2 = MemorySyncItem.unpack(data, used)
    assert (first, second) == (tv4_item(), tv3_item())
    assert (used, used2) == (48, 64)


def test_tv5_batch_legacy_header() -> None:
    packed = tv5_batch().pack(legacy_header=True)
    assert packed == TV5
    assert len(packed) == 234


def test_tv5_batch_unpacks_to_its_fields() -> None:
    batch = MemorySyncBatch.unpack(TV5)
    assert batch.batch_id == "batch-001"
    assert (batch.source_node, batch.target_node) == ("node-a", "node-b")
    assert batch.tier is MemoryTier.EPISODIC
    assert batch.items == (tv3_item(),)
    assert batch.flags == SyncFlags.NONE
    assert batch.sync_vector == {}
    assert batch.created_ns == T0
    assert batch.cursor is None
    assert batch == tv5_batch()


def test_tv6_batch_legacy_header() -> None:
    packed = tv6_batch().pack(legacy_header=True)
    assert packed == TV6
    assert len(packed) == 261
    assert packed[HEADER_SIZE : HEADER_SIZE + 4] == bytes.fromhex("000000b1")


def test_tv6_batch_unpacks_to_its_fields() -> None:
    batch = MemorySyncBatch.unpack(TV6)
    assert batch.batch_id == "a1b2c3d4e5f60718"
    assert (batch.source_node, batch.target_node) == ("node-001", "node-002")
    assert batch.tier is MemoryTier.WORKING
    assert batch.items == (tv4_item(),)
    assert batch.flags == SyncFlags.DELTA_ONLY | SyncFlags.REQUIRES_ACK == 12
    assert batch.sync_vector == {"node-002": T0}
    assert batch.created_ns == T0
    assert batch == tv6_batch()


def _differing_offsets(a: bytes, b: bytes) -> list[int]:
    assert len(a) == len(b)
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


def test_memrepl_header_differs_from_legacy_only_in_priority_and_flags() -> None:
    # TV5: its one item is NORMAL, so only the flags byte (15) differs: BATCHED.
    packed = tv5_batch().pack()
    assert _differing_offsets(packed, TV5) == [15]
    header = MessageHeader.unpack(packed)
    assert (header.priority, header.flags) == (Priority.NORMAL, HeaderFlags.BATCHED)
    # TV6: its one item is URGENT, which the header carries as CRITICAL (bytes 10-11).
    packed = tv6_batch().pack()
    assert _differing_offsets(packed, TV6) == [11, 15]
    header = MessageHeader.unpack(packed)
    assert (header.priority, header.flags) == (Priority.CRITICAL, HeaderFlags.BATCHED)
    assert MemorySyncBatch.unpack(packed) == tv6_batch()


def _empty_items(count: int) -> list[MemorySyncItem]:
    return [
        MemorySyncItem(f"item-{n:03d}", T0 + n, MemoryTier.WORKING, SyncOperation.DELETE)
        for n in range(count)
    ]


def _metadata(packed: bytes) -> dict[str, object]:
    length = int.from_bytes(packed[HEADER_SIZE : HEADER_SIZE + 4], "big")
    result: dict[str, object] = json.loads(packed[HEADER_SIZE + 4 : HEADER_SIZE + 4 + length])
    return result


def _items_data(packed: bytes) -> bytes:
    length = int.from_bytes(packed[HEADER_SIZE : HEADER_SIZE + 4], "big")
    return packed[HEADER_SIZE + 4 + length :]


def test_tv7_compression_boundary() -> None:
    below = MemorySyncBatch("b", "a", "z", MemoryTier.WORKING, _empty_items(21), created_ns=T0)
    packed = below.pack(legacy_header=True)
    assert len(_items_data(packed)) == 1008
    assert _metadata(packed)["flags"] == 0
    assert MemorySyncBatch.unpack(packed) == below

    above = MemorySyncBatch("b", "a", "z", MemoryTier.WORKING, _empty_items(22), created_ns=T0)
    packed = above.pack(legacy_header=True)
    assert _items_data(packed)[:3] == b"\x1f\x8b\x08"
    assert _metadata(packed)["flags"] == 1
    parsed = MemorySyncBatch.unpack(packed)
    assert parsed.flags == SyncFlags.COMPRESSED
    assert parsed.items == above.items
    # The memrepl header says so too.
    assert MessageHeader.unpack(above.pack()).flags == HeaderFlags.BATCHED | HeaderFlags.COMPRESSED


def test_compression_is_deterministic() -> None:
    """PROTOCOL.md §3: gzip written with mtime 0, so the same batch packs to the same bytes."""
    batch = MemorySyncBatch("b", "a", "z", MemoryTier.WORKING, _empty_items(50), created_ns=T0)
    packed = batch.pack()
    gzipped = _items_data(packed)
    # The gzip header: magic 1f 8b, deflate (08), no flags, mtime 0 (not the time of packing),
    # no extra flags, OS 03 (zlib writes its platform there: Unix).
    assert gzipped[:10] == bytes.fromhex("1f8b0800000000000003")
    # The trailer's size field: the 50 * 48 bytes of items data, little-endian.
    assert gzipped[-4:] == (50 * 48).to_bytes(4, "little")
    # The bytes, all of them (zlib's deflate at level 6; a different zlib build could change the
    # deflate body, which would be a new golden value, not a new meaning).
    assert len(packed) == 423
    assert hashlib.sha256(packed).hexdigest() == (
        "48efb459e141223b296a548b2aeb15f247a136ffb97537836503bc43530fa1ca"
    )


def test_the_callers_compressed_flag_is_recomputed() -> None:
    batch = tv5_batch()
    flagged = dataclasses.replace(
        batch, flags=SyncFlags.COMPRESSED | SyncFlags.CROSS_TIER, created_ns=T0
    )
    assert _metadata(flagged.pack())["flags"] == SyncFlags.CROSS_TIER
    assert _metadata(flagged.pack(compress_threshold=0))["flags"] == (
        SyncFlags.CROSS_TIER | SyncFlags.COMPRESSED
    )


def test_extension_is_one_extra_key_after_the_v2_keys() -> None:
    plain = tv5_batch()
    item = tv3_item()
    versioned_item = MemorySyncItem(
        item.item_id,
        item.timestamp_ns,
        item.tier,
        item.operation,
        item.priority,
        item.payload,
        version=sample_version(),
    )
    extended = MemorySyncBatch(
        plain.batch_id,
        plain.source_node,
        plain.target_node,
        plain.tier,
        [versioned_item],
        created_ns=T0,
        cursor=42,
    )
    packed = extended.pack(legacy_header=True)
    metadata = _metadata(packed)
    assert list(metadata) == [*json.loads(TV5_METADATA), EXTENSION_KEY]
    assert metadata[EXTENSION_KEY] == {
        "v": 1,
        "cursor": 42,
        "items": [
            {
                "o": "node-a",
                "c": {"node-a": T0, "node-z": T0 - 5},
                "w": T0 - 10,
                "wo": "node-z",
                "wd": False,
                "f": {"title": [T0, "node-a"]},
            }
        ],
    }
    # What a v2 node reads: the same v2 keys and the very same item bytes.
    del metadata[EXTENSION_KEY]
    assert json.dumps(metadata) == TV5_METADATA
    assert _items_data(packed) == TV3
    parsed = MemorySyncBatch.unpack(packed)
    assert parsed == extended
    assert parsed.items[0].version == sample_version()
    assert parsed.cursor == 42


def test_cursor_alone_adds_the_extension() -> None:
    batch = tv6_batch()
    with_cursor = dataclasses.replace(batch, created_ns=T0, cursor=7)
    metadata = _metadata(with_cursor.pack())
    assert metadata[EXTENSION_KEY] == {"v": 1, "cursor": 7, "items": [None]}
    assert MemorySyncBatch.unpack(with_cursor.pack()) == with_cursor


def test_mesh_frame_carries_a_batch() -> None:
    # PROTOCOL.md §5: mesh.send(peer_id, MessageTypes.VECTOR_SYNC, batch.pack()).
    payload = tv6_batch().pack()
    frame = encode_frame(MessageTypes.VECTOR_SYNC, payload, timestamp_ns=5)
    header, body = decode_frame(frame)
    assert header == MessageHeader(MessageTypes.VECTOR_SYNC, len(payload), 5)
    assert frame[:HEADER_SIZE] == header.pack()
    assert body == payload
    assert MemorySyncBatch.unpack(body) == tv6_batch()


def test_encode_frame_defaults_to_now() -> None:
    before = time.time_ns()
    header, body = decode_frame(encode_frame(MessageTypes.HEARTBEAT, b""))
    assert before <= header.timestamp_ns <= time.time_ns()
    assert (header.priority, header.flags, header.batch_count, body) == (
        Priority.NORMAL,
        HeaderFlags.NONE,
        0,
        b"",
    )


def test_batch_priority_is_the_most_urgent_items() -> None:
    assert tv5_batch().priority is SyncPriority.NORMAL
    mixed = MemorySyncBatch(
        "b", "a", "z", MemoryTier.WORKING, [tv3_item(), tv4_item()], created_ns=T0
    )
    assert mixed.priority is SyncPriority.URGENT
    empty = MemorySyncBatch("b", "a", "z", MemoryTier.WORKING, [], created_ns=T0)
    assert empty.priority is SyncPriority.NORMAL
    assert MemorySyncBatch.unpack(empty.pack()) == empty


def test_undefined_batch_flag_bits_survive() -> None:
    # Only COMPRESSED is recomputed; bits v2 does not name (0x40, 0x80) travel unchanged.
    batch = MemorySyncBatch(
        "b", "a", "z", MemoryTier.WORKING, [tv3_item()], flags=SyncFlags(0xC1), created_ns=T0
    )
    assert _metadata(batch.pack())["flags"] == 0xC0
    assert _metadata(batch.pack(compress_threshold=0))["flags"] == 0xC1
    assert MemorySyncBatch.unpack(batch.pack()).flags == 0xC0
