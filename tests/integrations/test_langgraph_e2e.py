"""End to end: a real LangGraph graph (no LLM; its nodes remember and recall through the
store, with a deterministic embedding function) runs on node A and on node B, two memrepl
``Node``s syncing over TCP on 127.0.0.1. B's graph recalls what A's stored, by meaning; a key
both write before they sync converges, and its conflict is logged once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from memrepl.integrations.langgraph import MemreplStore
from memrepl.node import Node
from memrepl.node.config import NodeSettings

from .conftest import DIMS, embed

KEY = b"a-cluster-key-for-the-langgraph-tests-0123456789"
#: Only the rounds the test asks for (sync_now), so "before they sync" is certain.
SETTINGS = NodeSettings(
    sync_interval_s=3600,
    antientropy_interval_s=None,
    verify_interval_s=None,
    consolidate_interval_s=None,
)
CONNECT_S = 30


class Turn(TypedDict, total=False):
    user: str
    remember: str
    key: str
    ask: str
    recalled: list[str]


async def remember(state: Turn, *, store: BaseStore) -> dict[str, Any]:
    if state.get("remember"):
        await store.aput(
            ("users", state["user"], "memories"),
            state.get("key") or f"m{abs(hash(state['remember']))}",
            {"text": state["remember"]},
        )
    return {}


async def recall(state: Turn, *, store: BaseStore) -> dict[str, Any]:
    if not state.get("ask"):
        return {"recalled": []}
    found = await store.asearch(("users", state["user"]), query=state["ask"], limit=3)
    return {"recalled": [item.value["text"] for item in found]}


def agent(store: MemreplStore) -> Any:
    graph = StateGraph(Turn)
    graph.add_node("remember", remember)
    graph.add_node("recall", recall)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "recall")
    graph.add_edge("recall", END)
    return graph.compile(store=store)


async def test_a_graph_on_b_recalls_what_a_graph_on_a_stored(tmp_path: Path) -> None:
    index = {"dims": DIMS, "embed": embed, "fields": ["text"]}
    async with Node(tmp_path / "a.db", node_id="node-a", key=KEY, settings=SETTINGS) as a:
        peers = {"node-a": a.address}
        async with Node(
            tmp_path / "b.db", node_id="node-b", key=KEY, peers=peers, settings=SETTINGS
        ) as b:
            await a.wait_for_peer("node-b", CONNECT_S)
            await b.wait_for_peer("node-a", CONNECT_S)
            store_a = MemreplStore(a.store, index=index)  # type: ignore[arg-type]
            store_b = MemreplStore(b.store, index=index)  # type: ignore[arg-type]
            on_a, on_b = agent(store_a), agent(store_b)

            await on_a.ainvoke({"user": "alice", "remember": "Alice is allergic to peanuts"})
            await on_a.ainvoke({"user": "alice", "remember": "Alice flies to Lisbon on Friday"})
            await on_a.ainvoke({"user": "bob", "remember": "Bob is allergic to cats"})
            before = await on_b.ainvoke({"user": "alice", "ask": "what is she allergic to"})
            assert before["recalled"] == []
            assert all(result.ok for result in await a.sync_now(["node-b"]))

            after = await on_b.ainvoke({"user": "alice", "ask": "what is she allergic to"})
            assert after["recalled"][0] == "Alice is allergic to peanuts"
            assert "Bob is allergic to cats" not in after["recalled"]

            # The same key, written on both nodes before either syncs.
            await on_a.ainvoke({"user": "alice", "key": "diet", "remember": "Alice is vegan"})
            await on_b.ainvoke({"user": "alice", "key": "diet", "remember": "Alice is vegetarian"})
            assert all(result.ok for result in await a.sync_now(["node-b"]))
            assert all(result.ok for result in await b.sync_now(["node-a"]))
            assert all(result.ok for result in await a.sync_now(["node-b"]))

            namespace = ("users", "alice", "memories")
            kept = [store.get(namespace, "diet") for store in (store_a, store_b)]
            assert kept[0] is not None and kept[1] is not None
            assert kept[0].value == kept[1].value == {"text": "Alice is vegetarian"}
            # Logged once, by the node that saw both writes as concurrent: the first to receive
            # the other's write (which one depends on when each node's own rounds run). The other
            # then got the merged state, which already knows its write: no second conflict.
            [conflict] = store_a.conflicts() + store_b.conflicts()
            assert (conflict.namespace, conflict.key) == (namespace, "diet")
            assert conflict.winner.value == {"text": "Alice is vegetarian"}
            assert (conflict.loser.node_id, conflict.loser.value) == (
                "node-a",
                {"text": "Alice is vegan"},
            )
            assert store_a.sync_status().in_sync and store_b.sync_status().in_sync
            final = await on_a.ainvoke({"user": "alice", "ask": "is alice vegetarian"})
            assert final["recalled"][0] == "Alice is vegetarian"
