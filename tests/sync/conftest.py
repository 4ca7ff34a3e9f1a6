"""Fixtures for the sync tests: stores on real files, managers on a LocalMesh."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import memrepl
from memrepl.mesh import LocalMesh
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager


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
