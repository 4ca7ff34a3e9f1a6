"""Bounded fuzzing of every decoder: whatever the bytes, only ProtocolError escapes.

The normal run tries a few thousand deterministic cases (every truncation of a compressed and an
uncompressed batch, byte flips, insertions, deletions, structure-aware mutations that keep the
lengths right so they reach the metadata and item parsers, and random bytes). The same generator
runs for ``MEMREPL_FUZZ_CASES`` cases (default 200,000) under ``make test-long``.

A decode that succeeds must also give a batch that packs again and unpacks to itself.
"""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memrepl.errors import ProtocolError
from memrepl.protocol import (
    HEADER_SIZE,
    MAX_ITEMS_DATA_BYTES,
    MemorySyncBatch,
    MemorySyncItem,
    MemoryTier,
    MessageHeader,
    SyncFlags,
    SyncOperation,
    SyncPriority,
    compress_items,
    decode_frame,
    decompress_items,
)

from .helpers import T0, TV5, TV6, raw_header, sample_version

SEED = 0x4D534857


def _check_batch(data: bytes) -> None:
    batch = MemorySyncBatch.unpack(data)
    # Repack with the same compression decision: the result must read back as the same batch.
    threshold = -1 if batch.flags & SyncFlags.COMPRESSED else MAX_ITEMS_DATA_BYTES
    assert MemorySyncBatch.unpack(batch.pack(compress_threshold=threshold)) == batch


DECODERS: list[tuple[str, Callable[[bytes], object]]] = [
    ("MemorySyncBatch.unpack", _check_batch),
    ("MessageHeader.unpack", MessageHeader.unpack),
    ("decode_frame", decode_frame),
    ("MemorySyncItem.unpack", MemorySyncItem.unpack),
    ("MemorySyncItem.unpack@36", lambda data: MemorySyncItem.unpack(data, 36)),
    ("decompress_items", lambda data: decompress_items(data, limit=1 << 16)),
]


def _decode_all(data: bytes, what: str) -> None:
    for name, decode in DECODERS:
        try:
            decode(data)
        except ProtocolError:
            pass
        except Exception as exc:
            raise AssertionError(
                f"{name} raised {type(exc).__name__}: {exc} on {what}, "
                f"{len(data)} bytes: {data[:256].hex()}"
            ) from exc


# --- the corpus: valid batches to mutate ---------------------------------------------------------


def _corpus_batch(count: int) -> MemorySyncBatch:
    items = []
    for n in range(count):
        payload = json.dumps({"n": n, "text": "memory " * (n % 5), "tags": ["a", "b"]}).encode()
        items.append(
            MemorySyncItem(
                f"{n:032x}" if n % 2 else f"item-é-{n}",
                T0 + n,
                MemoryTier(1 + n % 3),
                SyncOperation(1 + n % 5),
                SyncPriority(n % 5),
                b"" if n % 7 == 3 else payload,
                version=sample_version(f"node-{n % 3}", T0 + n) if n % 4 else None,
            )
        )
    return MemorySyncBatch(
        "batch-fuzz",
        "node-a",
        "node-b",
        MemoryTier.WORKING,
        items,
        flags=SyncFlags.DELTA_ONLY,
        sync_vector={"node-b": T0, "node-c": 5},
        created_ns=T0,
        cursor=T0 + 99,
    )


UNCOMPRESSED = _corpus_batch(12).pack(compress_threshold=MAX_ITEMS_DATA_BYTES)
COMPRESSED = _corpus_batch(12).pack(compress_threshold=0)
CORPUS = [UNCOMPRESSED, COMPRESSED, TV5, TV6, _corpus_batch(0).pack(compress_threshold=-1)]


def _split(data: bytes) -> tuple[dict[str, Any], bytes, bool]:
    """A valid batch's metadata (parsed), uncompressed items data, and whether it was compressed."""
    (length,) = struct.unpack_from(">I", data, HEADER_SIZE)
    metadata = json.loads(data[HEADER_SIZE + 4 : HEADER_SIZE + 4 + length])
    items_data = data[HEADER_SIZE + 4 + length :]
    compressed = bool(metadata["flags"] & SyncFlags.COMPRESSED)
    return metadata, decompress_items(items_data) if compressed else items_data, compressed


def _assemble(metadata: bytes, items_data: bytes, count: int, compressed: bool) -> bytes:
    """A batch with every length right: what a buggy or hostile but careful sender writes."""
    body = compress_items(items_data) if compressed else items_data
    payload = struct.pack(">I", len(metadata)) + metadata + body
    return raw_header(payload_len=len(payload), batch_count=count & 0xFF) + payload


# --- mutations -----------------------------------------------------------------------------------

_ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**64,
    2**64 - 1,
    256,
    "",
    "x",
    "\ud800",
    [],
    {},
    [None],
    {"v": 1},
    [[[[[]]]]],
]


def _mutate_json(value: Any, rng: random.Random) -> Any:
    """Replace, delete or add one thing somewhere inside a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.15:
            del value[key]
        elif choice < 0.25:
            value[rng.choice(["later", key + "x", "memrepl", "v"])] = rng.choice(_ODD_VALUES)
        else:
            value[key] = _mutate_json(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        choice = rng.random()
        if choice < 0.15:
            del value[index]
        elif choice < 0.25:
            value.insert(index, rng.choice(_ODD_VALUES))
        else:
            value[index] = _mutate_json(value[index], rng)
        return value
    return rng.choice(_ODD_VALUES)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        position = rng.randrange(len(buffer) + 1)
        if choice < 0.5 and buffer:
            buffer[min(position, len(buffer) - 1)] ^= rng.randrange(1, 256)
        elif choice < 0.7:
            buffer[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice < 0.85:
            del buffer[position : position + rng.randint(1, 8)]
        else:
            buffer[position:position] = buffer[position : position + rng.randint(1, 64)]
    return bytes(buffer)


def _structured(seed: bytes, rng: random.Random) -> bytes:
    metadata, items_data, compressed = _split(seed)
    count = metadata["item_count"]
    choice = rng.random()
    if choice < 0.45:
        metadata = _mutate_json(metadata, rng)
        count = rng.choice([count, count + 1, max(count - 1, 0)]) if rng.random() < 0.1 else count
        try:
            metadata_bytes = json.dumps(metadata).encode()
        except (TypeError, ValueError):
            metadata_bytes = b"{}"
    else:
        metadata_bytes = json.dumps(metadata).encode()
        if choice < 0.6:
            metadata_bytes = _mutate_bytes(metadata_bytes, rng)
        else:
            items_data = _mutate_bytes(items_data, rng)
    return _assemble(metadata_bytes, items_data, count, compressed)


def cases(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` deterministic fuzz cases, each (how it was made, the bytes)."""
    for index in range(count):
        choice = rng.random()
        seed = rng.choice(CORPUS)
        if choice < 0.35:
            yield f"byte mutation #{index}", _mutate_bytes(seed, rng)
        elif choice < 0.8:
            yield f"structured mutation #{index}", _structured(seed, rng)
        elif choice < 0.9:
            length = rng.randint(0, 300)
            yield f"random bytes #{index}", rng.randbytes(length)
        else:
            body = rng.randbytes(rng.randint(0, 200))
            header = raw_header(payload_len=len(body), batch_count=rng.randrange(256))
            yield f"random payload #{index}", header + body


# --- the tests -----------------------------------------------------------------------------------


def test_corpus_is_valid() -> None:
    for data in CORPUS:
        _check_batch(data)
    assert len(COMPRESSED) < len(UNCOMPRESSED)


@pytest.mark.parametrize("data", [UNCOMPRESSED, COMPRESSED], ids=["uncompressed", "compressed"])
def test_every_truncation(data: bytes) -> None:
    for end in range(len(data)):
        with pytest.raises(ProtocolError):
            MemorySyncBatch.unpack(data[:end])
        _decode_all(data[:end], f"truncation at {end}")


def test_fuzz_bounded() -> None:
    for what, data in cases(random.Random(SEED), 3000):
        _decode_all(data, what)


@pytest.mark.slow
def test_fuzz_long() -> None:
    count = int(os.environ.get("MEMREPL_FUZZ_CASES", "200000"))
    for what, data in cases(random.Random(SEED + 1), count):
        _decode_all(data, what)
