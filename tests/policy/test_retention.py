"""Retention: decay computed from stamps, forgetting, pinning and edges."""

from __future__ import annotations

import math

import pytest

from memrepl.policy import PolicyConfig, consolidate
from memrepl.policy.retention import record_strength, strength
from memrepl.storage import Store
from memrepl.storage.semantic import concept_id, relation_id

from .conftest import add_episode, entity, now

CONFIG = PolicyConfig()
HALF = CONFIG.decay_half_life_ns


def test_strength_halves_per_half_life_and_is_bounded() -> None:
    content = {"evidence:ep": 1, "reinforced_at_ns": 1_000}
    assert strength(content, 0, CONFIG, 1_000) == 0.5
    assert strength(content, 0, CONFIG, 1_000 + HALF) == pytest.approx(0.25)
    assert strength(content, 0, CONFIG, 1_000 + 2 * HALF) == pytest.approx(0.125)
    assert strength(content, 0, CONFIG, 0) == 0.5  # a stamp in the future: no growth
    # Without evidence: the stored confidence, else 1; without the field: the version stamp.
    assert strength({"confidence": 0.8}, 1_000, CONFIG, 1_000 + HALF) == pytest.approx(0.4)
    assert strength({}, 1_000, CONFIG, 1_000) == 1.0


def test_decay_is_the_same_however_often_it_is_read(store: Store) -> None:
    add_episode(store, "ep", entities=[entity("alice")])
    start = now()
    consolidate(store, now_ns=start)
    alice = concept_id("alice", "person")
    at = start + HALF // 3
    values = set()
    for _ in range(5):
        record = store.semantic.get_by_id(alice)
        assert record is not None
        values.add(record_strength(record, CONFIG, at))
        consolidate(store, now_ns=at)  # runs that forget nothing change nothing
    assert len(values) == 1
    assert values.pop() == pytest.approx(0.5 * 0.5 ** (1 / 3))


def test_weak_concepts_are_forgotten_with_their_edges_unless_pinned(store: Store) -> None:
    add_episode(
        store,
        "ep",
        entities=[entity("alice"), entity("bob"), entity("carol")],
        relations=[
            {"source": "alice", "relation": "knows", "target": "bob"},
            {"source": "carol", "relation": "knows", "target": "alice"},
            {"source": "bob", "relation": "knows", "target": "carol"},
        ],
    )
    start = now()
    consolidate(store, now_ns=start)
    alice, bob, carol = (concept_id(n, "person") for n in ("alice", "bob", "carol"))
    store.semantic.add_concept("bob", "person", pinned=True)
    # Strength 0.5 * 0.5 ** k falls under 0.05 between 3 and 4 half-lives.
    assert consolidate(store, now_ns=start + 3 * HALF).forgotten == []
    result = consolidate(store, now_ns=start + 4 * HALF)
    assert result.forgotten == sorted([alice, carol])
    assert result.forgotten_relations == sorted(
        [
            relation_id(alice, "knows", bob),
            relation_id(carol, "knows", alice),
            relation_id(bob, "knows", carol),
        ]
    )
    assert store.semantic.get_by_id(alice) is None
    assert store.semantic.get_by_id(bob) is not None
    assert store.semantic.pending_relations() == []
    assert list(store.semantic.graph.nodes) == [bob]
    tombstones = [r for r in store.semantic.get_modified_since(0) if r["deleted"]]
    assert len(tombstones) == 5  # replicated deletes, not local forgetting


def test_forget_threshold_of_each_preset(store: Store) -> None:
    for preset in ("balanced", "aggressive", "conservative"):
        config = PolicyConfig.preset(preset)
        content = {"evidence:ep": 1, "reinforced_at_ns": 0}
        # 0.5 * 0.5 ** k == threshold at k = log2(0.5 / threshold)
        k = math.log2(0.5 / config.forget_threshold)
        age = int(k * config.decay_half_life_ns)
        assert strength(content, 0, config, age - 10**9) > config.forget_threshold
        assert strength(content, 0, config, age + 10**9) < config.forget_threshold


def test_relation_to_a_deleted_concept_is_deleted(store: Store) -> None:
    alice = store.semantic.add_concept("alice", "person")["item_id"]
    store.semantic.add_concept("bob", "person")
    bob = concept_id("bob", "person")
    store.semantic.delete(alice)
    store.semantic.add_relation(bob, "knows", alice)  # e.g. arrived from a peer later
    result = consolidate(store)
    assert result.forgotten == []
    assert result.forgotten_relations == [relation_id(bob, "knows", alice)]
