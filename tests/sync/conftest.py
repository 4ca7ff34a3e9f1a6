"""Fixtures for the sync tests: stores on real databases (a SQLite file, or a PostgreSQL database:
every sync test runs on both), managers on a LocalMesh."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import memrepl
from memrepl.mesh import LocalMesh
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager

from ..conftest import Location, Locator
from ..pgserver import Databases


class Cluster:
    """Nodes in one process: a store file, a manager and a LocalMesh endpoint each."""

    def __init__(self, locate: Locator) -> None:
        self.locate = locate
        self.hub = LocalMesh()
        self.stores: dict[str, Store] = {}
        self.managers: dict[str, MemorySyncManager] = {}

    def location(self, node_id: str) -> Location:
        """Where ``node_id``'s store lives (its file, or its database's URL)."""
        return self.locate(node_id)

    def add(self, node_id: str, **manager_options: object) -> MemorySyncManager:
        store = memrepl.open(self.location(node_id), node_id=node_id)
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
def cluster(locate: Locator) -> Iterator[Cluster]:
    made = Cluster(locate)
    yield made
    made.close()


ClusterFactory = Callable[[], Cluster]


#: How many of a property test's examples (or crash trials) run on PostgreSQL, as a share of
#: those on SQLite: each example there costs round trips to a server and fresh databases, and
#: the properties are the backend-independent rules the SQLite runs explore at full length; the
#: PostgreSQL runs check that the backend keeps them, on a third as many draws.
POSTGRESQL_SHARE = 3


def examples(backend: str, count: int) -> int:
    """The number of examples (or trials) to run on ``backend``, ``count`` being SQLite's."""
    return count if backend == "sqlite" else max(1, count // POSTGRESQL_SHARE)


class FreshStores:
    """Fresh store locations for property tests that open several stores per example: copies of
    a migrated store without a node row (no Alembic per store), given back by :meth:`release`
    at the example's end."""

    def __init__(self, backend: str, directory: Path, databases: Databases | None) -> None:
        self.backend = backend
        self.directory = directory
        self.databases = databases
        self._example: Path | None = None

    def new(self, name: str) -> Location:
        """The location of a new store called ``name`` in this example."""
        if self.databases is not None:
            return self.databases.create()
        if self._example is None:
            self._example = Path(tempfile.mkdtemp(dir=self.directory))
        path = self._example / f"{name}.db"
        shutil.copy(sqlite_template(self.directory), path)
        return path

    def release(self) -> None:
        """Give back every store of this example (they must be closed)."""
        if self.databases is not None:
            self.databases.release_created()
        elif self._example is not None:
            shutil.rmtree(self._example, ignore_errors=True)
            self._example = None


def sqlite_template(directory: Path) -> Path:
    """A migrated SQLite store without a node row, made once per directory."""
    path = directory / "template.db"
    if not path.exists():
        memrepl.open(path, node_id="template").close()
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("DELETE FROM node")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return path


@pytest.fixture
def fresh_stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[FreshStores]:
    databases = request.getfixturevalue("postgres") if backend == "postgresql" else None
    fresh = FreshStores(backend, tmp_path, databases)
    yield fresh
    fresh.release()
