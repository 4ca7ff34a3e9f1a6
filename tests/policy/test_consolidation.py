"""Episodic -> semantic consolidation: thresholds, closing, the trigger and reinforcement."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from memrepl.policy import PolicyConfig, consolidate
from memrepl.policy.consolidation import (
    MARKER_KIND,
    confidence,
    evidence_count,
    evidence_episodes,
    marker_id,
)
from memrepl.storage import Store
from memrepl.storage.semantic import concept_id, relation_id

from .conftest import HOUR_NS, add_episode, entity, now

ALICE = entity("alice")
PARIS = entity("paris", "place")
VISITS = {"source": "alice", "relation": "visits", "target": "paris"}


def knowledge_episode(store: Store, episode_id: str = "ep1", **kwargs: Any) -> list[str]:
    return add_episode(store, episode_id, entities=[ALICE, PARIS], relations=[VISITS], **kwargs)


def semantic_live(store: Store, kind: str) -> list[dict[str, Any]]:
    return [
        r
        for r in store.semantic.get_modified_since(0)
        if not r["deleted"] and r["content"].get("kind") == kind
    ]


def test_due_episode_becomes_concepts_and_edges_with_evidence(store: Store) -> None:
    knowledge_episode(store, importance=0.6, accesses=2)
    result = consolidate(store)
    alice, paris = concept_id("alice", "person"), concept_id("paris", "place")
    edge = relation_id(alice, "visits", paris)
    assert result.consolidated == ["ep1"]
    assert result.concepts == sorted([alice, paris])
    assert result.relations == [edge]
    assert store.semantic.neighbors(alice, "out") == [paris]
    content = store.semantic.concept(alice)
    assert content is not None
    assert evidence_episodes(content) == ["ep1"]
    assert evidence_count(content) == 1
    assert confidence(content, PolicyConfig()) == 0.5
    [edge_record] = semantic_live(store, "relation")
    assert evidence_episodes(edge_record["content"]) == ["ep1"]
    [marker] = semantic_live(store, MARKER_KIND)
    assert marker["item_id"] == marker_id("ep1")
    assert marker["content"]["event_count"] == 3
    # The marker is not part of the graph.
    assert marker["item_id"] not in store.semantic.graph


@pytest.mark.parametrize(
    "case",
    [
        ("balanced", 3, 0.6, 2, True),
        ("balanced", 2, 0.6, 2, False),
        ("balanced", 3, 0.59, 2, False),
        ("balanced", 3, 0.6, 1, False),
        ("aggressive", 2, 0.4, 1, True),
        ("aggressive", 1, 0.4, 1, False),
        ("aggressive", 2, 0.39, 1, False),
        ("aggressive", 2, 0.4, 0, False),
        ("conservative", 5, 0.8, 3, True),
        ("conservative", 4, 0.8, 3, False),
        ("conservative", 5, 0.79, 3, False),
        ("conservative", 5, 0.8, 2, False),
    ],
)
def test_thresholds_of_each_preset(store: Store, case: tuple[str, int, float, int, bool]) -> None:
    preset, events, importance, accesses, due = case
    knowledge_episode(store, events=events, importance=importance, accesses=accesses)
    # No trigger: only the closing rule may consolidate.
    config = PolicyConfig.preset(preset, importance_trigger=0)
    result = consolidate(store, config)
    assert result.consolidated == (["ep1"] if due else [])
    assert len(semantic_live(store, "concept")) == (2 if due else 0)


def test_importance_is_the_mean_and_missing_counts_as_zero(store: Store) -> None:
    start = now()
    for index, importance in enumerate([0.9, 0.8, None]):
        content: dict[str, Any] = {"episode_id": "ep", "occurred_at_ns": start + index}
        if importance is not None:
            content["importance"] = importance
        content["closed"] = index == 2
        store.episodic.add(f"e{index}", content)
    store.episodic.get_by_id("e0")
    store.episodic.get_by_id("e1")
    config = PolicyConfig(importance_trigger=0)
    # The mean is 1.7 / 3 = 0.567: under 0.6 (it would be 0.85 if the missing one were skipped).
    assert consolidate(store, config).consolidated == []
    assert consolidate(store, replace(config, consolidate_min_importance=0.57)).consolidated == []
    lower = replace(config, consolidate_min_importance=0.56)
    assert consolidate(store, lower).consolidated == ["ep"]


def test_open_episode_waits_until_idle(store: Store) -> None:
    start = now()
    knowledge_episode(store, closed=False, occurred_ns=start)
    config = PolicyConfig(importance_trigger=0)
    idle = config.episode_idle_ns
    assert consolidate(store, config, now_ns=start + 2 + idle - 1).consolidated == []
    assert consolidate(store, config, now_ns=start + 2 + idle).consolidated == ["ep1"]


def test_importance_trigger_consolidates_open_episodes(store: Store) -> None:
    knowledge_episode(store, "ep1", closed=False, importance=0.8)  # 2.4 of importance
    config = PolicyConfig(importance_trigger=4.0)
    first = consolidate(store, config)
    assert (first.triggered, first.consolidated) == (False, [])
    knowledge_episode(store, "ep2", closed=False, importance=0.8)  # 4.8 new since None
    second = consolidate(store, config)
    assert second.triggered
    assert second.consolidated == ["ep1", "ep2"]
    # Nothing new since the cursor: no trigger; one more open episode is not enough alone.
    knowledge_episode(store, "ep3", closed=False, importance=0.8)
    third = consolidate(store, config, since_ns=second.cursor)
    assert (third.triggered, third.consolidated) == (False, [])


def test_repeated_runs_do_not_duplicate_and_growth_reinforces(store: Store) -> None:
    knowledge_episode(store)
    first = consolidate(store)
    before = {r["item_id"]: r["timestamp_ns"] for r in store.semantic.get_modified_since(0)}
    for _ in range(3):
        again = consolidate(store)
        assert (again.consolidated, again.reinforced, again.concepts) == ([], [], [])
    after = {r["item_id"]: r["timestamp_ns"] for r in store.semantic.get_modified_since(0)}
    assert after == before  # not even a new version
    alice = concept_id("alice", "person")
    old = store.semantic.concept(alice)
    assert old is not None

    # The episode grows: the next run reinforces what it supports, writing no new item.
    store.episodic.add("ep1-9", {"episode_id": "ep1", "occurred_at_ns": now(), "importance": 1})
    grown = consolidate(store)
    assert (grown.consolidated, grown.reinforced) == ([], ["ep1"])
    assert grown.concepts == first.concepts and grown.relations == first.relations
    assert sorted(r["item_id"] for r in store.semantic.get_modified_since(0)) == sorted(before)
    new = store.semantic.concept(alice)
    assert new is not None
    assert evidence_count(new) == 2 > evidence_count(old)
    assert confidence(new, PolicyConfig()) == 0.75 > confidence(old, PolicyConfig())


def test_two_episodes_are_two_pieces_of_evidence(store: Store) -> None:
    knowledge_episode(store, "ep1")
    knowledge_episode(store, "ep2")
    result = consolidate(store)
    assert result.consolidated == ["ep1", "ep2"]
    assert len(semantic_live(store, "concept")) == 2
    assert len(semantic_live(store, "relation")) == 1
    content = store.semantic.concept(concept_id("alice", "person"))
    assert content is not None
    assert evidence_episodes(content) == ["ep1", "ep2"]
    assert evidence_count(content) == 2


def test_relation_end_without_entity_gets_the_default_type(store: Store) -> None:
    add_episode(store, "ep", entities=[ALICE], relations=[{**VISITS, "target": "rome"}], accesses=2)
    consolidate(store)
    rome = concept_id("rome", "concept")
    edge = relation_id(concept_id("alice", "person"), "visits", rome)
    assert edge in store.semantic.pending_relations()  # rome was never named an entity
    assert store.semantic.get_by_id(edge) is not None


def test_old_episode_is_due_without_hours_passing(store: Store) -> None:
    knowledge_episode(store, closed=False, occurred_ns=now() - 2 * HOUR_NS)
    assert consolidate(store, PolicyConfig(importance_trigger=0)).consolidated == ["ep1"]
