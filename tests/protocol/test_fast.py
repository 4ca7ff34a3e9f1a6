"""The protocol layer's speed tricks (memrepl.protocol.fast) give what the obvious way gives.

A parsed item is built on a mutable twin and then given MemorySyncItem's class; these properties
check that it cannot be told apart from an item built by the constructor, in any way a caller
could look at it: equality, hash, repr, immutability, copies, pickling, ``dataclasses``' view.
Parsed batches (which use ``object.__setattr__`` and the flags table) likewise.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memrepl.protocol import MemorySyncBatch, MemorySyncItem, SyncFlags, SyncOperation, fast
from memrepl.protocol.item import unpack_items

from .helpers import batches, items_with, payloads


def constructed(parsed: MemorySyncItem, version: object) -> MemorySyncItem:
    """The same item, through the constructor and its checks."""
    return MemorySyncItem(
        item_id=parsed.item_id,
        timestamp_ns=int(parsed.timestamp_ns),
        tier=int(parsed.tier),  # type: ignore[arg-type]
        operation=int(parsed.operation),  # type: ignore[arg-type]
        priority=int(parsed.priority),  # type: ignore[arg-type]
        payload=bytearray(parsed.payload),  # type: ignore[arg-type]
        version=version,  # type: ignore[arg-type]
    )


def refusal(item: MemorySyncItem) -> BaseException:
    try:
        item.extra = 1  # type: ignore[attr-defined]
    except Exception as exc:
        return exc
    raise AssertionError("an item took an attribute it has no slot for")


@settings(max_examples=150)
@given(items_with(payloads, st.none()))
def test_a_parsed_item_is_an_item_built_by_its_constructor(item: MemorySyncItem) -> None:
    parsed, size = MemorySyncItem.unpack(item.pack())
    assert size == len(item.pack())
    built = constructed(parsed, None)
    assert type(parsed) is MemorySyncItem
    assert parsed == built == item
    assert hash(parsed) == hash(built)
    assert repr(parsed) == repr(built)
    assert dataclasses.astuple(parsed) == dataclasses.astuple(built)
    assert [type(getattr(parsed, f.name)) for f in dataclasses.fields(parsed)] == [
        type(getattr(built, f.name)) for f in dataclasses.fields(built)
    ]
    assert copy.copy(parsed) == copy.deepcopy(parsed) == built
    assert pickle.loads(pickle.dumps(parsed)) == built
    assert dataclasses.replace(parsed, timestamp_ns=1).timestamp_ns == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.timestamp_ns = 2  # type: ignore[misc]
    # Any other attribute is refused the same way (on 3.11 a TypeError from the frozen
    # dataclass's __setattr__, whichever way the item was built).
    for made in (parsed, built):
        with pytest.raises(Exception) as refused:
            made.extra = 1  # type: ignore[attr-defined]
        assert type(refused.value) is type(refusal(built))


@settings(max_examples=40, deadline=None)
@given(batches)
def test_a_parsed_batch_is_a_batch_built_by_its_constructor(batch: MemorySyncBatch) -> None:
    parsed = MemorySyncBatch.unpack(batch.pack(compress_threshold=10**9))
    rebuilt = dataclasses.replace(parsed)  # runs __post_init__ and its checks
    assert parsed == rebuilt
    assert type(parsed.flags) is SyncFlags and parsed.flags == rebuilt.flags
    assert all(type(item) is MemorySyncItem for item in parsed.items)
    # The version info of each item too: parsed from JSON, set field by field.
    for mine, theirs in zip(parsed.items, batch.items, strict=True):
        assert mine.version == theirs.version
        if mine.version is not None:
            assert dataclasses.replace(mine.version) == mine.version


def test_items_data_parses_to_the_constructed_items() -> None:
    made = [
        MemorySyncItem(f"id-{n}", n, 1, SyncOperation(1 + n % 5), 2, b"x" * n)  # type: ignore[arg-type]
        for n in range(10)
    ]
    data = b"".join(item.pack() for item in made)
    assert list(unpack_items(data, len(made))) == made


def test_a_twin_needs_a_slotted_class() -> None:
    class Plain:
        pass

    with pytest.raises(TypeError, match="no __slots__"):
        fast.mutable_twin(Plain)


def test_the_bound_members_are_the_members() -> None:
    assert tuple(SyncOperation) == (
        fast.INSERT,
        fast.UPDATE,
        fast.DELETE,
        fast.MERGE,
        fast.REPLICATE,
    )
    assert all(
        bound is member
        for bound, member in zip(
            (fast.INSERT, fast.UPDATE, fast.DELETE, fast.MERGE, fast.REPLICATE),
            SyncOperation,
            strict=True,
        )
    )
    # Every flags byte, unknown bits included, is the value SyncFlags' constructor makes.
    assert all(
        flags == SyncFlags(byte) and type(flags) is SyncFlags
        for byte, flags in enumerate(fast.SYNC_FLAGS_BY_BYTE)
    )
