"""The attacks of issue 12 by an admitted peer, against real ``memrepl serve`` processes.

The attacker is a key holder on the real wire (hostile_tcp.HostilePeer: the mesh's handshake and
frames) that answers the node's rounds honestly. Each attack is refused or harmless, the honest
nodes keep converging, and the refusal is in the node's log and in its ``memrepl status``:

- erase by empty snapshot: two empty batches per tier marked as a snapshot (start, then final)
  used to make the receiver forget every row the sender had acknowledged;
- the same, after luring the node into asking for a snapshot with a purge horizon of "now";
- stall by huge cursor: a cursor of 2**63 - 1 stored as the sender's inbound cursor, and above
  it an ``OverflowError`` traceback in the apply path with no answer at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import memrepl
from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.protocol.enums import MemoryTier, SyncOperation, SyncPriority
from memrepl.protocol.item import MemorySyncItem
from memrepl.storage.items import LocalWrite

from .helpers import KEY, Processes, converged, count, rows
from .hostile_tcp import HostilePeer

FAST = ("--sync-interval", "0.5", "--high-delay", "0.1", "--ack-timeout", "5")
U63 = 2**63 - 1


def status(db: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "memrepl", "status", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def hand_made(target: str, tier: MemoryTier, **fields: Any) -> MemorySyncBatch:
    return MemorySyncBatch(
        batch_id=f"evil-{time.monotonic_ns()}",
        source_node=fields.pop("source", "mallory"),
        target_node=target,
        tier=tier,
        items=fields.pop("items", []),
        **fields,
    )


def empty_snapshot(target: str, tier: MemoryTier, snapshot_id: str) -> list[MemorySyncBatch]:
    now = time.time_ns()
    mark = SnapshotMark(snapshot_id)
    return [
        hand_made(target, tier, snapshot=mark),
        hand_made(
            target,
            tier,
            snapshot=dataclasses.replace(mark, final=True),
            cursor=now,
            purge_horizon=now,
        ),
    ]


def victim_with_rows(processes: Processes) -> Any:
    """v, with 60 working and 10 episodic items (the issue's numbers), serving."""
    v = processes.node("v", *FAST)
    with memrepl.open(v.db, node_id="v") as store:
        store.working.write_many([LocalWrite.add(f"w{i}", {"i": i}) for i in range(60)])
        store.episodic.write_many([LocalWrite.add(f"e{i}", {"i": i}) for i in range(10)])
    return v.start()


async def honest_mallory(port: int) -> HostilePeer:
    """Mallory connected, and every row of v acknowledged by it (v's rounds answered)."""
    mallory = await HostilePeer.connect(port, KEY.encode(), node_id="mallory", node="v")
    deadline = time.monotonic() + 20
    while mallory.items_received() < 70:
        assert time.monotonic() < deadline, "v never sent its rows to mallory"
        await asyncio.sleep(0.05)
    return mallory


def test_erase_by_empty_snapshot_is_refused(processes: Processes) -> None:
    v = victim_with_rows(processes)

    async def attack() -> list[tuple[str, dict[str, Any]]]:
        mallory = await honest_mallory(v.port)
        try:
            return [
                await mallory.send(batch)
                for tier in MemoryTier
                for batch in empty_snapshot("v", tier, "erase")
            ]
        finally:
            await mallory.close()

    answers = asyncio.run(attack())
    assert [(kind, a["code"]) for kind, a in answers] == [("NACK", "unrequested-snapshot")] * 6
    assert (count(v.db, MemoryTier.WORKING), count(v.db, MemoryTier.EPISODIC)) == (60, 10)
    assert rows(v.db, "SELECT count(*) FROM forgotten_items") == [(0,)]
    assert v.log_text().count("which this node did not request") == 6
    refused = [r for r in status(v.db)["refusals"] if r["peer_id"] == "mallory"]
    assert sorted((r["tier"], r["code"], r["count"]) for r in refused) == [
        (tier, "unrequested-snapshot", 2) for tier in (1, 2, 3)
    ]
    assert v.stop() == 0


def test_a_lured_snapshot_cannot_erase_either(processes: Processes) -> None:
    """Mallory's probe claims a purge horizon of "now": v asks for a snapshot, mallory sends an
    empty one. Nothing v holds is old enough to be explained by a horizon (v's grace is the
    default 24 h): v keeps every row, records nothing as forgotten, and sends it all back."""
    v = victim_with_rows(processes)

    async def attack() -> tuple[list[str], int]:
        mallory = await honest_mallory(v.port)
        try:
            probe = hand_made("v", MemoryTier.WORKING, purge_horizon=time.time_ns())
            assert (await mallory.send(probe))[0] == "ACK"
            deadline = time.monotonic() + 10
            while not mallory.replicate_requests():
                assert time.monotonic() < deadline, "v never asked for the snapshot"
                await asyncio.sleep(0.02)
            (request,) = mallory.replicate_requests()
            before = mallory.items_received()
            kinds = [
                (await mallory.send(batch))[0]
                for batch in empty_snapshot("v", MemoryTier.WORKING, request.batch_id)
            ]
            deadline = time.monotonic() + 20
            while mallory.items_received() < before + 60:
                assert time.monotonic() < deadline, "v did not send its rows back"
                await asyncio.sleep(0.05)
            return kinds, mallory.items_received() - before
        finally:
            await mallory.close()

    kinds, sent_back = asyncio.run(attack())
    assert kinds == ["ACK", "ACK"]
    assert sent_back >= 60
    assert count(v.db, MemoryTier.WORKING) == 60
    assert rows(v.db, "SELECT count(*) FROM forgotten_items") == [(0,)]
    assert "lacked 60 items this node had: 0 forgotten" in v.log_text()
    assert v.stop() == 0


def item(item_id: str) -> MemorySyncItem:
    return MemorySyncItem(
        item_id=item_id,
        timestamp_ns=time.time_ns(),
        tier=MemoryTier.WORKING,
        operation=SyncOperation.INSERT,
        payload=b'{"stall": true}',
    )


def test_stall_by_huge_cursor_is_refused_and_the_honest_node_keeps_converging(
    processes: Processes,
) -> None:
    a = processes.node("a", *FAST).start()
    h = processes.node("h", *FAST).start("--peer", a.address)

    async def attack() -> list[tuple[str, str]]:
        mallory = await HostilePeer.connect(a.port, KEY.encode(), node_id="mallory", node="a")
        try:
            answers = []
            for cursor in (U63, 2**63, 2**64 - 1):
                batch = hand_made("a", MemoryTier.WORKING, items=[item("x")], cursor=cursor)
                kind, answer = await mallory.send(batch)
                assert str(cursor) in answer["reason"]
                answers.append((kind, answer["code"]))
            # Another node's cursor cannot be moved from this connection at all.
            claimed = hand_made("a", MemoryTier.WORKING, source="h", cursor=U63)
            kind, answer = await mallory.send(claimed)
            answers.append((kind, answer["code"]))
            return answers
        finally:
            await mallory.close()

    assert asyncio.run(attack()) == [
        ("NACK", "clock-skew"),
        ("NACK", "bad-cursor"),
        ("NACK", "bad-cursor"),
        ("NACK", "wrong-source"),
    ]
    assert rows(a.db, "SELECT count(*) FROM working_items WHERE item_id = 'x'") == [(0,)]
    # h's NORMAL and HIGH writes still arrive, and a's cursor for h is a sane stamp.
    with memrepl.open(h.db, node_id="h") as store:
        store.working.write_many(
            [LocalWrite.add(f"h{i}", {"i": i}, SyncPriority(i % 4)) for i in range(40)]
        )
    processes.wait(converged([a.db, h.db]), 20, "h's writes reach a")
    assert count(a.db, MemoryTier.WORKING) == 40
    ((cursor,),) = rows(a.db, "SELECT max(applied_cursor) FROM inbound_cursors WHERE peer_id = 'h'")
    assert cursor <= time.time_ns() + 60 * 10**9
    assert rows(a.db, "SELECT count(*) FROM inbound_cursors WHERE peer_id = 'mallory'") == [(0,)]
    assert "Traceback" not in a.log_text()
    refused = {
        (r["code"], r["count"]) for r in status(a.db)["refusals"] if r["peer_id"] == "mallory"
    }
    assert refused == {("clock-skew", 1), ("bad-cursor", 2), ("wrong-source", 1)}
    assert (a.stop(), h.stop()) == (0, 0)
