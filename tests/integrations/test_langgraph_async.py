"""The asyncio side: every ``a*`` method gives what its sync twin gives, the event loop keeps
running while the store and the model work, and an async-only embedding function works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest
from langgraph.store.base import GetOp, ListNamespacesOp, PutOp, SearchOp

from memrepl.errors import EmbedderError
from memrepl.integrations.langgraph import MemreplStore

from .conftest import DIMS, embed


async def test_the_async_methods(store: MemreplStore) -> None:
    await store.aput(("users", "a"), "k1", {"text": "likes tea", "n": 1})
    await store.aput(("users", "b"), "k2", {"text": "likes coffee", "n": 2})
    item = await store.aget(("users", "a"), "k1")
    assert item is not None and item.value == {"text": "likes tea", "n": 1}
    assert await store.aget(("users", "a"), "missing") is None
    assert [i.key for i in await store.asearch(("users",), filter={"n": {"$gt": 1}})] == ["k2"]
    assert [i.key for i in await store.asearch(("users",), query="tea")] == ["k1"]
    assert await store.alist_namespaces(prefix=("users",), max_depth=1) == [("users",)]
    await store.adelete(("users", "a"), "k1")
    assert await store.aget(("users", "a"), "k1") is None
    results = await store.abatch(
        [
            PutOp(("x",), "k", {"v": 1}),
            GetOp(("users", "b"), "k2"),
            SearchOp(("users",)),
            ListNamespacesOp(),
        ]
    )
    assert results[0] is None
    assert results[1] is not None and results[1].key == "k2"  # type: ignore[union-attr]
    assert [i.key for i in results[2]] == ["k2"]  # type: ignore[union-attr]
    assert results[3] == [("users", "b")]
    assert store.get(("x",), "k") is not None  # the same store, sync or async


async def test_the_event_loop_runs_while_the_store_and_the_model_work(
    make_store: Callable[..., MemreplStore],
) -> None:
    def slow_embed(texts: Sequence[str]) -> list[list[float]]:
        time.sleep(0.5)  # a model taking its time, in the indexer's and the searcher's threads
        return embed(texts)

    store = make_store(index={"dims": DIMS, "embed": slow_embed})
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0.05)
    before = ticks
    await store.aput(("docs",), "k", {"text": "green tea"})
    hits = await store.asearch(("docs",), query="tea")  # waits for the index: a second at least
    during = ticks - before
    running = False
    await task
    assert [hit.key for hit in hits] == ["k"]
    # Blocked, the loop would not have ticked at all while the model slept.
    assert during >= 10


async def test_an_async_only_embedding_function(make_store: Callable[..., MemreplStore]) -> None:
    calls: list[int] = []

    async def aembed(texts: Sequence[str]) -> list[list[float]]:
        calls.append(len(texts))
        await asyncio.sleep(0)
        return embed(texts)

    store = make_store(index={"dims": DIMS, "embed": aembed})
    await store.aput(("docs",), "tea", {"text": "green tea"})
    await store.aput(("docs",), "sky", {"text": "blue sky"})
    hits = await store.asearch(("docs",), query="tea")
    assert [hit.key for hit in hits][:1] == ["tea"]
    # The whole value is the text ("$"): {"text": "green tea"} is three words, one of them "tea".
    assert hits[0].score == pytest.approx(1 / 3**0.5, abs=1e-4)
    assert calls  # it ran, on this loop
    # A sync search from the loop's own thread cannot wait for the loop: it says so.
    with pytest.raises(EmbedderError) as caught:
        store.search(("docs",), query="tea")
    assert "async" in str(caught.value)


def test_an_async_only_embedding_function_without_a_loop(
    make_store: Callable[..., MemreplStore],
) -> None:
    async def aembed(texts: Sequence[str]) -> list[list[float]]:
        return embed(texts)

    store = make_store(index={"dims": DIMS, "embed": aembed})
    store.put(("docs",), "tea", {"text": "green tea"})
    assert [hit.key for hit in store.search(("docs",), query="tea")] == ["tea"]
