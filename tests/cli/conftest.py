"""Fixtures for the CLI tests: ``main([...])`` run in-process on real store files under tmp_path.

The ``cli`` fixture runs one command line and returns what a user would see: the exit code,
stdout and stderr. Tests run in ``tmp_path`` as the working directory with ``MEMREPL_DB``
unset, so the default store (``./memrepl.db``) is always a fresh file of the test's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import memrepl
from memrepl.cli.main import main
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager


@dataclass(frozen=True)
class Result:
    """What one ``memrepl`` command line produced."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as one JSON document."""
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        """stdout as JSON lines."""
        return [json.loads(line) for line in self.out.splitlines()]

    @property
    def error_lines(self) -> list[str]:
        return self.err.splitlines()


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMREPL_DB", raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``memrepl *args`` in-process: ``cli("get", "working", "x")``."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def db(tmp_path: Path, cli: Cli) -> Path:
    """A store created with ``memrepl init`` for node ``node-a``."""
    path = tmp_path / "store.db"
    assert cli("init", "--node-id", "node-a", "--db", path).code == 0
    return path


class Nodes:
    """Stores on files under one directory, each with a MemorySyncManager (no mesh)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stores: dict[str, Store] = {}
        self.managers: dict[str, MemorySyncManager] = {}

    def add(self, node_id: str) -> Store:
        store = memrepl.open(self.path(node_id), node_id=node_id)
        manager = MemorySyncManager(node_id=node_id)
        for tier in MemoryTier:
            manager.register_memory_tier(tier, store.tier(tier))
        self.stores[node_id] = store
        self.managers[node_id] = manager
        return store

    def path(self, node_id: str) -> Path:
        return self.directory / f"{node_id}.db"

    def ship(self, source: str, target: str, tier: MemoryTier) -> tuple[int, int]:
        """Send ``source``'s delta for ``tier`` to ``target`` and apply it there."""
        batch = self.managers[source].create_delta_batch(tier, target)
        return self.managers[target].apply_sync_batch(batch)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    made = Nodes(tmp_path)
    yield made
    made.close()
