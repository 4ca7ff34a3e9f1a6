"""Fixtures for the mesh tests: nodes (a store file, a sync manager, a TcpMesh) on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import memrepl
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.tcp import TcpMesh
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.migrate import REPLICATION_REVISION
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager

KEY = b"the-cluster-key-for-mesh-tests-0"
SCHEMA = REPLICATION_REVISION
#: Quick timings, so that reconnects and timeouts fit in a test.
FAST = TcpMeshConfig(
    heartbeat_interval_s=0.5,
    idle_timeout_s=5.0,
    reconnect_base_s=0.05,
    reconnect_cap_s=0.3,
    connect_timeout_s=2.0,
    handshake_timeout_s=3.0,
)


@dataclass
class Node:
    """One node of a test cluster."""

    node_id: str
    store: Store
    manager: MemorySyncManager
    mesh: TcpMesh


def raw_rows(store: Store) -> dict[MemoryTier, list[dict[str, Any]]]:
    """Every row of every tier, bookkeeping included: must not move under an attack."""
    return {tier: store.tier(tier).get_modified_since(0) for tier in MemoryTier}


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``check()`` holds; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Cluster:
    """Nodes in one event loop, each with its own store file and TcpMesh."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nodes: dict[str, Node] = {}

    async def add(
        self,
        node_id: str,
        *,
        key: bytes | None = KEY,
        schema: str = SCHEMA,
        config: TcpMeshConfig = FAST,
        port: int = 0,
        store: Store | None = None,
        ack_timeout_s: float = 5.0,
        **mesh_options: Any,
    ) -> Node:
        if store is None:
            store = memrepl.open(self.directory / f"{node_id}.db", node_id=node_id)
        if "certificate" in mesh_options:
            key = None
        mesh = TcpMesh(
            node_id, key, schema_revision=schema, port=port, config=config, **mesh_options
        )
        manager = MemorySyncManager(node_id=node_id, mesh=mesh, ack_timeout_s=ack_timeout_s)
        for tier in MemoryTier:
            manager.register_memory_tier(tier, store.tier(tier))
        await mesh.start()
        node = self.nodes[node_id] = Node(node_id, store, manager, mesh)
        return node

    @staticmethod
    def dial(a: Node, b: Node) -> None:
        """Make ``a`` dial ``b``."""
        a.mesh.add_peer(b.node_id, "127.0.0.1", b.mesh.port)

    async def connected(self, a: Node, b: Node, timeout_s: float = 5.0) -> None:
        await a.mesh.wait_for_peer(b.node_id, timeout_s)
        await b.mesh.wait_for_peer(a.node_id, timeout_s)

    async def stop_mesh(self, node_id: str) -> Node:
        """Close a node's mesh, keeping its store open (to restart it)."""
        node = self.nodes[node_id]
        await node.mesh.close()
        return node

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.mesh.close()
        for node in self.nodes.values():
            node.store.close()
        self.nodes.clear()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(tmp_path)
    try:
        yield made
    finally:
        await made.close()
