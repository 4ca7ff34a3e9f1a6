"""Fixtures for the storage tests: stores on real files under tmp_path, and a table dump."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store
from memrepl.storage import open as open_store

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python: the checkout importable, as in this process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def dump(path: Path) -> str:
    """Every table's schema and rows (node.clock_last_ns included), as SQL text."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run on ``path`` with plain sqlite3 (as a user would)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


@pytest.fixture
def opener(db_path: Path) -> Iterator[Callable[..., Store]]:
    """``opener(node_id="node-a", path=db_path, **options)``: stores closed at teardown."""
    opened: list[Store] = []

    def opener(node_id: str = "node-a", path: Path | None = None, **options: Any) -> Store:
        store = open_store(path or db_path, node_id=node_id, **options)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[..., Store]) -> Store:
    return opener()


@pytest.fixture(params=list(MemoryTier), ids=lambda tier: tier.name.lower())
def tier(request: pytest.FixtureRequest) -> MemoryTier:
    tier: MemoryTier = request.param
    return tier
