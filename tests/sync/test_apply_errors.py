"""Bad input to ``apply_sync_batch`` is refused whole and leaves the database untouched.

ARCHITECTURE.md, "Errors": bad input from the network raises a clear, specific error and changes
nothing on disk; the daemon answers a bad batch with a NACK naming the fault. Each case compares a
full dump of the receiver's file (every table, the node row and its clock included) before and
after. Over a LocalMesh the sender gets a REJECTED result carrying the NACK's code, and its sync
vector does not move.

Also here: a redelivered batch adds no conflict rows, and the conflict log answers "which of my
writes lost, to whom, and what did they say?" with one SQL query.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import memrepl
from memrepl.errors import ClockSkewError, MisaddressedBatchError, ProtocolError, UnknownTierError
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, SyncOperation
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem
from memrepl.storage.items import LocalWrite
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.results import SyncStatus

from ..files import by_hand, dump, location_of, query
from .conftest import Cluster

WORKING = MemoryTier.WORKING
SKEW_S = 120

#: "Which of my writes lost, to whom, and what did they say?" -- one query on the conflict log
#: (run it on your node's database with :me set to your node id; the README quotes it).
WHICH_OF_MY_WRITES_LOST = """
SELECT item_id, loser_content, winner_origin, winner_content
FROM conflicts
WHERE loser_origin = :me
ORDER BY item_id
"""


def versioned(
    item_id: str,
    timestamp_ns: int,
    *,
    origin: str = "a",
    content: dict[str, Any] | None = None,
    context: dict[str, int] | None = None,
    tier: MemoryTier = WORKING,
    operation: SyncOperation = SyncOperation.UPDATE,
    field_clocks: dict[str, tuple[int, str]] | None = None,
) -> MemorySyncItem:
    """An item carrying one whole write by ``origin`` at ``timestamp_ns`` (consistent unless the
    keyword arguments make it otherwise)."""
    content = {"v": item_id} if content is None else content
    return MemorySyncItem(
        item_id=item_id,
        timestamp_ns=timestamp_ns,
        tier=tier,
        operation=operation,
        payload=json.dumps(content).encode() if content else b"",
        version=ItemVersionInfo(
            origin_node=origin,
            causal_context={origin: timestamp_ns} if context is None else context,
            whole_timestamp_ns=timestamp_ns,
            whole_origin=origin,
            whole_deleted=operation == SyncOperation.DELETE,
            field_clocks=field_clocks or {},
        ),
    )


def batch_of(items: list[MemorySyncItem], *, tier: MemoryTier = WORKING) -> MemorySyncBatch:
    """A batch from a to b; good items first, so a partial apply would show."""
    now = time.time_ns()
    good = [versioned(f"good{n}", now - 1000 + n) for n in range(3)]
    return MemorySyncBatch(
        batch_id="hand-made",
        source_node="a",
        target_node="b",
        tier=tier,
        items=[*good, *items],
        cursor=now,
    )


@pytest.fixture
def pair(cluster: Cluster) -> Cluster:
    """a and b, with some history: synced items, a logged conflict, positions both ways."""
    a, b = cluster.add("a"), cluster.add("b")
    for node in ("a", "b"):
        cluster.stores[node].working.add("both", {"by": node})
        cluster.stores[node].working.add(f"own-{node}", {"by": node})
    ab = a.create_delta_batch(WORKING, "b")
    ba = b.create_delta_batch(WORKING, "a")
    assert b.apply_sync_batch(ab)[1] == 1
    assert a.apply_sync_batch(ba)[1] == 1
    return cluster


def check_refused(cluster: Cluster, batch: MemorySyncBatch, error: type[Exception]) -> Exception:
    """Apply ``batch`` on b: it must raise ``error`` and leave b's file as it was."""
    path = location_of(cluster.stores["b"])
    before = dump(path)
    with pytest.raises(error) as caught:
        cluster.managers["b"].apply_sync_batch(batch)
    # And after a round trip through the wire, the same.
    with pytest.raises(error):
        cluster.managers["b"].apply_sync_batch(MemorySyncBatch.unpack(batch.pack()))
    assert dump(path) == before
    return caught.value


def test_batch_addressed_to_another_node(pair: Cluster) -> None:
    pair.stores["a"].working.add("new", {"v": 1})
    batch = pair.managers["a"].create_delta_batch(WORKING, "c", since_timestamp=0)
    assert batch.items
    error = check_refused(pair, batch, MisaddressedBatchError)
    assert (error.target_node, error.node_id) == ("c", "b")  # type: ignore[attr-defined]


def test_unregistered_tier(pair: Cluster) -> None:
    pair.stores["a"].episodic.add("event", {"v": 1})
    batch = pair.managers["a"].create_delta_batch(MemoryTier.EPISODIC, "b")
    # b's manager here serves the working tier only.
    working_only = MemorySyncManager(node_id="b")
    working_only.register_memory_tier(WORKING, pair.stores["b"].working)
    path = location_of(pair.stores["b"])
    before = dump(path)
    with pytest.raises(UnknownTierError) as caught:
        working_only.apply_sync_batch(batch)
    assert caught.value.tier == MemoryTier.EPISODIC
    assert dump(path) == before


def test_stamp_too_far_in_the_future(pair: Cluster) -> None:
    ahead = time.time_ns() + SKEW_S * 10**9
    error = check_refused(pair, batch_of([versioned("future", ahead)]), ClockSkewError)
    assert error.timestamp_ns == ahead  # type: ignore[attr-defined]


def test_causal_context_ahead_of_the_wall_clock(pair: Cluster) -> None:
    now = time.time_ns()
    item = versioned("future", now, context={"a": now, "z": now + SKEW_S * 10**9})
    check_refused(pair, batch_of([item]), ClockSkewError)


def test_receiver_with_a_wall_clock_in_the_past(pair: Cluster) -> None:
    pair.stores["a"].working.add("fresh", {"v": 1})
    batch = pair.managers["a"].create_delta_batch(WORKING, "b")
    path = location_of(pair.stores["b"])
    pair.stores.pop("b").close()
    with memrepl.open(path, node_id="b", wall=lambda: time.time_ns() - SKEW_S * 10**9) as late:
        manager = MemorySyncManager(node_id="b")
        manager.register_memory_tier(WORKING, late.working)
        before = dump(path)
        with pytest.raises(ClockSkewError):
            manager.apply_sync_batch(batch)
        assert dump(path) == before


def malformed_items() -> dict[str, MemorySyncItem]:
    now = time.time_ns()
    return {
        "context misses its own write": versioned("bad", now, context={"a": now - 1}),
        "context without the origin": versioned("bad", now, context={"z": now}),
        "stamp is not the latest write": MemorySyncItem(
            item_id="bad",
            timestamp_ns=now + 5,
            tier=WORKING,
            operation=SyncOperation.UPDATE,
            payload=b'{"v": 1}',
            version=ItemVersionInfo(
                origin_node="a",
                causal_context={"a": now + 5},
                whole_timestamp_ns=now,
                whole_origin="a",
            ),
        ),
        "tombstone with content": versioned(
            "bad", now, operation=SyncOperation.DELETE, content={"left": "over"}
        ),
        "field clock for an absent field": versioned("bad", now, field_clocks={"gone": (now, "a")}),
        "operation does not match the state": versioned("bad", now, operation=SyncOperation.MERGE),
        "payload is not a JSON object": MemorySyncItem(
            item_id="bad",
            timestamp_ns=now,
            tier=WORKING,
            operation=SyncOperation.UPDATE,
            payload=b"[1, 2]",
            version=ItemVersionInfo(
                origin_node="a",
                causal_context={"a": now},
                whole_timestamp_ns=now,
                whole_origin="a",
            ),
        ),
        # json.loads would accept these; they are not JSON, and no other node could read them.
        **{
            f"payload holds {constant}": MemorySyncItem(
                item_id="bad",
                timestamp_ns=now,
                tier=WORKING,
                operation=SyncOperation.UPDATE,
                payload=b'{"v": ' + constant.encode() + b"}",
                version=ItemVersionInfo(
                    origin_node="a",
                    causal_context={"a": now},
                    whole_timestamp_ns=now,
                    whole_origin="a",
                ),
            )
            for constant in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999")
        },
        # Stored as received, such a text would mean its last value to the API and its first
        # to SQL (json_extract); at any depth.
        **{
            f"payload names a key twice {where}": MemorySyncItem(
                item_id="bad",
                timestamp_ns=now,
                tier=WORKING,
                operation=SyncOperation.UPDATE,
                payload=payload,
                version=ItemVersionInfo(
                    origin_node="a",
                    causal_context={"a": now},
                    whole_timestamp_ns=now,
                    whole_origin="a",
                ),
            )
            for where, payload in (
                ("at the top", b'{"v": 1, "v": 2}'),
                ("inside", b'{"v": {"w": 1, "w": 1}}'),
            )
        },
    }


@pytest.mark.parametrize("case", list(malformed_items()))
def test_malformed_item_state(pair: Cluster, case: str) -> None:
    item = malformed_items()[case]
    error = check_refused(pair, batch_of([item]), ProtocolError)
    assert error.code == "bad-item-state", error  # type: ignore[attr-defined]


def test_item_of_another_tier_inside_a_batch(pair: Cluster) -> None:
    stray = versioned("stray", time.time_ns(), tier=MemoryTier.EPISODIC)
    error = check_refused(pair, batch_of([stray]), ProtocolError)
    assert error.code == "tier-mismatch"  # type: ignore[attr-defined]


async def rejected_over_the_mesh(cluster: Cluster, code: str) -> None:
    """a syncs to b; b refuses the batch: REJECTED with the NACK's code, nothing moved."""
    a = cluster.managers["a"]
    vector = a.get_sync_vector(WORKING)
    before = dump(location_of(cluster.stores["b"]))
    result = await a.sync_with_peer("b", WORKING)
    assert result.status == SyncStatus.REJECTED, result
    assert result.error is not None and result.error.startswith(f"{code}: "), result.error
    assert (result.batches, result.applied) == (0, 0)
    assert a.get_sync_vector(WORKING) == vector
    assert dump(location_of(cluster.stores["b"]), skip_refusals=True) == before
    # The refusal is counted on both sides: b refused a's batch, a was refused by b.
    counted = "SELECT direction, code, count FROM sync_refusals WHERE peer_id = ?"
    assert query(location_of(cluster.stores["b"]), counted, "a") == [("inbound", code, 1)]
    assert query(location_of(cluster.stores["a"]), counted, "b") == [("outbound", code, 1)]


async def test_clock_skew_is_nacked_over_the_mesh(cluster: Cluster) -> None:
    a = cluster.add("a")
    cluster.add("b")
    cluster.stores["a"].working.add("first", {"v": 1})
    assert (await a.sync_with_peer("b", WORKING)).status == SyncStatus.SYNCED
    # b comes back with a wall clock two minutes slow: a's new stamps are too far ahead.
    path = location_of(cluster.stores["b"])
    cluster.stores.pop("b").close()
    late = memrepl.open(path, node_id="b", wall=lambda: time.time_ns() - SKEW_S * 10**9)
    cluster.stores["b"] = late
    cluster.managers["b"] = MemorySyncManager(node_id="b", mesh=cluster.hub.endpoint("b"))
    cluster.managers["b"].register_memory_tier(WORKING, late.working)
    cluster.stores["a"].working.add("second", {"v": 2})
    await rejected_over_the_mesh(cluster, "clock-skew")


async def test_an_unregistered_tier_is_nacked_with_the_errors_code(cluster: Cluster) -> None:
    a = cluster.add("a")
    store_b = memrepl.open(cluster.location("b"), node_id="b")
    cluster.stores["b"] = store_b
    # b serves the working tier only: a's episodic batch is refused with UnknownTierError.
    b = MemorySyncManager(node_id="b", mesh=cluster.hub.endpoint("b"))
    b.register_memory_tier(WORKING, store_b.working)
    cluster.stores["a"].episodic.add("event", {"v": 1})
    before = dump(location_of(store_b), skip_refusals=True)
    result = await a.sync_with_peer("b", MemoryTier.EPISODIC)
    assert result.status == SyncStatus.REJECTED, result
    assert result.error is not None and result.error.startswith("unknown-tier: "), result.error
    assert UnknownTierError.code == "unknown-tier"
    assert dump(location_of(store_b), skip_refusals=True) == before


async def test_malformed_state_is_nacked_over_the_mesh(cluster: Cluster) -> None:
    a = cluster.add("a")
    cluster.add("b")
    cluster.stores["a"].working.add("first", {"v": 1})
    assert (await a.sync_with_peer("b", WORKING)).status == SyncStatus.SYNCED
    # A row damaged on a (its causal context lost) must not spread.
    cluster.stores["a"].working.add("damaged", {"v": 2})
    by_hand(
        location_of(cluster.stores["a"]),
        "UPDATE working_items SET causal_context = '{}' WHERE item_id = 'damaged'",
    )
    await rejected_over_the_mesh(cluster, "bad-item-state")


def test_redelivered_batch_adds_no_conflict_rows(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    for node in ("b", "a"):
        cluster.stores[node].working.write_many(
            [LocalWrite.add(f"x{n}", {"by": node, "n": n}) for n in range(5)]
        )
    packed = a.create_delta_batch(WORKING, "b").pack()
    assert b.apply_sync_batch(MemorySyncBatch.unpack(packed)) == (5, 5)
    path = location_of(cluster.stores["b"])
    logged = query(path, "SELECT * FROM conflicts ORDER BY id")
    assert len(logged) == 5
    before = dump(path)

    # The same bytes again, then the same items under a new batch id (a resend from 0).
    assert b.apply_sync_batch(MemorySyncBatch.unpack(packed)) == (0, 0)
    assert b.apply_sync_batch(a.create_delta_batch(WORKING, "b", since_timestamp=0)) == (0, 0)
    assert query(path, "SELECT * FROM conflicts ORDER BY id") == logged
    assert dump(path) == before


async def test_which_of_my_writes_lost_is_one_query(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    working = {node: cluster.stores[node].working for node in ("a", "b")}
    # Written in this order, each node before hearing of the other: the later stamp wins.
    working["b"].add("y1", {"text": "b on y1"})
    working["a"].add("x1", {"text": "a on x1"})
    working["a"].add("x2", {"text": "a on x2"})
    working["a"].add("y1", {"text": "a on y1"})
    working["a"].add("only-a", {"text": "no conflict"})
    working["b"].add("x1", {"text": "b on x1"})
    working["b"].merge("x2", {"note": "b on x2"})
    # The two deltas cross in flight: each node detects the concurrent pairs.
    ab, ba = a.create_delta_batch(WORKING, "b"), b.create_delta_batch(WORKING, "a")
    assert a.apply_sync_batch(ba)[1] == 3
    assert b.apply_sync_batch(ab)[1] == 3
    for _ in range(3):
        await a.sync_with_peer("b", WORKING)
        await b.sync_with_peer("a", WORKING)

    expected = [
        ("x1", {"text": "a on x1"}, "b", {"text": "b on x1"}),
        ("x2", {"text": "a on x2"}, "b", {"note": "b on x2"}),
    ]
    for node in ("a", "b"):
        found = query(location_of(cluster.stores[node]), WHICH_OF_MY_WRITES_LOST, {"me": "a"})
        answer = [(i, json.loads(lost), who, json.loads(said)) for i, lost, who, said in found]
        assert answer == expected, node
    # b's losing write is y1, lost to a.
    found = query(location_of(cluster.stores["a"]), WHICH_OF_MY_WRITES_LOST, {"me": "b"})
    assert [(row[0], row[2]) for row in found] == [("y1", "a")]
    # And the merge kept both fields of x2 (b's MERGE came after a's whole write).
    assert working["a"].get_by_id("x2")["content"] == {  # type: ignore[index]
        "text": "a on x2",
        "note": "b on x2",
    }


def test_a_v2_delete_with_a_payload_leaves_an_empty_tombstone(pair: Cluster) -> None:
    """A plain v2 node may send a DELETE that still carries the item's JSON: the tombstone keeps
    no content, so a later local merge starts from nothing instead of resurrecting it."""
    now = time.time_ns()
    b = pair.managers["b"]
    for n, operation in enumerate((SyncOperation.UPDATE, SyncOperation.DELETE)):
        item = MemorySyncItem(
            item_id="x",
            timestamp_ns=now + n,
            tier=WORKING,
            operation=operation,
            payload=b'{"v": 1}',
        )
        b.apply_sync_batch(MemorySyncBatch(f"v2-{n}", "a", "b", WORKING, [item]))
    store = pair.stores["b"]
    (record,) = [r for r in store.working.get_modified_since(0) if r["item_id"] == "x"]
    assert record["deleted"] is True
    assert record["content"] == {}
    stored = "SELECT content FROM working_items WHERE item_id = 'x'"
    assert query(pair.location("b"), stored) == [("{}",)]
    assert store.working.merge("x", {"w": 2})["content"] == {"w": 2}


def test_conflict_texts_are_the_sides_as_sent_and_held_and_the_row_as_stored(
    pair: Cluster,
) -> None:
    """Each side of a logged pair is its content's JSON as the sender sent it or the receiver
    held it, and ``resolved_content`` is byte for byte the kept row's ``content``: whichever
    side won, and whatever spacing or escaping the sender used."""
    now = time.time_ns()
    b = pair.managers["b"]
    working = pair.stores["b"].working
    working.add("remote-wins", {"who": "b", "é": 1})
    working.add("local-wins", {"who": "b", "é": 2})
    held = dict(query(pair.location("b"), "SELECT item_id, content FROM working_items"))
    sent = {"remote-wins": b'{"who":"a","\xc3\xa9":1}', "local-wins": b'{"who" : "a"}'}
    stamps = {"remote-wins": now + 10**9, "local-wins": now - 10**9}
    items = [
        MemorySyncItem(
            item_id=item_id,
            timestamp_ns=stamps[item_id],
            tier=WORKING,
            operation=SyncOperation.UPDATE,
            payload=payload,
            version=ItemVersionInfo(
                origin_node="a",
                causal_context={"a": stamps[item_id]},
                whole_timestamp_ns=stamps[item_id],
                whole_origin="a",
            ),
        )
        for item_id, payload in sent.items()
    ]
    assert b.apply_sync_batch(MemorySyncBatch("t", "a", "b", WORKING, items)) == (2, 2)
    path = pair.location("b")
    stored = dict(query(path, "SELECT item_id, content FROM working_items"))
    logged = {
        row[0]: row[1:]
        for row in query(
            path,
            "SELECT item_id, winner_origin, winner_content, loser_content, resolved_content "
            "FROM conflicts",
        )
    }
    assert logged["remote-wins"] == (
        "a",
        sent["remote-wins"].decode(),
        held["remote-wins"],
        stored["remote-wins"],
    )
    assert stored["remote-wins"] == sent["remote-wins"].decode()
    assert logged["local-wins"] == (
        "b",
        held["local-wins"],
        sent["local-wins"].decode(),
        stored["local-wins"],
    )
    assert stored["local-wins"] == held["local-wins"]


def test_a_state_kept_as_received_stores_the_received_text(pair: Cluster) -> None:
    """Concurrent MERGEs, merged on one node, then sent to the other: that node's merge yields
    a state equal to the one received (a new object, fields in its own order). The row is the
    received state, so it stores the received bytes and every node's rows read alike."""
    a, b = pair.managers["a"], pair.managers["b"]
    pair.stores["a"].working.merge("x", {"p": 1})
    pair.stores["b"].working.merge("x", {"q": 1})
    a.apply_sync_batch(b.create_delta_batch(WORKING, "a"))
    batch = a.create_delta_batch(WORKING, "b")
    (sent,) = [item for item in batch.items if item.item_id == "x"]
    b.apply_sync_batch(batch)
    stored = "SELECT content, received_from FROM working_items WHERE item_id = 'x'"
    assert query(pair.location("b"), stored) == [(sent.payload.decode(), "a")]
    assert query(pair.location("a"), stored)[0][0] == sent.payload.decode()
