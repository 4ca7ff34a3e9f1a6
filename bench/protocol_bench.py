"""Throughput of the MEMSHADOW v2 codec against a bare ``struct`` baseline.

Run: ``.venv/bin/python bench/protocol_bench.py`` (``make bench`` runs every bench script).

It packs and unpacks 100,000 items in 100-item batches, with realistic JSON payloads of about
100-200 bytes, and prints items per second. The baseline, measured in the same run on the same
items, is the least any codec of this layout must do: for each item, ``struct``-pack its 48-byte
header (encoding the id) and concatenate it with the payload; then ``struct``-unpack every header
back and slice out its payload (decoding the id). No validation, no objects, no metadata.

The codec is measured in four configurations: with and without memrepl's per-item version info
(what the sync layer sends), and with compression off or at the default 1 KB threshold (100 such
items are ~20 KB, so the default compresses every batch, which the baseline does not do). Each
figure is the best of several runs, timed in CPU time of this process (``time.process_time``)
so that other load on the machine skews it less. The goal is a ratio of at least 0.5 for the
configuration comparable to the baseline: no versions, no compression.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence

from memrepl.protocol import (
    DEFAULT_COMPRESS_THRESHOLD_BYTES,
    MAX_ITEMS_DATA_BYTES,
    ItemVersionInfo,
    MemorySyncBatch,
    MemorySyncItem,
    MemoryTier,
    SyncOperation,
    SyncPriority,
)

ITEMS = 100_000
BATCH_SIZE = 100
T0 = 1_700_000_000_000_000_000
NODES = ("node-001", "node-002", "node-003")
WORDS = ("memory", "agent", "task", "user", "context", "recall", "plan", "goal", "note", "fact")

_ITEM = struct.Struct("!32sQBBHH2x")


def make_items(count: int, *, versions: bool, rng: random.Random) -> list[MemorySyncItem]:
    """Items as the sync layer builds them: hex ids, JSON content, a version from one node."""
    items = []
    for n in range(count):
        stamp = T0 + n * 1000
        origin = NODES[n % len(NODES)]
        content = {
            "content": " ".join(rng.choices(WORDS, k=rng.randint(6, 18))),
            "importance": round(rng.random(), 3),
            "tags": rng.sample(WORDS, 2),
            "source": "agent",
        }
        version = None
        if versions:
            version = ItemVersionInfo(
                origin_node=origin,
                causal_context={origin: stamp, NODES[(n + 1) % len(NODES)]: stamp - 5000},
                whole_timestamp_ns=stamp,
                whole_origin=origin,
                whole_deleted=False,
                field_clocks={},
            )
        items.append(
            MemorySyncItem(
                item_id=f"{rng.getrandbits(128):032x}",
                timestamp_ns=stamp,
                tier=MemoryTier.WORKING,
                operation=SyncOperation.UPDATE if n % 3 else SyncOperation.INSERT,
                priority=SyncPriority.NORMAL,
                payload=json.dumps(content).encode(),
                version=version,
            )
        )
    return items


def make_batches(items: Sequence[MemorySyncItem]) -> list[MemorySyncBatch]:
    return [
        MemorySyncBatch(
            batch_id=f"batch-{start // BATCH_SIZE:06d}",
            source_node="node-001",
            target_node="node-002",
            tier=MemoryTier.WORKING,
            items=items[start : start + BATCH_SIZE],
            sync_vector={"node-002": T0, "node-003": T0 - 1},
            created_ns=T0,
            cursor=T0 + start if items[start].version is not None else None,
        )
        for start in range(0, len(items), BATCH_SIZE)
    ]


def codec_round(batches: Sequence[MemorySyncBatch], threshold: int) -> Callable[[], int]:
    def run() -> int:
        count = 0
        for batch in batches:
            count += len(MemorySyncBatch.unpack(batch.pack(compress_threshold=threshold)).items)
        return count

    return run


def baseline_round(batches: Sequence[MemorySyncBatch]) -> Callable[[], int]:
    fields = [
        [
            (i.item_id, i.timestamp_ns, int(i.tier), int(i.operation), int(i.priority), i.payload)
            for i in batch.items
        ]
        for batch in batches
    ]
    pack = _ITEM.pack
    unpack_from = _ITEM.unpack_from
    size = _ITEM.size

    def run() -> int:
        count = 0
        for rows in fields:
            parts = []
            for item_id, stamp, tier, operation, priority, payload in rows:
                parts.append(pack(item_id.encode(), stamp, tier, operation, priority, len(payload)))
                parts.append(payload)
            data = b"".join(parts)
            out = []
            offset, end = 0, len(data)
            while offset < end:
                raw_id, stamp, tier, operation, priority, length = unpack_from(data, offset)
                start = offset + size
                offset = start + length
                out.append(
                    (
                        raw_id.rstrip(b"\0").decode(),
                        stamp,
                        tier,
                        operation,
                        priority,
                        data[start:offset],
                    )
                )
            count += len(out)
        return count

    return run


def best_of(run: Callable[[], int], repeats: int) -> float:
    """The least CPU time (seconds) of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        done = run()
        elapsed = time.process_time() - start
        assert done == ITEMS, done
        best = min(best, elapsed)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="best of N runs (default 5)")
    args = parser.parse_args(argv)

    rng = random.Random(7)
    plain = make_batches(make_items(ITEMS, versions=False, rng=rng))
    versioned = make_batches(make_items(ITEMS, versions=True, rng=rng))
    # The codec must give back what it was given before its speed means anything.
    for batch in (plain[0], versioned[0]):
        assert MemorySyncBatch.unpack(batch.pack(compress_threshold=MAX_ITEMS_DATA_BYTES)) == batch
    payload_bytes = sum(len(i.payload) for b in plain for i in b.items)
    print(
        f"protocol bench: {ITEMS:,} items in {len(plain):,} batches of {BATCH_SIZE}, "
        f"payloads {payload_bytes / ITEMS:.0f} bytes on average, best of {args.repeats}"
    )

    baseline = ITEMS / best_of(baseline_round(plain), args.repeats)
    print(f"{'bare struct baseline':<44} {baseline:>12,.0f} items/s")
    never, default = MAX_ITEMS_DATA_BYTES, DEFAULT_COMPRESS_THRESHOLD_BYTES
    for label, batches, threshold in (
        ("codec, no versions, no compression", plain, never),
        ("codec, no versions, gzip > 1 KB (default)", plain, default),
        ("codec, versions, no compression", versioned, never),
        ("codec, versions, gzip > 1 KB (default)", versioned, default),
    ):
        rate = ITEMS / best_of(codec_round(batches, threshold), args.repeats)
        print(f"{label:<44} {rate:>12,.0f} items/s   ratio {rate / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
