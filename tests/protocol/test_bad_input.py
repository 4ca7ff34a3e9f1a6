"""Every fault PROTOCOL.md §6 names is refused, with the right error and code.

Decoding: bad bytes raise ProtocolError whose ``code`` names the fault. Building: a value the
wire cannot carry intact raises a specific MemreplError subclass, never a truncation.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib
from typing import Any

import pytest

from memrepl.errors import (
    BatchError,
    BatchTooLargeError,
    CompressionError,
    InvalidItemIdError,
    ItemError,
    ItemTooLargeError,
    MemreplError,
    ProtocolError,
    UnknownTierError,
)
from memrepl.protocol import (
    MAX_METADATA_BYTES,
    HeaderFlags,
    ItemVersionInfo,
    MemorySyncBatch,
    MemorySyncItem,
    MemoryTier,
    MessageHeader,
    MessageTypes,
    Priority,
    SyncOperation,
    decode_frame,
    decompress_items,
    encode_frame,
)

from .helpers import (
    T0,
    TV1_HEX,
    TV3,
    TV5,
    gzip_bytes,
    hx,
    raw_batch,
    raw_header,
    raw_item,
    sample_version,
    tv3_item,
    v2_metadata,
)


def _code(exc: pytest.ExceptionInfo[ProtocolError]) -> str:
    return exc.value.code


# --- the header ----------------------------------------------------------------------------------

HEADER_FAULTS = {
    "short": (hx(TV1_HEX)[:31], "truncated"),
    "empty": (b"", "truncated"),
    "magic": (b"\0\0\0\0MSHX" + hx(TV1_HEX)[8:], "bad-magic"),
    "magic-high-bytes": (b"\0\0\0\1MSHW" + hx(TV1_HEX)[8:], "bad-magic"),
    "version-1": (raw_header(payload_len=0, version=1), "bad-version"),
    "version-3": (raw_header(payload_len=0, version=3), "bad-version"),
    "psych-type": (raw_header(payload_len=0, msg_type=0x0101), "unknown-msg-type"),
    "type-0": (raw_header(payload_len=0, msg_type=0), "unknown-msg-type"),
    "priority-5": (raw_header(payload_len=0, priority=5), "unknown-priority"),
}


@pytest.mark.parametrize(("data", "code"), HEADER_FAULTS.values(), ids=HEADER_FAULTS.keys())
def test_header_faults(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        MessageHeader.unpack(data)
    assert _code(exc) == code
    # A batch and a frame refuse the same bytes for the same reason.
    with pytest.raises(ProtocolError) as exc:
        MemorySyncBatch.unpack(data)
    assert _code(exc) == code
    with pytest.raises(ProtocolError) as exc:
        decode_frame(data)
    assert _code(exc) == code


def test_any_header_flags_byte_is_accepted() -> None:
    for flags in (0, 0x7F, 0xFF):
        header = MessageHeader.unpack(raw_header(payload_len=0, flags=flags))
        assert header.flags == flags


def test_frame_faults() -> None:
    frame = encode_frame(MessageTypes.ACK, b"12345", timestamp_ns=1)
    with pytest.raises(ProtocolError) as exc:
        decode_frame(frame[:-1])
    assert _code(exc) == "truncated"
    with pytest.raises(ProtocolError) as exc:
        decode_frame(frame + b"x")
    assert _code(exc) == "trailing-bytes"
    with pytest.raises(ProtocolError) as exc:
        decode_frame(frame, max_payload=4)
    assert _code(exc) == "frame-too-large"
    assert decode_frame(frame, max_payload=5)[1] == b"12345"


def test_not_bytes_is_a_protocol_error() -> None:
    for decode in (MessageHeader.unpack, MemorySyncBatch.unpack, decode_frame):
        with pytest.raises(ProtocolError) as exc:
            decode("text")  # type: ignore[arg-type]
        assert _code(exc) == "not-bytes"
    # Bytes-like buffers are read as bytes.
    from_bytearray = MemorySyncBatch.unpack(bytearray(TV5))  # type: ignore[arg-type]
    assert from_bytearray == MemorySyncBatch.unpack(memoryview(TV5))  # type: ignore[arg-type]


# --- items ---------------------------------------------------------------------------------------

ITEM_FAULTS = {
    "short-header": (raw_item()[:47], "truncated"),
    "payload-past-end": (raw_item(payload=b"{}", payload_len=3), "truncated"),
    "empty-id": (raw_item(item_id=b""), "bad-item-id"),
    "nul-inside-id": (raw_item(item_id=b"ab\0cd"), "bad-item-id"),
    "leading-nul-id": (raw_item(item_id=b"\0abc"), "bad-item-id"),
    "non-utf8-id": (raw_item(item_id=b"\xffid"), "bad-item-id"),
    "cut-utf8-id": (raw_item(item_id="é".encode()[:1]), "bad-item-id"),
    "tier-0": (raw_item(tier=0), "unknown-tier"),
    "tier-4": (raw_item(tier=4), "unknown-tier"),
    "operation-0": (raw_item(operation=0), "unknown-operation"),
    "operation-6": (raw_item(operation=6), "unknown-operation"),
    "priority-5": (raw_item(priority=5), "unknown-priority"),
    "priority-big": (raw_item(priority=0xFFFF), "unknown-priority"),
}


@pytest.mark.parametrize(("data", "code"), ITEM_FAULTS.values(), ids=ITEM_FAULTS.keys())
def test_item_faults(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        MemorySyncItem.unpack(data)
    assert _code(exc) == code
    # Inside a batch, the same fault.
    with pytest.raises(ProtocolError) as exc:
        MemorySyncBatch.unpack(raw_batch(v2_metadata(1), data))
    assert _code(exc) == code


def test_item_padding_is_ignored() -> None:
    item, _ = MemorySyncItem.unpack(raw_item(padding=b"\xff\xff"))
    assert item.item_id == "item-1"


def test_item_offset_past_the_end_and_negative() -> None:
    with pytest.raises(ProtocolError) as exc:
        MemorySyncItem.unpack(TV3, 17)
    assert _code(exc) == "truncated"
    with pytest.raises(ProtocolError) as exc:
        MemorySyncItem.unpack(TV3, 1000)
    assert _code(exc) == "truncated"
    with pytest.raises(ProtocolError) as exc:
        MemorySyncItem.unpack(TV3, -1)
    assert _code(exc) == "bad-offset"


# --- batch framing, lengths and counts -----------------------------------------------------------

ONE_ITEM = raw_item()
TWO_ITEMS = raw_item(b"one") + raw_item(b"two")


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BATCH_FAULTS: dict[str, tuple[bytes, str]] = {
    "wrong-msg-type": (
        raw_batch(v2_metadata(1), ONE_ITEM, msg_type=MessageTypes.VECTOR_SYNC),
        "wrong-msg-type",
    ),
    "payload-len-short": (
        raw_batch(v2_metadata(1), ONE_ITEM, payload_len_delta=-1),
        "bad-payload-len",
    ),
    "payload-len-long": (
        raw_batch(v2_metadata(1), ONE_ITEM, payload_len_delta=1),
        "bad-payload-len",
    ),
    "buffer-cut": (raw_batch(v2_metadata(1), ONE_ITEM)[:-1], "bad-payload-len"),
    "no-metadata-length": (raw_header(payload_len=3) + b"\0\0\0", "truncated"),
    "header-only": (raw_header(payload_len=0), "truncated"),
    "metadata-len-past-end": (
        raw_batch(v2_metadata(1), ONE_ITEM, metadata_len=10_000),
        "bad-metadata-len",
    ),
    "metadata-len-over-limit": (
        raw_batch(v2_metadata(1), b"", metadata_len=MAX_METADATA_BYTES + 1),
        "bad-metadata-len",
    ),
    "header-count-high": (raw_batch(v2_metadata(1), ONE_ITEM, batch_count=2), "count-mismatch"),
    "header-count-low": (raw_batch(v2_metadata(2), TWO_ITEMS, batch_count=1), "count-mismatch"),
    "metadata-count-300": (raw_batch(v2_metadata(300), ONE_ITEM, batch_count=44), "count-mismatch"),
    "fewer-items-than-counted": (raw_batch(v2_metadata(2), ONE_ITEM), "count-mismatch"),
    "no-items-at-all": (raw_batch(v2_metadata(1), b""), "count-mismatch"),
    "more-items-than-counted": (raw_batch(v2_metadata(1), TWO_ITEMS), "trailing-bytes"),
    "junk-after-items": (raw_batch(v2_metadata(1), ONE_ITEM + b"\0"), "trailing-bytes"),
    "item-cut-in-header": (raw_batch(v2_metadata(1), ONE_ITEM[:40]), "truncated"),
    "item-payload-past-end": (
        raw_batch(v2_metadata(2), raw_item() + raw_item(payload=b"{}", payload_len=500)),
        "truncated",
    ),
    # The metadata itself.
    "metadata-not-utf8": (raw_batch(b'{"batch_id": "\xff"}', ONE_ITEM), "bad-metadata"),
    "metadata-not-json": (raw_batch(b"{not json", ONE_ITEM), "bad-metadata"),
    "metadata-empty": (raw_batch(b"", ONE_ITEM), "bad-metadata"),
    "metadata-bom": (
        raw_batch(b"\xef\xbb\xbf" + json.dumps(v2_metadata()).encode(), ONE_ITEM),
        "bad-metadata",
    ),
    "metadata-utf16": (
        raw_batch(json.dumps(v2_metadata()).encode("utf-16"), ONE_ITEM),
        "bad-metadata",
    ),
    "metadata-array": (raw_batch(b"[1, 2]", ONE_ITEM), "bad-metadata"),
    "metadata-deeply-nested": (raw_batch(_deep(100_000), ONE_ITEM), "bad-metadata"),
    "metadata-nested-in-object": (
        raw_batch(b'{"x": ' + _deep(200_000) + b"}", ONE_ITEM),
        "bad-metadata",
    ),
    "metadata-huge-int": (raw_batch(b'{"tier": ' + b"9" * 5000 + b"}", ONE_ITEM), "bad-metadata"),
    "unknown-tier": (raw_batch(v2_metadata(1, tier=4), ONE_ITEM), "unknown-tier"),
    "tier-0": (raw_batch(v2_metadata(1, tier=0), ONE_ITEM), "unknown-tier"),
}

# Each v2 key missing, and each of the wrong type.
for _key in v2_metadata():
    _metadata = v2_metadata(1)
    del _metadata[_key]
    BATCH_FAULTS[f"missing-{_key}"] = (
        raw_batch(_metadata, ONE_ITEM, batch_count=1),
        "bad-metadata",
    )

_WRONG_VALUES: dict[str, list[Any]] = {
    "batch_id": [1, None, ["b"]],
    "source_node": [True, {}],
    "target_node": [2.5],
    "tier": ["1", True, 1.0, None],
    "item_count": ["1", True, 1.0, -1],
    "flags": ["0", True, -1, 256, 0.0],
    "sync_vector": [[], "x", None, {"n": -1}, {"n": "1"}, {"n": True}, {"n": 1.5}, {"n": 2**64}],
}
for _key, _values in _WRONG_VALUES.items():
    for _index, _value in enumerate(_values):
        _metadata = v2_metadata(1, **{_key: _value})
        BATCH_FAULTS[f"wrong-{_key}-{_index}"] = (
            raw_batch(_metadata, ONE_ITEM, batch_count=1),
            "bad-metadata",
        )


@pytest.mark.parametrize(("data", "code"), BATCH_FAULTS.values(), ids=BATCH_FAULTS.keys())
def test_batch_faults(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        MemorySyncBatch.unpack(data)
    assert _code(exc) == code


def test_unknown_metadata_keys_are_ignored() -> None:
    # v2 compatibility: readers ignore keys they do not know (PROTOCOL.md §3).
    metadata = v2_metadata(1, later_key={"anything": [1, 2]}, another=None)
    batch = MemorySyncBatch.unpack(raw_batch(metadata, ONE_ITEM))
    assert [item.item_id for item in batch.items] == ["item-1"]


def test_a_v2_batch_with_header_flags_and_priority_is_read_by_metadata() -> None:
    # Header priority and flags are informative only (v2 readers ignore them).
    data = raw_batch(v2_metadata(1), ONE_ITEM, flags=0xFF, priority=4)
    assert len(MemorySyncBatch.unpack(data).items) == 1


# --- memrepl's extension -------------------------------------------------------------------------

_GOOD_VERSION = sample_version().to_json()


def _with_extension(extension: Any, item_count: int = 1) -> bytes:
    items = b"".join(raw_item(f"i{n}".encode()) for n in range(item_count))
    return raw_batch(v2_metadata(item_count, memrepl=extension), items)


def _version_with(**changes: Any) -> dict[str, Any]:
    version = dict(_GOOD_VERSION)
    version.update(changes)
    return version


def _version_without(key: str) -> dict[str, Any]:
    version = dict(_GOOD_VERSION)
    del version[key]
    return version


EXTENSION_FAULTS: dict[str, Any] = {
    "not-object": [1],
    "string": "v1",
    "no-v": {"cursor": None, "items": [None]},
    "v-2": {"v": 2, "cursor": None, "items": [None]},
    "v-true": {"v": True, "cursor": None, "items": [None]},
    "v-string": {"v": "1", "cursor": None, "items": [None]},
    "no-cursor": {"v": 1, "items": [None]},
    "no-items": {"v": 1, "cursor": None},
    "cursor-negative": {"v": 1, "cursor": -1, "items": [None]},
    "cursor-too-big": {"v": 1, "cursor": 2**64, "items": [None]},
    "cursor-string": {"v": 1, "cursor": "5", "items": [None]},
    "cursor-float": {"v": 1, "cursor": 5.0, "items": [None]},
    "items-short": {"v": 1, "cursor": None, "items": []},
    "items-long": {"v": 1, "cursor": None, "items": [None, None]},
    "items-object": {"v": 1, "cursor": None, "items": {"0": None}},
    "entry-list": {"v": 1, "cursor": None, "items": [[]]},
    "entry-string": {"v": 1, "cursor": None, "items": ["node-a"]},
    "origin-int": {"v": 1, "cursor": None, "items": [_version_with(o=1)]},
    "context-list": {"v": 1, "cursor": None, "items": [_version_with(c=[])]},
    "context-negative": {"v": 1, "cursor": None, "items": [_version_with(c={"n": -1})]},
    "context-bool": {"v": 1, "cursor": None, "items": [_version_with(c={"n": False})]},
    "whole-big": {"v": 1, "cursor": None, "items": [_version_with(w=2**64)]},
    "whole-bool": {"v": 1, "cursor": None, "items": [_version_with(w=True)]},
    "whole-origin-null": {"v": 1, "cursor": None, "items": [_version_with(wo=None)]},
    "deleted-int": {"v": 1, "cursor": None, "items": [_version_with(wd=0)]},
    "clocks-list": {"v": 1, "cursor": None, "items": [_version_with(f=[])]},
    "clock-short": {"v": 1, "cursor": None, "items": [_version_with(f={"x": [1]})]},
    "clock-long": {"v": 1, "cursor": None, "items": [_version_with(f={"x": [1, "a", 2]})]},
    "clock-swapped": {"v": 1, "cursor": None, "items": [_version_with(f={"x": ["a", 1]})]},
    "clock-object": {"v": 1, "cursor": None, "items": [_version_with(f={"x": {"s": 1}})]},
    **{
        f"entry-missing-{key}": {"v": 1, "cursor": None, "items": [_version_without(key)]}
        for key in _GOOD_VERSION
    },
}


@pytest.mark.parametrize("extension", EXTENSION_FAULTS.values(), ids=EXTENSION_FAULTS.keys())
def test_extension_faults(extension: Any) -> None:
    with pytest.raises(ProtocolError) as exc:
        MemorySyncBatch.unpack(_with_extension(extension))
    assert _code(exc) == "bad-metadata"


def test_a_valid_extension_is_accepted_with_unknown_keys() -> None:
    extension = {"v": 1, "cursor": 9, "items": [_version_with(extra=1), None], "later": True}
    batch = MemorySyncBatch.unpack(_with_extension(extension, item_count=2))
    assert batch.cursor == 9
    assert [item.version for item in batch.items] == [sample_version(), None]


def test_version_info_from_json_refuses_a_non_object() -> None:
    bad: object
    for bad in (None, [], "x", 1):
        with pytest.raises(ProtocolError) as exc:
            ItemVersionInfo.from_json(bad)
        assert _code(exc) == "bad-metadata"


# --- compression ---------------------------------------------------------------------------------


def _compressed_batch(items_data: bytes, item_count: int = 1) -> bytes:
    return raw_batch(v2_metadata(item_count, flags=1), items_data)


_GZIP_ONE = gzip_bytes(ONE_ITEM)
COMPRESSION_FAULTS = {
    "not-gzip": (ONE_ITEM, "bad-gzip"),
    "empty": (b"", "gzip-truncated"),
    "cut-stream": (_GZIP_ONE[:-9], "gzip-truncated"),
    "bad-crc": (_GZIP_ONE[:-8] + b"\0\0\0\0" + _GZIP_ONE[-4:], "bad-gzip"),
    "bad-block-type": (_GZIP_ONE[:10] + bytes([_GZIP_ONE[10] | 0x06]) + _GZIP_ONE[11:], "bad-gzip"),
    "trailing-junk": (_GZIP_ONE + b"x", "gzip-trailing-bytes"),
    "second-member": (_GZIP_ONE + gzip_bytes(b""), "gzip-trailing-bytes"),
    "zlib-not-gzip": (zlib.compress(ONE_ITEM), "bad-gzip"),
}


@pytest.mark.parametrize(
    ("data", "code"), COMPRESSION_FAULTS.values(), ids=COMPRESSION_FAULTS.keys()
)
def test_compression_faults(data: bytes, code: str) -> None:
    with pytest.raises(CompressionError) as exc:
        MemorySyncBatch.unpack(_compressed_batch(data))
    assert exc.value.code == code


def test_a_gzip_bomb_is_refused_inside_a_well_formed_batch() -> None:
    bomb = gzip_bytes(bytes(20 * 1024 * 1024))  # 20 MB of zeros, about 20 KB of gzip
    for item_count in (1, 255):  # the bound follows the count, and never passes the maximum
        data = raw_batch(v2_metadata(item_count, flags=1), bomb)
        with pytest.raises(CompressionError) as exc:
            MemorySyncBatch.unpack(data)
        assert exc.value.code == "gzip-too-large"


def test_decompression_never_allocates_past_its_limit() -> None:
    bomb = gzip_bytes(bytes(20 * 1024 * 1024))
    limit = 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError):
            decompress_items(bomb, limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit
    # At the limit exactly is fine; one byte over is not.
    assert decompress_items(gzip_bytes(bytes(limit)), limit=limit) == bytes(limit)
    with pytest.raises(CompressionError):
        decompress_items(gzip_bytes(bytes(limit + 1)), limit=limit)


def test_a_compressed_flag_on_an_empty_batch_needs_an_empty_gzip() -> None:
    batch = MemorySyncBatch.unpack(raw_batch(v2_metadata(0, flags=1), gzip_bytes(b"")))
    assert batch.items == ()
    with pytest.raises(CompressionError) as exc:
        MemorySyncBatch.unpack(raw_batch(v2_metadata(0, flags=1), gzip_bytes(b"\0")))
    assert exc.value.code == "gzip-too-large"


# --- build-time refusals -------------------------------------------------------------------------


def _item(**changes: Any) -> MemorySyncItem:
    fields: dict[str, Any] = {
        "item_id": "ok",
        "timestamp_ns": T0,
        "tier": MemoryTier.WORKING,
        "operation": SyncOperation.INSERT,
    }
    fields.update(changes)
    return MemorySyncItem(**fields)


ITEM_REFUSALS: dict[str, tuple[dict[str, Any], type[MemreplError]]] = {
    "id-33-bytes": ({"item_id": "a" * 33}, InvalidItemIdError),
    "id-33-utf8-bytes": ({"item_id": "€" * 11}, InvalidItemIdError),
    "id-empty": ({"item_id": ""}, InvalidItemIdError),
    "id-nul-inside": ({"item_id": "a\0b"}, InvalidItemIdError),
    "id-nul-trailing": ({"item_id": "ab\0"}, InvalidItemIdError),
    "id-surrogate": ({"item_id": "\ud800"}, InvalidItemIdError),
    "id-bytes": ({"item_id": b"abc"}, InvalidItemIdError),
    "payload-65536": ({"payload": bytes(65536)}, ItemTooLargeError),
    "payload-str": ({"payload": "{}"}, ItemError),
    "tier-4": ({"tier": 4}, UnknownTierError),
    "tier-bool": ({"tier": True}, UnknownTierError),
    "tier-name": ({"tier": "WORKING"}, UnknownTierError),
    "operation-6": ({"operation": 6}, ItemError),
    "operation-bool": ({"operation": True}, ItemError),
    "priority-5": ({"priority": 5}, ItemError),
    "priority-negative": ({"priority": -1}, ItemError),
    "timestamp-negative": ({"timestamp_ns": -1}, ItemError),
    "timestamp-past-u64": ({"timestamp_ns": 2**64}, ItemError),
    "timestamp-float": ({"timestamp_ns": 1.5}, ItemError),
    "version-dict": ({"version": {"o": "a"}}, ItemError),
}


@pytest.mark.parametrize(("changes", "error"), ITEM_REFUSALS.values(), ids=ITEM_REFUSALS.keys())
def test_item_build_refusals(changes: dict[str, Any], error: type[MemreplError]) -> None:
    with pytest.raises(error):
        _item(**changes)


def test_item_limits_are_inclusive_and_errors_carry_fields() -> None:
    assert _item(item_id="€" * 10 + "ab", payload=bytes(65535)).pack()
    with pytest.raises(ItemTooLargeError) as exc:
        _item(item_id="big", payload=bytes(65536))
    assert (exc.value.limit, exc.value.size, exc.value.item_id) == (65535, 65536, "big")
    with pytest.raises(InvalidItemIdError) as id_exc:
        _item(item_id="x" * 40)
    assert id_exc.value.item_id == "x" * 40


def test_item_coerces_ints_to_enums() -> None:
    item = _item(tier=2, operation=3, priority=4, payload=bytearray(b"{}"))
    assert item.tier is MemoryTier.EPISODIC
    assert item.operation is SyncOperation.DELETE
    assert item.priority == 4
    assert type(item.payload) is bytes


VERSION_REFUSALS: dict[str, dict[str, Any]] = {
    "origin-int": {"origin_node": 1},
    "context-list": {"causal_context": []},
    "context-negative": {"causal_context": {"n": -1}},
    "context-key-int": {"causal_context": {1: 1}},
    "whole-negative": {"whole_timestamp_ns": -1},
    "whole-origin-none": {"whole_origin": None},
    "deleted-int": {"whole_deleted": 1},
    "clocks-list": {"field_clocks": []},
    "clock-short": {"field_clocks": {"x": (1,)}},
    "clock-swapped": {"field_clocks": {"x": ("a", 1)}},
    "clock-past-u64": {"field_clocks": {"x": (2**64, "a")}},
}


@pytest.mark.parametrize("changes", VERSION_REFUSALS.values(), ids=VERSION_REFUSALS.keys())
def test_version_info_build_refusals(changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"origin_node": "a"}
    fields.update(changes)
    with pytest.raises(ItemError):
        ItemVersionInfo(**fields)


def _batch(**changes: Any) -> MemorySyncBatch:
    fields: dict[str, Any] = {
        "batch_id": "b",
        "source_node": "a",
        "target_node": "z",
        "tier": MemoryTier.WORKING,
        "items": [tv3_item()],
        "created_ns": T0,
    }
    fields.update(changes)
    return MemorySyncBatch(**fields)


BATCH_REFUSALS: dict[str, tuple[dict[str, Any], type[MemreplError]]] = {
    "256-items": ({"items": [tv3_item()] * 256}, BatchTooLargeError),
    "tier-9": ({"tier": 9}, UnknownTierError),
    "flags-256": ({"flags": 256}, BatchError),
    "flags-negative": ({"flags": -1}, BatchError),
    "batch-id-int": ({"batch_id": 1}, BatchError),
    "target-none": ({"target_node": None}, BatchError),
    "item-not-item": ({"items": [tv3_item(), "x"]}, BatchError),
    "items-str": ({"items": "abc"}, BatchError),
    "vector-negative": ({"sync_vector": {"n": -1}}, BatchError),
    "vector-key-int": ({"sync_vector": {1: 1}}, BatchError),
    "vector-list": ({"sync_vector": [("n", 1)]}, BatchError),
    "created-negative": ({"created_ns": -1}, BatchError),
    "created-past-u64": ({"created_ns": 2**64}, BatchError),
    "cursor-past-u64": ({"cursor": 2**64}, BatchError),
    "cursor-bool": ({"cursor": True}, BatchError),
}


@pytest.mark.parametrize(("changes", "error"), BATCH_REFUSALS.values(), ids=BATCH_REFUSALS.keys())
def test_batch_build_refusals(changes: dict[str, Any], error: type[MemreplError]) -> None:
    with pytest.raises(error):
        _batch(**changes)


def test_255_items_fit_and_256_do_not() -> None:
    packed = _batch(items=[tv3_item()] * 255).pack()
    assert packed[14] == 255
    assert len(MemorySyncBatch.unpack(packed).items) == 255
    with pytest.raises(BatchTooLargeError) as exc:
        _batch(items=[tv3_item()] * 256)
    assert exc.value.limit == 255


def test_metadata_over_the_limit_is_refused_at_pack() -> None:
    with pytest.raises(BatchError):
        _batch(batch_id="x" * MAX_METADATA_BYTES).pack()


HEADER_REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "batch-count-256": ({"batch_count": 256}, "bad-batch-count"),
    "batch-count-negative": ({"batch_count": -1}, "bad-batch-count"),
    "flags-0x100": ({"flags": 0x100}, "bad-flags"),
    "flags-negative": ({"flags": -1}, "bad-flags"),
    "payload-negative": ({"payload_len": -1}, "bad-payload-len"),
    "payload-past-u64": ({"payload_len": 2**64}, "bad-payload-len"),
    "timestamp-negative": ({"timestamp_ns": -1}, "bad-timestamp"),
    "timestamp-past-u64": ({"timestamp_ns": 2**64}, "bad-timestamp"),
    "msg-type-psych": ({"msg_type": 0x0101}, "unknown-msg-type"),
    "priority-5": ({"priority": 5}, "unknown-priority"),
    "version-3": ({"version": 3}, "bad-version"),
    "count-bool": ({"batch_count": True}, "bad-batch-count"),
}


@pytest.mark.parametrize(("changes", "code"), HEADER_REFUSALS.values(), ids=HEADER_REFUSALS.keys())
def test_header_build_refusals(changes: dict[str, Any], code: str) -> None:
    fields: dict[str, Any] = {
        "msg_type": MessageTypes.HEARTBEAT,
        "payload_len": 0,
        "timestamp_ns": 1,
    }
    fields.update(changes)
    with pytest.raises(ProtocolError) as exc:
        MessageHeader(**fields)
    assert _code(exc) == code


def test_encode_frame_refuses_instead_of_masking() -> None:
    with pytest.raises(ProtocolError) as exc:
        encode_frame(MessageTypes.ACK, b"", batch_count=256)
    assert _code(exc) == "bad-batch-count"
    with pytest.raises(ProtocolError) as exc:
        encode_frame(MessageTypes.ACK, b"", flags=HeaderFlags(0x80) | 0x100)
    assert _code(exc) == "bad-flags"
    with pytest.raises(ProtocolError) as exc:
        encode_frame(MessageTypes.ACK, "text")  # type: ignore[arg-type]
    assert _code(exc) == "not-bytes"
    header, _ = decode_frame(
        encode_frame(MessageTypes.ACK, b"", priority=Priority.EMERGENCY, timestamp_ns=0)
    )
    assert (header.priority, header.timestamp_ns) == (Priority.EMERGENCY, 0)
