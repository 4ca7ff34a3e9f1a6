"""Consolidation of 10,000 episodic events into the semantic tier, in items/s.

Run: ``.venv/bin/python bench/policy_bench.py`` (``make bench`` runs every bench script).

Setup (not timed): a fresh store file; 10,000 events in 1,000 closed episodes of 10 events,
each event with importance 0.8, the first one of each episode naming 4 entities (drawn from a
pool of 2,000 people and places) and 3 relations among them; written in one transaction.

Timed: one ``memrepl.policy.consolidate`` run with the balanced preset, the access threshold set
to 0 (the bench measures consolidation, not 2,000 ``get_by_id`` calls): reading every event,
summarizing the episodes, and writing the concepts, relations and markers in one transaction.
Reported: events consolidated per second, and the semantic items written.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import memrepl
from memrepl.policy import PolicyConfig, consolidate
from memrepl.storage.items import LocalWrite


def events(count: int, per_episode: int, pool: int, seed: int) -> list[LocalWrite]:
    rng = random.Random(seed)
    start = time.time_ns() - 10**12
    writes = []
    for index in range(count):
        episode, position = divmod(index, per_episode)
        content: dict[str, Any] = {
            "episode_id": f"ep{episode}",
            "occurred_at_ns": start + index,
            "importance": 0.8,
            "text": f"event {index} of episode {episode}",
        }
        if position == 0:
            names = [f"entity{rng.randrange(pool)}" for _ in range(4)]
            content["entities"] = [
                {"name": n, "type": "place" if int(n[6:]) % 2 else "person"} for n in names
            ]
            content["relations"] = [
                {"source": names[i], "relation": "related_to", "target": names[i + 1]}
                for i in range(3)
            ]
        if position == per_episode - 1:
            content["closed"] = True
        writes.append(LocalWrite.add(f"ev{index}", content))
    return writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--per-episode", type=int, default=10)
    parser.add_argument("--pool", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = memrepl.open(Path(tmp) / "bench.db", node_id="bench")
        try:
            store.episodic.write_many(events(args.events, args.per_episode, args.pool, seed=1))
            config = PolicyConfig.preset("balanced", consolidate_min_accesses=0)
            began = time.perf_counter()
            result = consolidate(store, config)
            elapsed = time.perf_counter() - began
            written = len(result.concepts) + len(result.relations) + len(result.consolidated)
            print(
                f"consolidated {args.events:,} events in {len(result.consolidated):,} episodes "
                f"-> {len(result.concepts):,} concepts, {len(result.relations):,} relations "
                f"({written:,} semantic items with markers) in {elapsed:.2f} s: "
                f"{args.events / elapsed:,.0f} events/s"
            )
            assert len(result.consolidated) == args.events // args.per_episode
        finally:
            store.close()


if __name__ == "__main__":
    main()
