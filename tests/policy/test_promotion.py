"""Working -> episodic promotion: thresholds, presets, marks and ids."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from memrepl.policy import PolicyConfig, consolidate
from memrepl.policy.promotion import (
    PROMOTED_EPISODE,
    PROMOTED_MARK,
    promoted_id,
    promotion_score,
    qualifies,
)
from memrepl.protocol.enums import SyncPriority
from memrepl.storage import Store

from .conftest import HOUR_NS, now


def read(store: Store, item_id: str, times: int) -> None:
    for _ in range(times):
        store.working.get_by_id(item_id)


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "item_id": "w",
        "content": {},
        "deleted": False,
        "priority": SyncPriority.NORMAL,
        "access_count": 3,
        "last_accessed_ns": None,
        "modified_at": 0,
        "timestamp_ns": 0,
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("preset", "accesses", "promoted"),
    [
        ("balanced", 2, False),
        ("balanced", 3, True),
        ("aggressive", 1, False),
        ("aggressive", 2, True),
        ("conservative", 4, False),
        ("conservative", 5, True),
    ],
)
def test_access_threshold_of_each_preset(
    store: Store, preset: str, accesses: int, promoted: bool
) -> None:
    store.working.add("w1", {"note": "x"}, priority=SyncPriority.HIGH)
    read(store, "w1", accesses)
    result = consolidate(store, PolicyConfig.preset(preset))
    assert result.promoted == (["w1"] if promoted else [])
    assert (store.episodic.get_by_id(promoted_id("w1")) is not None) is promoted


@pytest.mark.parametrize("preset", ["balanced", "aggressive", "conservative"])
def test_score_threshold_at_and_around(preset: str) -> None:
    config = PolicyConfig.preset(preset)
    at = now()
    # Find a record whose score lands just above the preset's threshold, then move the
    # threshold onto it and just past it.
    item = record(access_count=10, modified_at=at, priority=SyncPriority.NORMAL)
    score = promotion_score(item, at)
    assert qualifies(item, replace(config, promote_min_score=score), at)
    assert not qualifies(item, replace(config, promote_min_score=min(1.0, score + 1e-9)), at)
    # The recency term: the same record an hour older scores less.
    assert promotion_score(item, at + HOUR_NS) < score


def test_score_weighs_priority_accesses_and_recency() -> None:
    at = now()
    fresh = record(access_count=3, modified_at=at)
    assert promotion_score(fresh, at) == pytest.approx(0.4 * 2 / 4 + 0.3 * 0.3 + 0.3)
    # The score, not only the accesses, gates: a stale background item does not qualify.
    stale = record(access_count=3, modified_at=at, priority=SyncPriority.BACKGROUND)
    assert not qualifies(stale, PolicyConfig(), at + 100 * HOUR_NS)
    assert qualifies(fresh, PolicyConfig(), at)


def test_promoted_item_is_marked_and_never_promoted_twice(store: Store) -> None:
    store.working.add("w1", {"note": "x", "importance": 0.9})
    read(store, "w1", 3)
    first = consolidate(store)
    assert first.promoted == ["w1"]
    marked = store.working.get_by_id("w1")
    assert marked is not None
    assert marked["content"][PROMOTED_MARK] == promoted_id("w1")
    for _ in range(3):
        read(store, "w1", 5)
        assert consolidate(store).promoted == []
    events = [r for r in store.episodic.get_modified_since(0) if not r["deleted"]]
    assert len(events) == 1
    event = events[0]
    assert event["item_id"] == promoted_id("w1")
    assert event["content"]["promoted_from"] == "w1"
    assert event["content"]["episode_id"] == PROMOTED_EPISODE
    assert event["content"]["importance"] == 0.9


def test_promoted_event_keeps_its_own_episode_and_time(store: Store) -> None:
    store.working.add("w1", {"episode_id": "ep", "occurred_at_ns": 42})
    read(store, "w1", 3)
    consolidate(store)
    assert [r["item_id"] for r in store.episodic.events_of_episode("ep")] == [promoted_id("w1")]


def test_promoted_event_stays_in_the_items_namespace(store: Store) -> None:
    store.working.add("w1", {"note": "likes tea"}, namespace=("users", "alice"))
    store.working.add("w2", {"note": "no namespace"})
    read(store, "w1", 3)
    read(store, "w2", 3)
    assert sorted(consolidate(store).promoted) == ["w1", "w2"]
    filed = {r["item_id"]: r["namespace"] for r in store.episodic.get_modified_since(0)}
    assert filed == {promoted_id("w1"): ("users", "alice"), promoted_id("w2"): ()}


def test_expired_deleted_and_pinned_items(store: Store) -> None:
    store.working.add("gone", {"n": 1}, ttl_s=1)
    read(store, "gone", 3)
    store.working.add("deleted", {"n": 2})
    read(store, "deleted", 3)
    store.working.delete("deleted")
    store.working.add("pinned", {"n": 3}, pinned=True)
    read(store, "pinned", 3)
    assert consolidate(store, now_ns=now() + 10**9).promoted == ["pinned"]


def test_promoted_id_depends_on_the_working_id_only() -> None:
    assert promoted_id("w1") == promoted_id("w1") != promoted_id("w2")
    assert len(promoted_id("w1")) == 32


def test_updated_item_is_promoted_into_the_same_event(store: Store) -> None:
    store.working.add("w1", {"note": "old"})
    read(store, "w1", 3)
    consolidate(store)
    store.working.update("w1", {"note": "new"})  # replaces the content, mark included
    read(store, "w1", 3)
    assert consolidate(store).promoted == ["w1"]
    events = [r for r in store.episodic.get_modified_since(0) if not r["deleted"]]
    assert [(r["item_id"], r["content"]["note"]) for r in events] == [(promoted_id("w1"), "new")]
