"""Semantic memory (L3): deterministic ids, and the networkx graph equal to the tables after every
write, delete, forgetting and applied batch (rebuilt from a fresh open to compare)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memrepl
from memrepl.errors import InvalidArgumentError, ItemError
from memrepl.mesh import LocalMesh
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store
from memrepl.storage.items import forget_items
from memrepl.storage.semantic import concept_id, relation_id
from memrepl.sync.manager import MemorySyncManager

from ..files import location_of, query

Snapshot = tuple[dict[str, Any], list[tuple[str, str, str, dict[str, Any]]]]


def snapshot(graph: Any) -> Snapshot:
    """A graph's nodes and edges as comparable plain values."""
    nodes = {node: dict(attrs) for node, attrs in graph.nodes(data=True)}
    edges = sorted(
        (
            (key, source, target, dict(attrs))
            for source, target, key, attrs in graph.edges(keys=True, data=True)
        ),
        key=lambda edge: edge[0],
    )
    return nodes, edges


def graph_from_table(path: Path | str) -> Any:
    """The graph as ``memrepl.storage.semantic`` defines it, built straight from the table with
    plain SQL: a reference written independently of the tier's incremental one."""
    rows = query(
        path,
        "SELECT item_id, content, kind, source_id, target_id FROM semantic_items "
        "WHERE NOT deleted AND kind IN ('concept', 'relation')",
    )
    graph = nx.MultiDiGraph()
    for item_id, content, kind, _, _ in rows:
        if kind == "concept":
            graph.add_node(item_id, **json.loads(content))
    for item_id, content, kind, source, target in rows:
        if kind == "relation" and graph.has_node(source) and graph.has_node(target):
            ends = ("source", "target")
            attributes = {k: v for k, v in json.loads(content).items() if k not in ends}
            graph.add_edge(source, target, key=item_id, **attributes)
    return graph


def assert_graph_matches_tables(store: Store) -> None:
    """The live graph equals the one a fresh open loads, and the one built from the table."""
    where = location_of(store)
    with memrepl.open(where, node_id=store.node_id) as fresh:
        assert snapshot(store.semantic.graph) == snapshot(fresh.semantic.graph)
    assert snapshot(store.semantic.graph) == snapshot(graph_from_table(where))


def test_deterministic_ids() -> None:
    # Pinned: every node derives the same id for the same concept, across versions too (a new
    # layout would split one concept into two items between old and new nodes).
    assert concept_id("Paris") == "bbe9f5d63c04f958c1ee721c2d1fcbea"
    assert concept_id("Paris", "city") == "6190772ea51e2f49665a3ca82522af63"
    assert relation_id("a", "r", "b") == "71bbc2872bf17c61d4e3197f407b0000"
    assert concept_id("Paris") == concept_id("Paris", "concept")
    assert concept_id("Paris", "city") != concept_id("Paris")
    # NUL-separated parts: no two splits of the same text collide.
    assert concept_id("b", "a") != concept_id("", "a\x01b")
    assert relation_id("a", "r", "b") != relation_id("b", "r", "a")
    with pytest.raises(ItemError):
        concept_id("a\x00b")


def test_same_concept_on_two_nodes_converges(opener: Callable[..., Store], tmp_path: Path) -> None:
    a = opener("node-a", tmp_path / "a.db")
    b = opener("node-b", tmp_path / "b.db")
    ra = a.semantic.add_concept("Paris", "city", population=2)
    rb = b.semantic.add_concept("Paris", "city", country="FR")
    assert ra["item_id"] == rb["item_id"] == concept_id("Paris", "city")
    # Adding again merges (no ItemExistsError) and keeps the other attributes.
    again = a.semantic.add_concept("Paris", "city", mayor="x")
    assert again["content"] == {
        "kind": "concept",
        "name": "Paris",
        "type": "city",
        "population": 2,
        "mayor": "x",
    }
    with pytest.raises(ItemError):
        a.semantic.add_concept("Paris", kind="other")


def test_queries(store: Store) -> None:
    memory = store.semantic
    paris, france, europe, moon = (
        memory.add_concept(name)["item_id"] for name in ("Paris", "France", "Europe", "Moon")
    )
    memory.add_relation(paris, "in", france, since=1)
    memory.add_relation(france, "in", europe)
    memory.add_relation(paris, "capital_of", france)
    assert memory.neighbors(france) == sorted([paris, europe])
    assert memory.neighbors(france, "out") == [europe]
    assert memory.neighbors(moon) == []
    assert memory.neighbors("missing") == []
    # A bad direction is refused as a MemreplError that is still a ValueError, as it was.
    with pytest.raises(InvalidArgumentError, match="direction") as caught:
        memory.neighbors(france, "up")
    assert isinstance(caught.value, ValueError)
    assert memory.shortest_path(paris, europe) == [paris, france, europe]
    assert memory.shortest_path(europe, paris) is None
    assert memory.shortest_path(europe, paris, directed=False) == [europe, france, paris]
    assert memory.shortest_path(paris, moon) is None
    view = memory.subgraph([paris, france, "missing"])
    assert set(view.nodes) == {paris, france}
    assert view.nodes[paris]["name"] == "Paris"
    assert {(e.source, e.target, e.attributes["relation"]) for e in view.edges} == {
        (paris, france, "in"),
        (paris, france, "capital_of"),
    }
    edge = next(e for e in view.edges if e.key == relation_id(paris, "in", france))
    assert edge.attributes == {"kind": "relation", "relation": "in", "since": 1}
    assert memory.concept(paris) == {"kind": "concept", "name": "Paris", "type": "concept"}
    assert_graph_matches_tables(store)


def test_edge_waits_for_its_endpoint(store: Store) -> None:
    memory = store.semantic
    a = memory.add_concept("a")["item_id"]
    b = concept_id("b")
    rel = memory.add_relation(a, "knows", b)["item_id"]
    assert memory.graph.number_of_edges() == 0
    assert memory.pending_relations() == [rel]
    memory.add_concept("b")
    assert memory.graph.has_edge(a, b, key=rel)
    assert memory.pending_relations() == []
    memory.delete(b)
    assert memory.graph.number_of_edges() == 0 and not memory.graph.has_node(b)
    assert memory.pending_relations() == [rel]
    memory.add_concept("b")  # resurrected: the edge comes back
    assert memory.graph.has_edge(a, b, key=rel)
    memory.delete(rel)
    assert memory.graph.number_of_edges() == 0 and memory.pending_relations() == []
    assert_graph_matches_tables(store)


def test_private_constructor_has_a_graph() -> None:
    from memrepl.storage import SemanticMemory

    memory = SemanticMemory()
    memory.add_concept("x")
    assert list(memory.graph.nodes) == [concept_id("x")]
    memory.store.close()


NAMES = ["a", "b", "c", "d"]
LABELS = ["r", "s"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("concept"), st.sampled_from(NAMES), st.integers(0, 2)),
        st.tuples(
            st.just("relation"),
            st.sampled_from(NAMES),
            st.sampled_from(LABELS),
            st.sampled_from(NAMES),
        ),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("forget"), st.integers(0, 50)),
        st.tuples(st.just("other"), st.sampled_from(NAMES)),
        st.tuples(st.just("retarget"), st.integers(0, 50), st.sampled_from(NAMES)),
    ),
    max_size=25,
)


def live_ids(store: Store) -> list[str]:
    return sorted(r["item_id"] for r in store.semantic.get_modified_since(0) if not r["deleted"])


def run_operation(store: Store, op: tuple[Any, ...]) -> None:
    memory = store.semantic
    kind = op[0]
    if kind == "concept":
        memory.add_concept(op[1], weight=op[2])
    elif kind == "relation":
        memory.add_relation(concept_id(op[1]), op[2], concept_id(op[3]))
    elif kind == "other":
        # Same id as a concept, other content: the node leaves the graph.
        memory.merge(concept_id(op[1]), {"kind": "note"})
    elif live := live_ids(store):
        item_id = live[op[1] % len(live)]
        if kind == "delete":
            memory.delete(item_id)
        elif kind == "forget":
            with store.write() as conn:
                forget_items(conn, memory.spec, [item_id])
        else:  # retarget: whatever the item was, it becomes a relation to op[2]
            memory.update(
                item_id,
                {
                    "kind": "relation",
                    "source": item_id,
                    "target": concept_id(op[2]),
                    "relation": "t",
                },
            )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_graph_equals_tables_after_random_writes(ops: list[tuple[Any, ...]]) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        memrepl.open(Path(directory) / "g.db", node_id="node-a") as store,
    ):
        for op in ops:
            run_operation(store, op)
        assert_graph_matches_tables(store)


def test_graph_follows_an_applied_batch(tmp_path: Path) -> None:
    hub = LocalMesh()
    stores = {n: memrepl.open(tmp_path / f"{n}.db", node_id=n) for n in ("node-a", "node-b")}
    try:
        managers = {}
        for node_id, store in stores.items():
            manager = MemorySyncManager(node_id=node_id, mesh=hub.endpoint(node_id))
            for tier in MemoryTier:
                manager.register_memory_tier(tier, store.tier(tier))
            managers[node_id] = manager
        a, b = stores["node-a"].semantic, stores["node-b"].semantic
        x = a.add_concept("x")["item_id"]
        rel = a.add_relation(x, "to", concept_id("y"))["item_id"]
        b.add_concept("y")

        def sync(source: str, target: str) -> None:
            batch = managers[source].create_delta_batch(MemoryTier.SEMANTIC, target, 0)
            managers[target].apply_sync_batch(batch)

        sync("node-a", "node-b")
        assert b.graph.has_edge(x, concept_id("y"), key=rel)
        sync("node-b", "node-a")
        assert snapshot(a.graph) == snapshot(b.graph)
        a.delete(x)
        sync("node-a", "node-b")
        assert not b.graph.has_node(x) and b.pending_relations() == [rel]
        for store in stores.values():
            assert_graph_matches_tables(store)
    finally:
        for store in stores.values():
            store.close()


def test_graph_aware_recall_returns_the_neighbourhood(store: Store) -> None:
    semantic = store.semantic
    paris = semantic.add_concept("Paris", "city", note="the city of light")["item_id"]
    france = semantic.add_concept("France", "country")["item_id"]
    europe = semantic.add_concept("Europe", "continent")["item_id"]
    seine = semantic.add_concept("Seine", "river")["item_id"]
    tokyo = semantic.add_concept("Tokyo", "city")["item_id"]
    semantic.add_relation(paris, "capital_of", france)
    semantic.add_relation(france, "part_of", europe)
    semantic.add_relation(seine, "flows_through", paris)
    plain = semantic.search("light")
    assert [hit.item_id for hit in plain] == [paris] and plain.graph is None

    one = semantic.search("light", expand=1)
    assert [(hit.item_id, hit.depth, hit.via) for hit in one] == [
        (paris, 0, None),
        (france, 1, paris),
        (seine, 1, paris),
    ]
    assert one[1].score is None and one[1].content["name"] == "France"
    assert one.graph is not None
    assert set(one.graph.nodes) == {paris, france, seine}
    assert {(edge.source, edge.target) for edge in one.graph.edges} == {
        (paris, france),
        (seine, paris),
    }
    two = semantic.search("light", expand=2)
    assert [(hit.item_id, hit.depth) for hit in two][3:] == [(europe, 2)]
    assert tokyo not in {hit.item_id for hit in two}
    # A matching relation brings its two ends.
    flows = semantic.search("flows", expand=1)
    assert {hit.item_id for hit in flows if hit.depth == 1} >= {seine, paris}


def test_graph_aware_recall_keeps_to_the_namespace(store: Store) -> None:
    from memrepl.errors import RecallError
    from memrepl.storage.semantic import concept_id

    alice, bob = ("users", "alice"), ("users", "bob")
    tea = concept_id("tea")
    store.semantic.merge(
        tea, {"kind": "concept", "name": "tea", "type": "concept"}, namespace=alice
    )
    green = concept_id("green")
    store.semantic.merge(
        green, {"kind": "concept", "name": "green", "type": "concept"}, namespace=bob
    )
    store.semantic.add_relation(tea, "is", green)
    found = store.semantic.search("tea", namespace=alice, expand=1)
    assert [hit.item_id for hit in found] == [tea]
    assert [hit.item_id for hit in store.semantic.search("tea", expand=1)] == [tea, green]
    with pytest.raises(RecallError):
        store.semantic.search("tea", expand=-1)
