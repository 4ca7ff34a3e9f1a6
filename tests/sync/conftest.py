"""Fixtures and helpers for the sync tests: stores on real files, managers on a LocalMesh."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memrepl
from memrepl.mesh import LocalMesh
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager


def replicated(store: Store, tier: MemoryTier) -> list[tuple[Any, ...]]:
    """A tier as every node must agree on it: ids, versions, tombstones, contents (key order
    inside a JSON object is not part of its value)."""
    return sorted(
        (
            r["item_id"],
            r["timestamp_ns"],
            r["origin_node"],
            r["deleted"],
            json.dumps(r["content"], sort_keys=True),
        )
        for r in store.tier(tier).get_modified_since(0)
    )


class Cluster:
    """Nodes in one process: a store file, a manager and a LocalMesh endpoint each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hub = LocalMesh()
        self.stores: dict[str, Store] = {}
        self.managers: dict[str, MemorySyncManager] = {}

    def add(self, node_id: str, **manager_options: object) -> MemorySyncManager:
        store = memrepl.open(self.directory / f"{node_id}.db", node_id=node_id)
        manager = MemorySyncManager(
            node_id=node_id,
            mesh=self.hub.endpoint(node_id),
            **manager_options,  # type: ignore[arg-type]
        )
        for tier in MemoryTier:
            manager.register_memory_tier(tier, store.tier(tier))  # type: ignore[arg-type]
        self.stores[node_id] = store
        self.managers[node_id] = manager
        return manager

    def reopen(self, node_id: str, **manager_options: object) -> MemorySyncManager:
        """Close ``node_id``'s store and open it again with a new manager (a restart). The node
        keeps its endpoint on the hub; the new manager's handlers replace the old one's."""
        self.stores.pop(node_id).close()
        return self.add(node_id, **manager_options)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    yield made
    made.close()


ClusterFactory = Callable[[], Cluster]
