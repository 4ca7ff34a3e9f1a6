"""The policies run from the store (``store.consolidate()``) and periodically in a node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import memrepl
from memrepl import SyncPriority
from memrepl.mesh import LocalMesh
from memrepl.node import Node
from memrepl.node.config import NodeSettings
from memrepl.storage import Store


def hot_item(store: Store, item_id: str) -> None:
    store.working.add(item_id, {"goal": "book flights"}, priority=SyncPriority.URGENT)
    for _ in range(3):
        store.working.get_by_id(item_id)


def test_store_consolidate_promotes_once(store: Store) -> None:
    hot_item(store, "task-1")
    first = store.consolidate()
    assert first.promoted == ["task-1"]
    again = store.consolidate(since_ns=first.cursor)
    assert again.promoted == []
    assert len(store.episodic.get_modified_since(0)) == 1
    assert memrepl.consolidate is not None and memrepl.PolicyConfig.preset("balanced")


async def test_a_node_runs_the_policies_periodically(tmp_path: Path) -> None:
    hub = LocalMesh()
    settings = NodeSettings(consolidate_interval_s=0.05, sync_interval_s=3600)
    async with Node(
        tmp_path / "a.db", node_id="a", mesh=hub.endpoint("a"), settings=settings
    ) as node:
        hot_item(node.store, "task-1")
        for _ in range(200):
            if node.store.episodic.get_modified_since(0):
                break
            await asyncio.sleep(0.02)
        events = node.store.episodic.get_modified_since(0)
        assert [e["content"]["promoted_from"] for e in events] == ["task-1"]
