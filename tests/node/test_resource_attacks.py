"""What a peer can make a node spend, against real ``memrepl serve`` processes.

An admitted peer can always send data; these attacks cost the node far more than they cost the
attacker, and each is now bounded by the node:

- digest queries that read or send rows (anti-entropy ``entries`` and ``fetch``) piled up in
  parallel, each reading the whole tier into memory: answered one at a time per peer;
"""

from __future__ import annotations

import asyncio
import time

import memrepl
from memrepl.storage.digests import BUCKETS
from memrepl.storage.items import LocalWrite

from .helpers import KEY, Processes
from .hostile_tcp import HostilePeer

FAST = ("--sync-interval", "0.5", "--high-delay", "0.1", "--ack-timeout", "10")


def test_digest_queries_that_read_rows_are_answered_one_at_a_time(processes: Processes) -> None:
    """Each ``entries`` query reads every id of the tier and holds the asked buckets' rows; a
    peer used to be able to keep 64 of them running at once per connection (8 on a 200,000-row
    tier took the node from 77 MB to 442 MB, and 20 s of CPU). While one of a peer's queries is
    answered -- here a ``fetch`` whose repair batch mallory leaves unacknowledged -- the next is
    refused ``query-busy``; once the first is done, the next is answered."""
    v = processes.node("v", *FAST)
    with memrepl.open(v.db, node_id="v") as store:
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(20)])
    v.start()
    every_bucket = list(range(BUCKETS))

    async def attack() -> None:
        mallory = await HostilePeer.connect(v.port, KEY.encode(), node_id="mallory", node="v")
        try:
            mallory.hold_repairs = True
            ids = [f"e{i}" for i in range(5)]
            fetch = asyncio.create_task(
                mallory.ask({"id": "f1", "op": "fetch", "tier": 2, "ids": ids})
            )
            deadline = time.monotonic() + 20
            while not mallory.held:
                assert time.monotonic() < deadline, "v never sent the fetched items"
                await asyncio.sleep(0.02)
            kind, answer = await mallory.ask(
                {"id": "q1", "op": "entries", "tier": 2, "buckets": every_bucket}
            )
            assert (kind, answer["code"]) == ("NACK", "query-busy"), answer
            await mallory.ack_held()
            kind, answer = await fetch
            assert (kind, answer["sent"]) == ("MEMORY_RESPONSE", 5), answer
            kind, answer = await mallory.ask(
                {"id": "q2", "op": "entries", "tier": 2, "buckets": every_bucket}
            )
            assert kind == "MEMORY_RESPONSE", answer
            assert len(answer["entries"]) == 20
        finally:
            await mallory.close()

    asyncio.run(attack())
    assert "refused digest query 'q1' from mallory" in v.log_text()
    assert "Traceback" not in v.log_text()
    assert v.stop() == 0
