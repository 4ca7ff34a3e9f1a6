"""The store worker: store work off the event loop, in turn per peer, in order within a peer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from memrepl.protocol.enums import MemoryTier
from memrepl.storage.records import StoredItem
from memrepl.sync.worker import StoreWorker

from .conftest import Cluster

DEADLINE_S = 60.0


@pytest.fixture
def worker() -> Iterator[StoreWorker]:
    made = StoreWorker("test-store")
    yield made
    made.close()


async def test_keys_take_turns_and_each_keeps_its_order(worker: StoreWorker) -> None:
    ran: list[str] = []
    gate = threading.Event()
    # The first job holds the worker until every other job is queued.
    first = asyncio.ensure_future(worker.run("flood", gate.wait, DEADLINE_S))
    await asyncio.sleep(0.05)
    jobs = [asyncio.ensure_future(worker.run("flood", ran.append, f"f{n}")) for n in range(5)]
    jobs += [asyncio.ensure_future(worker.run("urgent", ran.append, f"u{n}")) for n in range(2)]
    await asyncio.sleep(0.05)
    gate.set()
    async with asyncio.timeout(DEADLINE_S):
        await asyncio.gather(first, *jobs)
    # The other key's jobs come in turn, not after the whole queue of the first.
    assert ran == ["f0", "u0", "f1", "u1", "f2", "f3", "f4"]


async def test_results_errors_and_the_thread(worker: StoreWorker) -> None:
    assert await worker.run("k", threading.get_ident) != threading.get_ident()
    assert await worker.run("k", pow, 2, 10) == 1024
    with pytest.raises(ZeroDivisionError):
        await worker.run("k", lambda: 1 / 0)


async def test_a_cancelled_job_that_has_not_started_never_runs(worker: StoreWorker) -> None:
    ran: list[int] = []
    gate = threading.Event()
    first = asyncio.ensure_future(worker.run("k", gate.wait, DEADLINE_S))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(worker.run("k", ran.append, 2))
    await asyncio.sleep(0.05)
    second.cancel()
    gate.set()
    await first
    await asyncio.sleep(0.05)
    assert await worker.run("k", ran.append, 3) is None
    assert ran == [3]


async def test_closing_drops_what_is_queued(worker: StoreWorker) -> None:
    gate = threading.Event()
    first = asyncio.ensure_future(worker.run("k", gate.wait, DEADLINE_S))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(worker.run("k", int, "1"))
    await asyncio.sleep(0.05)
    closing = asyncio.ensure_future(asyncio.to_thread(worker.close))
    await asyncio.sleep(0.05)
    gate.set()
    await closing
    assert await first is True  # the running job finished
    with pytest.raises(RuntimeError, match="closed before this job ran"):
        await queued
    with pytest.raises(RuntimeError, match="closed"):
        await worker.run("k", int, "2")


async def test_a_manager_with_a_worker_commits_batches_off_the_loop(
    cluster: Cluster, worker: StoreWorker
) -> None:
    a = cluster.add("a")
    cluster.add("b", store_worker=worker)
    committed_in: list[int] = []
    semantic = cluster.stores["b"].semantic
    original = semantic._after_commit

    def note(changed: list[StoredItem]) -> None:
        committed_in.append(threading.get_ident())
        original(changed)

    semantic._after_commit = note  # type: ignore[method-assign]
    cluster.stores["a"].semantic.add_concept("paris", "city")
    async with asyncio.timeout(DEADLINE_S):
        result = await a.sync_with_peer("b", MemoryTier.SEMANTIC)
    assert result.ok and result.items == 1
    assert committed_in and threading.get_ident() not in committed_in
    # The graph hook ran too: the concept is in b's graph.
    assert len(semantic.graph) == 1
