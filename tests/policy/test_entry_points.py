"""The policies run on a store (``memrepl.consolidate(store)``) and periodically in a node."""

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


def test_consolidate_promotes_once(store: Store) -> None:
    hot_item(store, "task-1")
    first = memrepl.consolidate(store)
    assert first.promoted == ["task-1"]
    again = memrepl.consolidate(store, since_ns=first.cursor)
    assert again.promoted == []
    (event,) = store.episodic.get_modified_since(0)
    assert event["content"]["promoted_from"] == "task-1"


def test_a_config_changes_what_is_promoted(store: Store) -> None:
    hot_item(store, "task-1")  # three reads: enough for balanced, not for conservative (5)
    strict = memrepl.PolicyConfig.preset("conservative")
    assert memrepl.consolidate(store, strict).promoted == []
    assert memrepl.consolidate(store, memrepl.PolicyConfig.preset("balanced")).promoted == [
        "task-1"
    ]


def test_the_store_no_longer_runs_the_policies_itself(store: Store) -> None:
    # Storage is a layer below the policies (tests/test_layering.py): memrepl.consolidate(store).
    assert not hasattr(store, "consolidate")


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
