"""A receiver applying a stream of packed batches, to be killed with SIGKILL by test_crash_safety.

Run as ``python crash_worker.py DB NODE_ID BATCH_FILE...``. It opens the store, registers every
tier with a ``MemorySyncManager`` (no mesh), unpacks every batch, prints ``ready``, then applies
the batches in the order given with ``apply_sync_batch``, printing ``applied K`` after each
commit (K is the position of the batch in the argument list), and ``done`` at the end. Every line
is flushed at once, so the parent knows which commits returned before it killed us.

Not a test module (pytest only collects ``test_*.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import memrepl
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.manager import MemorySyncManager


def main(argv: list[str]) -> int:
    db, node_id, *files = argv
    batches = [MemorySyncBatch.unpack(Path(name).read_bytes()) for name in files]
    store = memrepl.open(db, node_id=node_id)
    manager = MemorySyncManager(node_id=node_id)
    for tier in MemoryTier:
        manager.register_memory_tier(tier, store.tier(tier))
    print("ready", flush=True)
    for index, batch in enumerate(batches):
        manager.apply_sync_batch(batch)
        print(f"applied {index}", flush=True)
    store.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
