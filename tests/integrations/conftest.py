"""Fixtures for the LangGraph store tests: ``MemreplStore`` on real files, LangGraph's own stores
to compare with, a deterministic embedding function, and a wall clock the test moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.sqlite import SqliteStore

import memrepl
from memrepl.integrations.langgraph import MemreplStore
from memrepl.storage.embedders import HashingEmbedder

DIMS = 64
_HASHING = HashingEmbedder(DIMS)


def embed(texts: Sequence[str]) -> list[list[float]]:
    """A deterministic embedding function (feature hashing of words), as LangGraph takes one."""
    return _HASHING.embed(list(texts))


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., MemreplStore]]:
    """``make_store(name="a", wall=None, **options)``: a MemreplStore on ``tmp_path/name.db``
    (node id ``name``); closed, with its memrepl store, at teardown."""
    made: list[tuple[MemreplStore, memrepl.Store]] = []

    def make(
        name: str = "a", wall: Callable[[], int] | None = None, **options: Any
    ) -> MemreplStore:
        opened = memrepl.open(
            tmp_path / f"{name}.db", node_id=name, **({"wall": wall} if wall else {})
        )
        store = MemreplStore(opened, **options)
        made.append((store, opened))
        return store

    yield make
    for store, opened in made:
        store.close()
        opened.close()


@pytest.fixture
def store(make_store: Callable[..., MemreplStore]) -> MemreplStore:
    return make_store()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    """LangGraph's own SqliteStore (no vector index: sqlite-vec cannot load here)."""
    with SqliteStore.from_conn_string(str(tmp_path / "langgraph.db")) as made:
        made.setup()
        yield made
