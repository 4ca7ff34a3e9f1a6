"""Fixtures every test package may use: stores on real database files under ``tmp_path``, and
each tier in turn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The file ``opener`` opens unless told another."""
    return tmp_path / "node.db"


@pytest.fixture
def opener(db_path: Path) -> Iterator[Callable[..., Store]]:
    """``opener(node_id="node-a", path=db_path, **options)``: ``memrepl.open`` on a real file;
    every store it opened is closed at teardown."""
    opened: list[Store] = []

    def opener(node_id: str = "node-a", path: Path | None = None, **options: Any) -> Store:
        store = memrepl.open(path or db_path, node_id=node_id, **options)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture(params=list(MemoryTier), ids=lambda tier: tier.name.lower())
def tier(request: pytest.FixtureRequest) -> MemoryTier:
    """Each tier in turn (a test asking for ``tier`` runs once per tier)."""
    chosen: MemoryTier = request.param
    return chosen
