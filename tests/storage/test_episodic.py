"""Episodic memory (L2): events of an episode in time order and episodes of a time range, as index
queries (the plans of the statements the code runs, on each backend), tombstones excluded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memrepl.aio
from memrepl.errors import InvalidArgumentError
from memrepl.storage import LocalWrite, Store

from .plans import analyze, plan, reads_through
from .sqltrace import statements_run


def event_(episode: str, at: int, **more: Any) -> dict[str, Any]:
    return {"episode_id": episode, "occurred_at_ns": at, **more}


@pytest.fixture
def filled(store: Store) -> Store:
    memory = store.episodic
    memory.add("e3", event_("ep-a", 30))
    memory.add("e1", event_("ep-a", 10))
    memory.add("e2", event_("ep-a", 20))
    memory.add("f1", event_("ep-b", 15))
    memory.add("g1", event_("ep-c", 100))
    memory.add("no-time", {"episode_id": "ep-a"})
    memory.add("no-episode", {"occurred_at_ns": 12})
    memory.add("bad-time", {"episode_id": "ep-a", "occurred_at_ns": "soon"})
    return store


def test_events_of_episode_in_time_order(filled: Store) -> None:
    events = filled.episodic.events_of_episode("ep-a")
    assert [e["item_id"] for e in events] == ["e1", "e2", "e3"]
    assert events[0]["content"] == event_("ep-a", 10)
    assert filled.episodic.events_of_episode("nothing") == []


def test_tombstones_and_moves(filled: Store) -> None:
    filled.episodic.delete("e2")
    filled.episodic.update("f1", event_("ep-a", 25))
    assert [e["item_id"] for e in filled.episodic.events_of_episode("ep-a")] == ["e1", "f1", "e3"]
    assert filled.episodic.events_of_episode("ep-b") == []
    assert filled.episodic.episodes_between(0, 50) == ["ep-a"]


def test_episodes_between(filled: Store) -> None:
    assert filled.episodic.episodes_between(0, 1_000) == ["ep-a", "ep-b", "ep-c"]
    assert filled.episodic.episodes_between(15, 15) == ["ep-b"]
    assert filled.episodic.episodes_between(16, 99) == ["ep-a"]
    assert filled.episodic.episodes_between(31, 99) == []
    assert filled.episodic.episodes_between(100, 0) == []
    with pytest.raises(InvalidArgumentError, match="episodes_between"):
        filled.episodic.episodes_between("0", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="events_of_episode"):
        filled.episodic.events_of_episode(7)  # type: ignore[arg-type]


@pytest.fixture
def indexed(filled: Store) -> Store:
    """``filled`` among 3,000 events of 300 other episodes, later in time (PostgreSQL plans by
    statistics: the index must be the better way for the planner to take it)."""
    filled.episodic.write_many(
        [LocalWrite.add(f"x{n}", event_(f"other-{n % 300}", 1_000 + n)) for n in range(3_000)]
    )
    analyze(filled)
    return filled


def plans(store: Store, action: Callable[[], object]) -> list[str]:
    """The plans of every SELECT ``action`` sends (its parameters bound), one text each."""
    selects = [
        sql for sql in statements_run(store, action) if sql.lstrip().upper().startswith("SELECT")
    ]
    assert selects
    return [" | ".join(plan(store, sql)) for sql in selects]


def test_events_of_episode_uses_its_index(indexed: Store, backend: str) -> None:
    (found,) = plans(indexed, lambda: indexed.episodic.events_of_episode("ep-a"))
    if backend == "sqlite":
        assert "USING INDEX ix_episodic_items_episode_occurred (episode_id=?" in found
        assert "SCAN episodic_items" not in found
    else:
        assert reads_through(found, "ix_episodic_items_episode_occurred", "episodic_items"), found


def test_episodes_between_uses_its_index(indexed: Store, backend: str) -> None:
    (found,) = plans(indexed, lambda: indexed.episodic.episodes_between(10, 20))
    if backend == "sqlite":
        assert "USING INDEX ix_episodic_items_occurred_episode (occurred_at_ns>? AND" in found
        assert "SCAN episodic_items" not in found
    else:
        assert reads_through(found, "ix_episodic_items_occurred_episode", "episodic_items"), found


async def test_async_twin(db_path: Path) -> None:
    store = await memrepl.aio.open(db_path, node_id="node-a")
    try:
        await store.episodic.add("e2", event_("ep", 2))
        await store.episodic.add("e1", event_("ep", 1))
        events = await store.episodic.events_of_episode("ep")
        assert [e["item_id"] for e in events] == ["e1", "e2"]
        assert await store.episodic.episodes_between(0, 5) == ["ep"]
    finally:
        await store.close()
