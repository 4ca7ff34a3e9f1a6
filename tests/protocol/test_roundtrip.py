"""Round trips: whatever a valid item or batch is, unpack(pack(x)) gives it back.

The equality rule for batches (memrepl/protocol/batch.py): ``unpack(b.pack(compress_threshold=t))``
equals ``b`` with its COMPRESSED flag set exactly when the items data was longer than ``t`` (the
flag records what pack did, not what the caller asked); packing the result again with the same
``t`` gives the very same bytes.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memrepl.protocol import (
    ITEM_HEADER_SIZE,
    MAX_BATCH_ITEMS,
    MAX_ITEM_PAYLOAD_BYTES,
    MAX_ITEMS_DATA_BYTES,
    ItemVersionInfo,
    MemorySyncBatch,
    MemorySyncItem,
    MemoryTier,
    SyncFlags,
    SyncOperation,
    SyncPriority,
)
from memrepl.protocol.item import pack_items

from .helpers import T0, batches, items, sample_version, versions

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_EMPTY = MemorySyncItem("a", 0, MemoryTier.WORKING, SyncOperation.INSERT, payload=b"")
_FULL = MemorySyncItem(
    "f" * 32,
    2**64 - 1,
    MemoryTier.SEMANTIC,
    SyncOperation.MERGE,
    SyncPriority.URGENT,
    payload=b"\xff" * MAX_ITEM_PAYLOAD_BYTES,
)


@_SETTINGS
@given(item=items, trailing=st.binary(max_size=64))
@example(item=_EMPTY, trailing=b"")
@example(item=_FULL, trailing=b"\0" * 48)
def test_item_roundtrip(item: MemorySyncItem, trailing: bytes) -> None:
    packed = item.pack()
    assert len(packed) == ITEM_HEADER_SIZE + len(item.payload)
    parsed, consumed = MemorySyncItem.unpack(packed + trailing)
    assert consumed == len(packed)
    # The item bytes do not carry the version (it travels in the batch metadata).
    assert parsed == dataclasses.replace(item, version=None)


@_SETTINGS
@given(info=versions)
def test_version_info_json_roundtrip(info: ItemVersionInfo) -> None:
    assert ItemVersionInfo.from_json(info.to_json()) == info


def _expected_flags(batch: MemorySyncBatch, threshold: int) -> SyncFlags:
    compressed = len(pack_items(batch.items)) > threshold
    # int arithmetic: IntFlag's ~ would also clear the undefined bits 0x40 and 0x80.
    flags = int(batch.flags) & ~0x01
    return SyncFlags(flags | 0x01 if compressed else flags)


@settings(_SETTINGS, max_examples=60)
@given(
    batch=batches,
    threshold=st.sampled_from([-1, 0, 1024, 4096, 2**31]) | st.integers(0, 20_000),
    legacy=st.booleans(),
)
def test_batch_roundtrip(batch: MemorySyncBatch, threshold: int, legacy: bool) -> None:
    packed = batch.pack(compress_threshold=threshold, legacy_header=legacy)
    parsed = MemorySyncBatch.unpack(packed)
    assert parsed == dataclasses.replace(batch, flags=_expected_flags(batch, threshold))
    assert parsed.pack(compress_threshold=threshold, legacy_header=legacy) == packed


def test_roundtrip_of_a_batch_without_versions_keeps_them_none() -> None:
    item = MemorySyncItem("x", T0, MemoryTier.EPISODIC, SyncOperation.UPDATE, payload=b"{}")
    parsed = MemorySyncBatch.unpack(
        MemorySyncBatch("b", "a", "z", MemoryTier.EPISODIC, [item], created_ns=T0).pack()
    )
    assert parsed.items[0].version is None
    assert parsed.cursor is None


def test_mixed_versions_roundtrip() -> None:
    with_version = MemorySyncItem(
        "v", T0, MemoryTier.WORKING, SyncOperation.MERGE, version=sample_version()
    )
    without = MemorySyncItem("n", T0, MemoryTier.WORKING, SyncOperation.INSERT)
    batch = MemorySyncBatch(
        "b", "a", "z", MemoryTier.WORKING, [without, with_version, without], created_ns=T0
    )
    parsed = MemorySyncBatch.unpack(batch.pack())
    assert [i.version for i in parsed.items] == [None, sample_version(), None]
    assert parsed == batch


def test_the_largest_batch_roundtrips_at_the_decompression_limit() -> None:
    # 255 items of 65,535 incompressible bytes: exactly MAX_ITEMS_DATA_BYTES of items data,
    # which the bounded inflater must still accept (the limit is inclusive).
    rng = random.Random(2024)
    items = [
        MemorySyncItem(
            f"{n:032x}",
            T0 + n,
            MemoryTier.SEMANTIC,
            SyncOperation.UPDATE,
            payload=rng.randbytes(MAX_ITEM_PAYLOAD_BYTES),
        )
        for n in range(MAX_BATCH_ITEMS)
    ]
    batch = MemorySyncBatch("big", "a", "z", MemoryTier.SEMANTIC, items, created_ns=T0)
    assert len(pack_items(batch.items)) == MAX_ITEMS_DATA_BYTES
    compressed = batch.pack()
    assert MemorySyncBatch.unpack(compressed) == dataclasses.replace(
        batch, flags=SyncFlags.COMPRESSED
    )
    raw = batch.pack(compress_threshold=MAX_ITEMS_DATA_BYTES)
    assert MemorySyncBatch.unpack(raw) == batch
