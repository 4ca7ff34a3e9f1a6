"""Search by meaning through ``IndexConfig``: a LangChain ``Embeddings`` object or a function,
``fields`` and ``put(index=...)`` (which replicate with the item), a re-put that indexes less,
hybrid ranking, and the model's name recorded with the vectors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from memrepl.integrations.langgraph import MemreplStore
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.manager import MemorySyncManager

from ..files import query
from .conftest import DIMS, embed

CONFIG = {"dims": DIMS, "embed": embed}


def keys(items: list[object]) -> list[str]:
    return [item.key for item in items]  # type: ignore[attr-defined]


def test_fields_and_index_choose_what_is_found_by_meaning(
    make_store: Callable[..., MemreplStore],
) -> None:
    store = make_store(index={**CONFIG, "fields": ["summary"]})
    store.put(("docs",), "default", {"summary": "green tea", "body": "paris"})
    store.put(("docs",), "body", {"summary": "green tea", "body": "paris"}, index=["body"])
    store.put(("docs",), "none", {"summary": "paris"}, index=False)
    store.put(
        ("docs",),
        "chapters",
        {"chapters": [{"t": "rome"}, {"t": "paris"}]},
        index=["chapters[*].t"],
    )
    found = store.search(("docs",), query="paris", limit=10)
    assert set(keys(found[:2])) == {"body", "chapters"}
    assert found[0].score == pytest.approx(1.0, abs=1e-5)
    assert "none" not in keys(found)
    assert keys(store.search(("docs",), query="green tea", limit=1)) == ["default"]
    # Not embedded is not hidden: listing and filtering still find it.
    assert "none" in keys(store.search(("docs",), filter={"summary": "paris"}))


def test_a_re_put_that_indexes_less_is_no_longer_found_by_its_old_text(
    make_store: Callable[..., MemreplStore],
) -> None:
    # LangGraph's InMemoryStore keeps the old vectors here (and finds "k" by "tea"); memrepl
    # embeds each put's own texts only.
    store = make_store(index=CONFIG)
    store.put(("docs",), "k", {"text": "green tea"})
    store.put(("docs",), "other", {"text": "black coffee"})
    assert keys(store.search(("docs",), query="tea", limit=1)) == ["k"]
    store.put(("docs",), "k", {"text": "green tea"}, index=False)
    assert keys(store.search(("docs",), query="tea", limit=5)) == ["other"]


def test_a_langchain_embeddings_object_and_its_name(
    make_store: Callable[..., MemreplStore],
) -> None:
    model = DeterministicFakeEmbedding(size=16)
    store = make_store(index={"dims": 16, "embed": model})
    store.put(("docs",), "a", {"text": "alpha"})
    store.put(("docs",), "b", {"text": "beta"})
    [hit] = store.search(("docs",), query='{"text": "beta"}', limit=1)
    assert hit.key == "b" and hit.score == pytest.approx(1.0, abs=1e-5)
    recorded = query(store.store.path, "SELECT embedder, dims FROM vector_indexes")
    assert recorded == [("langgraph:DeterministicFakeEmbedding", 16)]


def test_hybrid_and_keyword_modes(make_store: Callable[..., MemreplStore]) -> None:
    store = make_store(index=CONFIG, search_mode="hybrid")
    store.put(("m",), "1", {"fact": "alice is allergic to peanuts"})
    store.put(("m",), "2", {"fact": "bob flies to lisbon"})
    hits = store.search(("m",), query="peanuts allergy")
    assert keys(hits)[0] == "1"
    assert hits[0].score == pytest.approx(2 / 61, abs=1e-6)  # first in both lists (RRF)
    keyword = make_store("k")
    keyword.put(("m",), "1", {"fact": "alice is allergic to peanuts"})
    assert keys(keyword.search(("m",), query="peanuts")) == ["1"]


def test_what_a_peer_wrote_is_found_by_meaning_with_its_fields(
    make_store: Callable[..., MemreplStore],
) -> None:
    a = make_store("a", index={**CONFIG, "fields": ["title"]})
    b = make_store("b", index=CONFIG)  # b's default fields differ: a's choice travels
    a.put(("docs",), "k", {"title": "tea ceremony", "body": "kyoto"})
    a.put(("docs",), "hidden", {"title": "tea"}, index=False)
    managers = {name: MemorySyncManager(node_id=name) for name in ("a", "b")}
    for name, store in (("a", a), ("b", b)):
        managers[name].register_memory_tier(MemoryTier.EPISODIC, store.store.episodic)
    managers["b"].apply_sync_batch(managers["a"].create_delta_batch(MemoryTier.EPISODIC, "b"))
    for store in (a, b):
        [hit] = store.search(("docs",), query="tea ceremony", limit=5)
        assert hit.key == "k" and hit.score == pytest.approx(1.0, abs=1e-5)
