"""Hostile anti-entropy messages: every query ends in an answer or a specific NACK, and no
digest message -- query or answer -- changes a store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.storage.digests import BUCKETS, GROUPS, bucket_of
from memrepl.sync.antientropy import verify_digests
from memrepl.sync.digest_messages import MAX_ANSWER_ENTRIES

from ..files import by_hand, dump
from .conftest import Cluster


class Raw:
    """A peer on the mesh that sends whatever it is told and records what comes back."""

    def __init__(self, cluster: Cluster, node_id: str) -> None:
        self.endpoint = cluster.hub.endpoint(node_id)
        self.got: list[tuple[MessageTypes, dict[str, Any]]] = []
        for msg_type in (MessageTypes.NACK, MessageTypes.MEMORY_RESPONSE, MessageTypes.ACK):
            self.endpoint.register_handler(msg_type, self._record(msg_type))

    def _record(self, msg_type: MessageTypes) -> Any:
        def handler(data: bytes, peer_id: str) -> None:
            self.got.append((msg_type, json.loads(data)))

        return handler

    async def ask(self, cluster: Cluster, to: str, data: bytes) -> tuple[MessageTypes, Any]:
        self.got.clear()
        self.endpoint.send(to, MessageTypes.MEMORY_QUERY, data)
        await cluster.hub.settle()
        assert len(self.got) == 1, self.got
        return self.got[0]


def query(**fields: Any) -> bytes:
    return json.dumps({"id": "q1", **fields}).encode()


BAD_QUERIES = [
    pytest.param(b"\xff\xfe", "bad-digest-query", id="not-utf8"),
    pytest.param(b"[1, 2]", "bad-digest-query", id="not-an-object"),
    pytest.param(query(op="drop-table"), "bad-digest-query", id="unknown-op"),
    pytest.param(json.dumps({"op": "summary"}).encode(), "bad-digest-query", id="no-id"),
    pytest.param(query(op="groups", tier=9), "bad-digest-query", id="bad-tier"),
    pytest.param(query(op="groups", tier=True), "bad-digest-query", id="bool-tier"),
    pytest.param(query(op="leaves", tier=2, groups=[GROUPS]), "bad-digest-query", id="group"),
    pytest.param(query(op="leaves", tier=2, groups=[1, 1]), "bad-digest-query", id="repeat"),
    pytest.param(query(op="entries", tier=2, buckets=[-1]), "bad-digest-query", id="bucket"),
    pytest.param(query(op="entries", tier=2, buckets=[]), "bad-digest-query", id="no-bucket"),
    pytest.param(
        query(op="entries", tier=2, buckets=list(range(BUCKETS + 1))),
        "bad-digest-query",
        id="too-many-buckets",
    ),
    pytest.param(query(op="fetch", tier=2, ids=["x" * 33]), "bad-digest-query", id="long-id"),
    pytest.param(query(op="fetch", tier=2, ids=[7]), "bad-digest-query", id="int-id"),
    pytest.param(
        query(op="fetch", tier=2, ids=[f"i{n}" for n in range(1001)]),
        "bad-digest-query",
        id="too-many-ids",
    ),
]


@pytest.mark.parametrize(("data", "code"), BAD_QUERIES)
async def test_a_bad_query_gets_a_specific_nack_and_changes_nothing(
    cluster: Cluster, data: bytes, code: str
) -> None:
    cluster.add("node-b")
    cluster.stores["node-b"].episodic.add("e1", {"n": 1})
    raw = Raw(cluster, "node-x")
    before = dump(cluster.location("node-b"))

    msg_type, body = await raw.ask(cluster, "node-b", data)

    assert msg_type == MessageTypes.NACK
    assert body["code"] == code and body["reason"]
    assert dump(cluster.location("node-b")) == before


async def test_a_query_for_an_unregistered_tier_is_refused(cluster: Cluster) -> None:
    manager = cluster.add("node-b")
    manager._tiers.pop(MemoryTier.SEMANTIC)  # a manager that serves two tiers only
    raw = Raw(cluster, "node-x")
    msg_type, body = await raw.ask(cluster, "node-b", query(op="groups", tier=3))
    assert (msg_type, body["code"], body["batch_id"]) == (MessageTypes.NACK, "unknown-tier", "q1")


async def test_queries_only_read(cluster: Cluster) -> None:
    # A peer may walk the whole tree and fetch items: answers, and nothing written here.
    cluster.add("node-b")
    store = cluster.stores["node-b"]
    for n in range(5):
        store.episodic.add(f"e{n}", {"n": n})
    raw = Raw(cluster, "node-x")
    before = dump(cluster.location("node-b"))
    for data in (
        query(op="summary"),
        query(op="groups", tier=2),
        query(op="leaves", tier=2, groups=list(range(GROUPS))),
        query(op="entries", tier=2, buckets=list(range(BUCKETS))),
    ):
        msg_type, body = await raw.ask(cluster, "node-b", data)
        assert msg_type == MessageTypes.MEMORY_RESPONSE and body["id"] == "q1"
    assert sorted(e[0] for e in body["entries"]) == [f"e{n}" for n in range(5)]
    assert dump(cluster.location("node-b")) == before


async def test_bad_answers_end_the_check_without_changing_anything(cluster: Cluster) -> None:
    # node-x answers node-a's summary query with nonsense: the check ends with an error that
    # names it; node-a's store is untouched.
    cluster.add("node-a")
    cluster.stores["node-a"].episodic.add("e1", {"n": 1})
    raw = cluster.hub.endpoint("node-x")
    answers = iter(
        [
            {"tiers": {"2": [-5, 1]}},
            {"tiers": {"9": [1, 1]}},
            {"tiers": "all equal"},
        ]
    )

    def answer(data: bytes, peer_id: str) -> None:
        asked = json.loads(data)
        body = {"id": asked["id"], **next(answers)}
        raw.send(peer_id, MessageTypes.MEMORY_RESPONSE, json.dumps(body).encode())

    raw.register_handler(MessageTypes.MEMORY_QUERY, answer)
    before = dump(cluster.location("node-a"))
    for _ in range(3):
        result = await cluster.managers["node-a"].check_peer("node-x")
        assert result.error is not None and "bad-digest-answer" in result.error
    assert dump(cluster.location("node-a")) == before


async def test_a_lying_peer_cannot_make_a_node_forget(cluster: Cluster) -> None:
    # node-x claims an empty tier in every answer: node-a sends it its items (that is all a
    # check does with items the peer lacks) and forgets nothing.
    cluster.add("node-a")
    store = cluster.stores["node-a"]
    for n in range(3):
        store.episodic.add(f"e{n}", {"n": n})
    raw = cluster.hub.endpoint("node-x")
    pushed: list[bytes] = []

    def answer(data: bytes, peer_id: str) -> None:
        asked = json.loads(data)
        fields: dict[str, Any] = {
            "summary": {"tiers": {"2": [0, 0]}},
            "groups": {"nodes": [[0, 0]] * GROUPS},
            "leaves": {"nodes": {str(g): [[0, 0]] * 128 for g in asked.get("groups", [])}},
            "entries": {"entries": [], "horizon": 2**62, "room": None},
        }[asked["op"]]
        raw.send(
            peer_id,
            MessageTypes.MEMORY_RESPONSE,
            json.dumps({"id": asked["id"], **fields}).encode(),
        )

    raw.register_handler(MessageTypes.MEMORY_QUERY, answer)
    raw.register_handler(MessageTypes.VECTOR_SYNC, lambda data, peer: pushed.append(data))
    before = dump(cluster.location("node-a"))
    result = await cluster.managers["node-a"].check_peer("node-x")
    # Its horizon (2**62) says it may have collected deletes of all of them: nothing is sent.
    assert result.ok and result.skipped == 3 and pushed == []
    assert dump(cluster.location("node-a")) == before
    assert verify_digests(store.episodic) == 0


async def test_an_entries_query_too_large_by_the_digests_is_refused_before_reading_rows(
    cluster: Cluster,
) -> None:
    # Finding a bucket's rows reads every id of the tier, and a query for every bucket used to
    # hold the whole tier in memory before its size was checked. The node's own digests say how
    # many rows the asked buckets hold: here (made wrong by hand) more than an answer may
    # carry, so the query is refused without reading a row -- the one row really there would
    # otherwise have been answered.
    cluster.add("node-b")
    cluster.stores["node-b"].episodic.add("e1", {"n": 1})
    bucket = bucket_of("e1")
    by_hand(
        cluster.location("node-b"),
        f"UPDATE tier_digests SET row_count = {MAX_ANSWER_ENTRIES + 1} "
        f"WHERE tier = 2 AND bucket = {bucket}",
    )
    raw = Raw(cluster, "node-x")
    msg_type, body = await raw.ask(cluster, "node-b", query(op="entries", tier=2, buckets=[bucket]))
    assert (msg_type, body["code"]) == (MessageTypes.NACK, "too-many-entries")
    assert f"{MAX_ANSWER_ENTRIES + 1} rows in the asked buckets" in body["reason"]
