"""Fixtures for the policy tests: stores on real files under tmp_path, events and sync helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from memrepl import MemorySyncManager, MemoryTier
from memrepl.storage import Store

SECOND_NS = 1_000_000_000
HOUR_NS = 3_600 * SECOND_NS


@pytest.fixture
def open_store(opener: Callable[..., Store], tmp_path: Path) -> Callable[[str], Store]:
    """``open_store(node_id)``: the node's own store, in its own file (closed at teardown)."""
    return lambda node_id="a": opener(node_id, tmp_path / f"{node_id}.db")


@pytest.fixture
def store(open_store: Callable[[str], Store]) -> Store:
    return open_store("a")


def now() -> int:
    return time.time_ns()


def entity(name: str, kind: str = "person") -> dict[str, str]:
    return {"name": name, "type": kind}


def add_episode(
    store: Store,
    episode_id: str,
    *,
    events: int = 3,
    importance: float = 0.8,
    accesses: int = 2,
    closed: bool = True,
    occurred_ns: int | None = None,
    entities: Sequence[dict[str, str]] = (),
    relations: Sequence[dict[str, str]] = (),
) -> list[str]:
    """Add ``events`` events of ``episode_id`` (entities and relations on the first), read the
    first one ``accesses`` times; their ids."""
    start = now() if occurred_ns is None else occurred_ns
    ids = []
    for index in range(events):
        content: dict[str, Any] = {
            "episode_id": episode_id,
            "occurred_at_ns": start + index,
            "importance": importance,
        }
        if index == 0:
            content["entities"] = list(entities)
            content["relations"] = list(relations)
        if closed and index == events - 1:
            content["closed"] = True
        item_id = f"{episode_id}-{index}"
        store.episodic.add(item_id, content)
        ids.append(item_id)
    for _ in range(accesses):
        store.episodic.get_by_id(ids[0])
    return ids


def exchange(a: Store, b: Store) -> None:
    """Send every change of every tier from a to b and from b to a (batch by batch)."""
    managers = {}
    for store in (a, b):
        manager = MemorySyncManager(node_id=store.node_id, mesh=None)
        for tier in MemoryTier:
            manager.register_memory_tier(tier, store.tier(tier))
        managers[store.node_id] = manager
    for source, target in ((a, b), (b, a)):
        for tier in MemoryTier:
            since = 0
            while True:
                batch = managers[source.node_id].create_delta_batch(
                    tier, target.node_id, since_timestamp=since, include_echoes=True
                )
                if not batch.items:
                    break
                managers[target.node_id].apply_sync_batch(batch)
                assert batch.cursor is not None
                since = batch.cursor
