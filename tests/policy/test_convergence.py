"""Two nodes running the policies on the same data concurrently, then syncing, converge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from memrepl import MemoryTier
from memrepl.policy import PolicyConfig, consolidate
from memrepl.policy.consolidation import evidence_episodes
from memrepl.storage import Store
from memrepl.storage.semantic import concept_id

from ..replicas import replicated
from .conftest import add_episode, entity, exchange, now

KNOWS = {"source": "alice", "relation": "knows", "target": "bob"}
PEOPLE = [entity("alice"), entity("bob")]


def read_everything(store: Store) -> None:
    """The same local reads on each node (access counts do not replicate)."""
    for item_id in ("w1", "w2"):
        for _ in range(3):
            store.working.get_by_id(item_id)
    for episode in ("ep1", "ep2"):
        for _ in range(2):
            store.episodic.get_by_id(f"{episode}-0")


def assert_converged(a: Store, b: Store) -> None:
    for tier in MemoryTier:
        assert replicated(a, tier) == replicated(b, tier), tier.name
    for store in (a, b):
        live = [r["content"] for r in store.semantic.get_modified_since(0) if not r["deleted"]]
        concepts = Counter((c["name"], c["type"]) for c in live if c.get("kind") == "concept")
        relations = Counter(
            (c["source"], c["relation"], c["target"]) for c in live if c.get("kind") == "relation"
        )
        assert all(n == 1 for n in concepts.values())
        assert all(n == 1 for n in relations.values())
    view_a = a.semantic.subgraph(list(a.semantic.graph.nodes))
    view_b = b.semantic.subgraph(list(b.semantic.graph.nodes))
    assert view_a == view_b


def test_concurrent_promotion_and_consolidation_converge(
    open_store: Callable[[str], Store],
) -> None:
    a, b = open_store("a"), open_store("b")
    a.working.add("w1", {"note": "one", "episode_id": "ep1", "occurred_at_ns": now()})
    a.working.add("w2", {"note": "two"})
    add_episode(a, "ep1", entities=PEOPLE, relations=[KNOWS], accesses=0)
    add_episode(a, "ep2", entities=[entity("alice"), entity("paris", "place")], accesses=0)
    exchange(a, b)
    read_everything(a)
    read_everything(b)
    # Each node also has an episode of its own about alice (evidence must be the union).
    add_episode(a, "ep3", entities=PEOPLE, relations=[KNOWS])
    add_episode(b, "ep4", entities=PEOPLE, relations=[KNOWS])

    ra, rb = consolidate(a), consolidate(b)  # concurrently: neither has seen the other's
    assert ra.promoted == rb.promoted == ["w1", "w2"]
    assert ra.consolidated == ["ep1", "ep2", "ep3"]
    assert rb.consolidated == ["ep1", "ep2", "ep4"]
    exchange(a, b)
    assert_converged(a, b)

    alice = a.semantic.concept(concept_id("alice", "person"))
    assert alice is not None
    assert evidence_episodes(alice) == ["ep1", "ep2", "ep3", "ep4"]
    assert len(a.semantic.graph.nodes) == 3  # alice, bob, paris
    assert len(a.semantic.graph.edges) == 1  # one knows edge, four pieces of evidence

    # After the sync neither node promotes or consolidates anything again.
    read_everything(a)
    read_everything(b)
    for store in (a, b):
        again = consolidate(store)
        assert (again.promoted, again.consolidated, again.reinforced) == ([], [], [])
    exchange(a, b)
    assert_converged(a, b)


def test_concurrent_forgetting_converges(open_store: Callable[[str], Store]) -> None:
    a, b = open_store("a"), open_store("b")
    add_episode(a, "ep1", entities=PEOPLE, relations=[KNOWS])
    start = now()
    consolidate(a, now_ns=start)
    exchange(a, b)
    later = start + 5 * PolicyConfig().decay_half_life_ns
    ra, rb = consolidate(a, now_ns=later), consolidate(b, now_ns=later)
    assert ra.forgotten == rb.forgotten and len(ra.forgotten) == 2
    assert ra.forgotten_relations == rb.forgotten_relations and len(ra.forgotten_relations) == 1
    exchange(a, b)
    assert_converged(a, b)
    assert len(a.semantic.graph.nodes) == 0
