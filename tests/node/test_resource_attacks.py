"""What a peer can make a node spend, against real ``memrepl serve`` processes.

An admitted peer can always send data; these attacks cost the node far more than they cost the
attacker, and each is now bounded by the node:

- digest queries that read or send rows (anti-entropy ``entries`` and ``fetch``) piled up in
  parallel, each reading the whole tier into memory: answered one at a time per peer;
- digest answers claiming every bucket full and listing nothing, which made the checking node
  query (and read its own tier for) each of the 16,384 buckets in turn, every check: the check
  ends at the first answer that lists far fewer rows than the peer's digests counted;
- a snapshot lured again and again (a probe claiming a purge horizon above the node's cursor,
  then an empty snapshot), each making the node re-stamp -- and re-send to every peer --
  every row the peer had seen: after one, the node asks that peer again only after a back-off;
- a stranger with many addresses holding handshakes open until their timeout (8 per address
  were allowed, with no limit on the addresses) used up the node's file descriptors: accept()
  failed in a loop, logging a traceback each time, and the node could neither take a
  ``memrepl sync`` nor dial a peer. The node now runs at most ``max_handshakes`` at once;
- NACKs under a new made-up code every time, each a new row of ``sync_refusals`` (and a line
  of ``memrepl status``): a peer has at most 32 codes per tier and direction, the rest are
  counted under ``other``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from typing import Any

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.digests import BUCKETS, GROUP_BUCKETS, GROUPS
from memrepl.storage.items import LocalWrite

from .helpers import KEY, Processes, Serve, count, memrepl_sync, rows, wait_until
from .hostile_tcp import HostilePeer
from .test_attacks import empty_snapshot, hand_made

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


def full_buckets_listing_nothing(query: dict[str, Any]) -> dict[str, Any]:
    """Mallory's answers: its episodic tier differs, every bucket holds 20,001 rows -- and an
    entries query finds none of them."""
    full = [7, 20_001]
    return {
        "summary": {"tiers": {"2": [7, 20_001 * BUCKETS]}},
        "groups": {"nodes": [full] * GROUPS},
        "leaves": {"nodes": {str(g): [full] * GROUP_BUCKETS for g in query.get("groups", [])}},
        "entries": {"entries": [], "horizon": 0, "room": None},
    }[query["op"]]


def test_a_check_ends_when_the_peers_rows_are_not_what_its_digests_count(
    processes: Processes,
) -> None:
    v = processes.node("v", *FAST, "--antientropy-interval", "0.5")
    with memrepl.open(v.db, node_id="v") as store:
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(20)])
    v.start()

    def ended() -> int:
        return v.log_text().count("anti-entropy with mallory: ")

    def entries_asked(mallory: HostilePeer) -> int:
        return sum(q["op"] == "entries" for q in mallory.queries)

    async def attack() -> tuple[int, int]:
        mallory = await HostilePeer.connect(v.port, KEY.encode(), node_id="mallory", node="v")
        mallory.answer_queries = full_buckets_listing_nothing
        try:
            deadline = time.monotonic() + 30
            while ended() < 2 and entries_asked(mallory) < 50:
                assert time.monotonic() < deadline, "v never checked with mallory"
                await asyncio.sleep(0.05)
            return ended(), entries_asked(mallory)
        finally:
            await mallory.close()

    checks, asked = asyncio.run(attack())
    # One entries query per check (one more may be on its way in a check not ended yet).
    assert checks >= 2 and asked <= checks + 1, (checks, asked)
    assert "bad-digest-answer: the digests of 'mallory' count" in v.log_text()
    assert "Traceback" not in v.log_text()
    assert v.stop() == 0


def test_a_peer_cannot_lure_snapshot_after_snapshot(processes: Processes) -> None:
    """Three small messages (a probe with a purge horizon of "now", then an empty snapshot of
    two batches) made v re-stamp and send back all 300 rows, and mallory could repeat it back
    to back (3,000 rows re-sent 5 times in 3.5 s in the review). The first lure still works --
    v cannot tell it from an honest snapshot -- the second finds v not asking."""
    v = processes.node("v", *FAST)
    with memrepl.open(v.db, node_id="v") as store:
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(300)])
    v.start()

    async def lure(mallory: HostilePeer) -> None:
        probe = hand_made("v", MemoryTier.EPISODIC, purge_horizon=time.time_ns())
        assert (await mallory.send(probe))[0] == "ACK"

    async def attack() -> tuple[int, int]:
        mallory = await HostilePeer.connect(v.port, KEY.encode(), node_id="mallory", node="v")
        try:
            deadline = time.monotonic() + 20
            while mallory.items_received() < 300:
                assert time.monotonic() < deadline, "v never sent its rows to mallory"
                await asyncio.sleep(0.05)
            await lure(mallory)
            while not mallory.replicate_requests():
                assert time.monotonic() < deadline, "v never asked for the first snapshot"
                await asyncio.sleep(0.02)
            (request,) = mallory.replicate_requests()
            for batch in empty_snapshot("v", MemoryTier.EPISODIC, request.batch_id):
                assert (await mallory.send(batch))[0] == "ACK"
            while mallory.items_received() < 600:
                assert time.monotonic() < deadline, "v did not send its rows back"
                await asyncio.sleep(0.05)
            await lure(mallory)
            while "not asking for another one" not in v.log_text():
                assert time.monotonic() < deadline, "v did not decline the second lure"
                await asyncio.sleep(0.02)
            return len(mallory.replicate_requests()), mallory.items_received()
        finally:
            await mallory.close()

    requests, received = asyncio.run(attack())
    assert (requests, received) == (1, 600)
    (wait,) = re.findall(r"not asking for another one for (\d+) s", v.log_text())
    assert 280 <= int(wait) <= 300
    assert "Traceback" not in v.log_text()
    assert v.stop() == 0


class HandshakeFlood:
    """Strangers on 127.0.0.2 and on (8 connections each, the per-address limit) that connect
    to a port and never say a word, until :meth:`stop`."""

    def __init__(self, port: int, addresses: int) -> None:
        self.port = port
        self.addresses = addresses
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    def start(self) -> HandshakeFlood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        writers = []
        for address in range(2, 2 + self.addresses):
            for _ in range(8):
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(f"127.0.0.{address}", 0)
                )
                writers.append(writer)
                self.opened += 1
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        for writer in writers:
            writer.close()


def test_strangers_holding_handshakes_open_cannot_starve_the_node(
    processes: Processes,
) -> None:
    g = processes.node("g", *FAST).start()
    config = processes.directory / "f.toml"
    # A long handshake timeout keeps the strangers' connections in the node for the whole test.
    config.write_text("[mesh]\nmax_handshakes = 16\nhandshake_timeout_s = 120\n")
    f = processes.node("f", "--sync-interval", "600", "--config", str(config))
    # A node's own use is about 16 files, and it may accept up to 100 connections at once
    # before it looks at them; 240 strangers would exhaust 200.
    f.open_files = 200
    with memrepl.open(f.db, node_id="f") as store:
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(50)])
    f.start()
    flood = HandshakeFlood(f.port, addresses=30).start()
    try:
        wait_until(lambda: flood.opened == 240, 30, "the strangers connect")
        # The node still takes `memrepl sync` on its control socket, and dials the peer.
        done = memrepl_sync("--db", f.db, "--peer", g.address, "--tier", "episodic", "--json")
        assert done.returncode == 0, done.stderr + f.log_text()
        assert count(g.db, MemoryTier.EPISODIC) == 50
    finally:
        flood.stop()
    log = f.log_text()
    assert "Too many open files" not in log
    assert "16 handshakes in progress, the most this node runs at once" in log
    assert (f.stop(), g.stop()) == (0, 0)


def test_a_peer_cannot_grow_the_refusal_record_with_made_up_codes(processes: Processes) -> None:
    v = processes.node("v", "--sync-interval", "0.1", "--ack-timeout", "10").start()
    made_up = itertools.count()

    def refuse(batch: Any) -> tuple[str, str]:
        return f"made-up-{next(made_up)}", "no reason"

    async def attack() -> None:
        mallory = await HostilePeer.connect(v.port, KEY.encode(), node_id="mallory", node="v")
        mallory.nack_batches = refuse
        try:
            deadline = time.monotonic() + 60
            while refused(v) < 110:
                assert time.monotonic() < deadline, "v did not send mallory enough batches"
                await asyncio.sleep(0.1)
        finally:
            await mallory.close()

    asyncio.run(attack())
    per_tier = rows(
        v.db,
        "SELECT tier, count(*), sum(code = 'other') FROM sync_refusals "
        "WHERE peer_id = 'mallory' AND direction = 'outbound' GROUP BY tier",
    )
    assert per_tier and all(codes <= 33 for _, codes, _ in per_tier), per_tier
    assert any(other for _, _, other in per_tier), per_tier  # some tier went past 32 codes
    ((reason,),) = rows(v.db, "SELECT reason FROM sync_refusals WHERE code = 'other' LIMIT 1") or [
        ("",)
    ]
    assert reason.startswith("made-up-"), reason
    assert v.stop() == 0


def refused(node: Serve) -> int:
    """The outbound refusals ``node`` recorded for mallory."""
    ((total,),) = rows(
        node.db,
        "SELECT coalesce(sum(count), 0) FROM sync_refusals "
        "WHERE peer_id = 'mallory' AND direction = 'outbound'",
    )
    return int(total)
