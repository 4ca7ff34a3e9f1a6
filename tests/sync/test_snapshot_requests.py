"""Snapshots happen only when the receiver asks, and forget only what the sender's horizon explains.

memrepl.sync.snapshots: a node accepts snapshot batches only inside a snapshot it requested from
that peer; a restarted receiver refuses the rest of a snapshot and asks again; at the end an item
the sender lacks is forgotten only if its latest write is at or before the sender's purge horizon
(and older than the receiver's own grace), recorded whole in ``forgotten_items``, and everything
else the sender lacks is kept and sent back to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest
from sqlalchemy import select

from memrepl.errors import UnrequestedSnapshotError
from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite
from memrepl.storage.store import Store
from memrepl.sync import tombstones, vectors
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.snapshots import REASK_BASE_S, REASK_CAP_S, SnapshotRequests, forget_bound

from ..files import by_hand, dump, location_of, query
from .conftest import Cluster
from .hostile import RawPeer, batch, empty_snapshot, v2_insert

TIER = MemoryTier.EPISODIC


def live(store: Store, tier: MemoryTier = TIER) -> dict[str, str]:
    """``{item_id: content text}`` of the live items of a tier."""
    table = store.tier(tier).spec.table
    query = select(table.c.item_id, table.c.content).where(table.c.deleted.is_(False))
    with store.read() as conn:
        return {item_id: content for item_id, content in conn.execute(query)}


def inbound(store: Store, peer: str, tier: MemoryTier = TIER) -> int:
    with store.read() as conn:
        return vectors.applied_cursor(conn, tier, peer)


def write(store: Store, prefix: str, n: int, tier: MemoryTier = TIER) -> None:
    store.tier(tier).write_many(
        [LocalWrite.add(f"{prefix}-{i}", {"by": prefix, "i": i}) for i in range(n)]
    )


async def purged(cluster: Cluster) -> tuple[MemorySyncManager, MemorySyncManager, int]:
    """a (grace 0) sent b 10 items, then forgot b, deleted old-0..4 and collected the tombstones:
    b is below a's purge horizon. Returns a, b and the horizon."""
    a = cluster.add("a", tombstone_grace_s=0, max_batch_items=3)
    b = cluster.add("b", tombstone_grace_s=0)
    write(cluster.stores["a"], "old", 10)
    assert (await a.sync_with_peer("b", TIER)).ok
    a.forget_peer(TIER, "b")
    cluster.stores["a"].episodic.write_many([LocalWrite.delete(f"old-{i}") for i in range(5)])
    assert a.purge_tombstones(TIER) == 5
    with cluster.stores["a"].read() as conn:
        horizon = tombstones.purged_through(conn, TIER)
    assert inbound(cluster.stores["b"], "a") < horizon
    return a, b, horizon


def snapshot_batches(a: MemorySyncManager, store: Store, snapshot_id: str) -> list[MemorySyncBatch]:
    """What a sends for snapshot ``snapshot_id`` to b: the opening, the data, the final batch."""
    mark = SnapshotMark(snapshot_id)
    made = [batch("a", "b", tier=TIER, snapshot=mark)]
    since = 0
    while True:
        data = a.create_delta_batch(TIER, "b", since_timestamp=since, snapshot=True)
        assert data.cursor is not None
        if not data.items and data.cursor <= since:
            with store.read() as conn:
                horizon = tombstones.purged_through(conn, TIER)
            final = dataclasses.replace(mark, final=True)
            made.append(dataclasses.replace(data, snapshot=final, purge_horizon=horizon))
            return made
        made.append(dataclasses.replace(data, snapshot=mark))
        since = data.cursor


def test_snapshot_batches_nobody_asked_for_are_refused_whole(cluster: Cluster) -> None:
    """The erase attack of issue 12: two empty marked batches used to empty the receiver."""
    a, b = cluster.add("a"), cluster.add("b")
    write(cluster.stores["a"], "a", 20)
    b.apply_sync_batch(a.create_delta_batch(TIER, "b"))
    path = location_of(cluster.stores["b"])
    before = dump(path, skip_refusals=True)
    for hostile in empty_snapshot("a", "b", "evil", horizon=time.time_ns(), tier=TIER):
        with pytest.raises(UnrequestedSnapshotError) as caught:
            b.apply_sync_batch(hostile)
        assert caught.value.code == "unrequested-snapshot"
        assert caught.value.snapshot_id == "evil"
    assert dump(path, skip_refusals=True) == before
    assert len(live(cluster.stores["b"])) == 20


async def test_a_peer_below_the_horizon_asks_and_gets_the_snapshot(cluster: Cluster) -> None:
    a, b, _ = await purged(cluster)
    result = await a.sync_with_peer("b", TIER)
    assert result.ok and result.snapshot, result
    assert live(cluster.stores["b"]) == live(cluster.stores["a"])
    # b asked (a REPLICATE request), and nothing else was asked or is still open.
    assert len(b.snapshot_requests) == 0
    forgotten = query(
        location_of(cluster.stores["b"]),
        "SELECT item_id, peer_id, deleted, content FROM forgotten_items ORDER BY item_id",
    )
    assert [(i, p, d, json.loads(c)) for i, p, d, c in forgotten] == [
        (f"old-{i}", "a", 0, {"by": "old", "i": i}) for i in range(5)
    ]
    # Up to date now: the next round is an ordinary, empty one.
    again = await a.sync_with_peer("b", TIER)
    assert (again.ok, again.snapshot, again.items) == (True, False, 0)


async def test_a_restarted_receiver_refuses_the_rest_and_asks_again(cluster: Cluster) -> None:
    a, b, _ = await purged(cluster)
    before = inbound(cluster.stores["b"], "a")
    acked = b.get_sync_vector(TIER).get("a", 0)
    b.snapshot_requests.open(TIER, "a", "snap-1", acked=acked, now_ns=time.time_ns())
    sent = snapshot_batches(a, cluster.stores["a"], "snap-1")
    assert len(sent) >= 4
    for first in sent[:2]:
        b.apply_sync_batch(first)
    # Snapshot batches do not move the inbound cursor before the final one.
    assert inbound(cluster.stores["b"], "a") == before
    b = cluster.reopen("b", tombstone_grace_s=0)
    for rest in sent[2:]:
        with pytest.raises(UnrequestedSnapshotError):
            b.apply_sync_batch(rest)
    assert inbound(cluster.stores["b"], "a") == before
    assert query(location_of(cluster.stores["b"]), "SELECT count(*) FROM forgotten_items") == [(0,)]
    assert len(live(cluster.stores["b"])) == 10
    # Still below a's horizon: a's next round tells b, b asks for a whole new snapshot.
    result = await a.sync_with_peer("b", TIER)
    assert result.ok and result.snapshot, result
    assert live(cluster.stores["b"]) == live(cluster.stores["a"])


async def test_what_the_horizon_does_not_explain_is_kept_and_sent_back(cluster: Cluster) -> None:
    """a lost an item written after its horizon (as if restored from an old copy): b keeps it,
    although it came from a, and gives it back; b's own item stays too."""
    a, b, horizon = await purged(cluster)
    store_a, store_b = cluster.stores["a"], cluster.stores["b"]
    store_a.episodic.add("lost", {"by": "a", "after": "the purge"})
    # Delivered without a cursor (as an URGENT push is), so b is still below a's horizon.
    delta = a.create_delta_batch(TIER, "b", since_timestamp=horizon)
    b.apply_sync_batch(dataclasses.replace(delta, cursor=None))
    by_hand(location_of(store_a), "DELETE FROM episodic_items WHERE item_id = 'lost'")
    store_b.episodic.add("b-own", {"by": "b"})
    result = await a.sync_with_peer("b", TIER)
    assert result.ok and result.snapshot, result
    assert {"lost", "b-own"} <= set(live(store_b))
    assert "lost" not in live(store_a)
    forgotten = query(location_of(store_b), "SELECT item_id FROM forgotten_items ORDER BY item_id")
    assert forgotten == [(f"old-{i}",) for i in range(5)]
    back = await b.sync_with_peer("a", TIER)
    assert back.ok, back
    assert live(store_a) == live(store_b)
    assert json.loads(live(store_a)["lost"]) == {"by": "a", "after": "the purge"}


async def test_a_lying_horizon_cannot_erase_recent_items(cluster: Cluster) -> None:
    """A peer that answered every round honestly claims a purge horizon of "now", gets asked for a
    snapshot, and sends an empty one: the victim (default grace, 24 h) forgets nothing written
    within its grace, keeps every item, and sends them all back."""
    victim = cluster.add("victim")
    mallory = RawPeer(cluster.hub, "mallory", auto_ack=True)
    store = cluster.stores["victim"]
    write(store, "v", 10)
    # Items mallory sent, and the victim's own, all acknowledged by mallory.
    theirs = [v2_insert(f"m-{i}", {"by": "mallory"}, tier=TIER) for i in range(5)]
    victim.apply_sync_batch(batch("mallory", "victim", tier=TIER, items=theirs, cursor=10))
    assert (await victim.sync_with_peer("mallory", TIER)).ok
    await cluster.hub.settle()
    mallory.received.clear()
    now = time.time_ns()
    mallory.send("victim", batch("mallory", "victim", tier=TIER, purge_horizon=now))
    await cluster.hub.settle()
    await victim.drain()
    requests = [b for b in mallory.batches() if b.items and b.items[0].item_id == "*"]
    assert len(requests) == 1, mallory.batches()
    for hostile in empty_snapshot(
        "mallory", "victim", requests[0].batch_id, horizon=now, tier=TIER
    ):
        mallory.send("victim", hostile)
    await cluster.hub.settle()
    assert [kind for kind, _ in mallory.answers()][-2:] == ["ACK", "ACK"]
    assert len(live(store)) == 15
    assert query(location_of(store), "SELECT count(*) FROM forgotten_items") == [(0,)]
    # Everything mallory lacked is re-stamped: the next round sends it all back to mallory.
    mallory.received.clear()
    sent_back = await victim.sync_with_peer("mallory", TIER)
    assert sent_back.ok and sent_back.items == 15, sent_back


def test_the_bound_is_the_horizon_and_the_grace() -> None:
    hour = 3600 * 10**9
    now = 1_800_000_000 * 10**9
    skew = 60 * 10**9
    assert forget_bound(now - 2 * hour, wall_ns=now, grace_ns=hour, max_skew_ns=skew) == (
        now - 2 * hour
    )
    assert forget_bound(now, wall_ns=now, grace_ns=hour, max_skew_ns=skew) == now - hour + skew
    assert forget_bound(now, wall_ns=now, grace_ns=0, max_skew_ns=skew) == now
    assert forget_bound(5, wall_ns=now, grace_ns=2 * now, max_skew_ns=skew) == 0


async def test_requests_from_one_peer_do_not_pile_up(cluster: Cluster) -> None:
    """Five REPLICATE requests at once are answered with ONE snapshot, under the latest id."""
    sender = cluster.add("sender")
    write(cluster.stores["sender"], "s", 7)
    mallory = RawPeer(cluster.hub, "mallory", auto_ack=True)
    ids = []
    for _ in range(5):
        request = sender.probe_batch(TIER, "sender", replicate=True)
        request = dataclasses.replace(request, source_node="mallory")
        ids.append(request.batch_id)
        mallory.send("sender", request)
    await cluster.hub.settle()
    await sender.drain()
    await cluster.hub.settle()
    marked = {b.snapshot.snapshot_id for b in mallory.batches() if b.snapshot is not None}
    assert marked == {ids[-1]}
    assert [kind for kind, _ in mallory.answers()][:5] == ["ACK"] * 5


async def test_the_request_can_overtake_the_probe_ack(cluster: Cluster) -> None:
    """The sender registers that it expects a request before its probe goes out: delivered in any
    order, the round still sends the snapshot it was asked for."""
    a, _, _ = await purged(cluster)
    cluster.hub.hold = True
    round_ = asyncio.ensure_future(a.sync_with_peer("b", TIER))
    for _ in range(50):
        await asyncio.sleep(0)
    (probe,) = cluster.hub.held
    cluster.hub.held.clear()
    cluster.hub.release([probe])  # b answers ACK, then sends its request
    for _ in range(50):
        await asyncio.sleep(0)
    answers = list(cluster.hub.held)
    cluster.hub.held.clear()
    cluster.hub.hold = False
    cluster.hub.release(list(reversed(answers)))  # the request first, then the ACK
    result = await round_
    assert result.ok and result.snapshot, result
    assert live(cluster.stores["b"]) == live(cluster.stores["a"])


def test_a_peer_is_asked_for_snapshots_ever_more_rarely() -> None:
    """After a finished snapshot, the next one a peer's horizon can make this node ask for waits
    REASK_BASE_S, doubling with each one after it, up to REASK_CAP_S; a quiet cap starts over.
    Other peers and tiers are not held back."""
    requests = SnapshotRequests()
    tier, other = MemoryTier.EPISODIC, MemoryTier.WORKING
    assert requests.may_ask(tier, "m", 0.0) == 0.0

    def finish(at: float) -> None:
        requests.finished(requests.open(tier, "m", f"s{at}", acked=0, now_ns=0), at)

    finish(1000.0)
    assert requests.may_ask(tier, "m", 1000.0) == REASK_BASE_S
    assert requests.may_ask(tier, "m", 1000.0 + REASK_BASE_S) == 0.0
    assert (requests.may_ask(other, "m", 1000.0), requests.may_ask(tier, "n", 1000.0)) == (0, 0)
    finish(2000.0)
    assert requests.may_ask(tier, "m", 2000.0) == 2 * REASK_BASE_S
    at = 2000.0
    for _ in range(20):
        at += 10.0
        finish(at)
    assert requests.may_ask(tier, "m", at) == REASK_CAP_S
    finish(at + REASK_CAP_S + 1)
    assert requests.may_ask(tier, "m", at + REASK_CAP_S + 1) == REASK_BASE_S
    assert requests.get(tier, "m") is None  # finishing closes the request
