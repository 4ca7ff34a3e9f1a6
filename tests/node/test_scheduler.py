"""The scheduler, with two :class:`Node` objects embedded in one asyncio test (real TCP sockets).

URGENT writes go out at once, HIGH ones within ``high_delay_s``, NORMAL ones wait for the
background round; a stopped node leaves no task behind.

No test measures "at once" with a stopwatch (a loaded runner makes any threshold flaky): each
test switches off every other way a write could travel (background round, catch-up round, HIGH
delay: an hour away) and waits, with a generous deadline, for the one path it tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from memrepl.errors import NodeStateError
from memrepl.mesh import LocalMesh
from memrepl.node import Node, NodeSettings
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage.tiers import Tier

KEY = b"a-cluster-key-for-the-scheduler-tests"
#: Far enough away never to happen during a test.
NEVER_S = 3600.0
#: How long a write that goes out at once may take to arrive on a loaded machine.
DEADLINE_S = 20.0


def has(tier: Tier, item_id: str) -> bool:
    """Whether ``tier`` holds a live ``item_id`` (without counting an access)."""
    return any(r["item_id"] == item_id and not r["deleted"] for r in tier.get_modified_since(0))


async def arrival(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@asynccontextmanager
async def pair(tmp_path: Path, settings: NodeSettings) -> AsyncIterator[tuple[Node, Node]]:
    a = Node(tmp_path / "a.db", node_id="a", key=KEY, settings=settings)
    async with a:
        b = Node(tmp_path / "b.db", node_id="b", key=KEY, peers={"a": a.address}, settings=settings)
        async with b:
            await b.wait_for_peer("a", 5)
            await a.wait_for_peer("b", 5)
            await asyncio.sleep(0.3)  # past the catch-up rounds of the new connection
            yield a, b


@pytest.fixture
async def quiet_pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two connected nodes with no background or catch-up round in sight; HIGH waits 0.3 s."""
    settings = NodeSettings(sync_interval_s=NEVER_S, catch_up_delay_s=NEVER_S, high_delay_s=0.3)
    async with pair(tmp_path, settings) as nodes:
        yield nodes


async def test_an_urgent_write_arrives_at_once(quiet_pair: tuple[Node, Node]) -> None:
    # Nothing but the URGENT push can bring it before an hour has passed.
    a, b = quiet_pair
    a.store.working.add("alarm", {"level": "red"}, priority=SyncPriority.URGENT)
    await arrival(lambda: has(b.store.working, "alarm"), DEADLINE_S)
    # Also from b's side, and for a write of another process -- the poll sees it.
    b.store.semantic.add("fact", {"kind": "concept"}, priority=SyncPriority.URGENT)
    await arrival(lambda: has(a.store.semantic, "fact"), DEADLINE_S)


async def test_a_high_write_arrives_after_the_high_delay(quiet_pair: tuple[Node, Node]) -> None:
    a, b = quiet_pair
    a.store.episodic.add("soon", {"x": 1}, priority=SyncPriority.HIGH)
    took = await arrival(lambda: has(b.store.episodic, "soon"), DEADLINE_S)
    # Not pushed at once: it waited for the HIGH delay (a lower bound a slow machine only
    # lengthens); and it did not wait for a round, none comes within the hour.
    assert took >= 0.25


async def test_a_normal_write_waits_for_the_background_round(tmp_path: Path) -> None:
    interval = 2.0
    settings = NodeSettings(sync_interval_s=interval, high_delay_s=0.1)
    async with pair(tmp_path, settings) as (a, b):
        started = time.time_ns()

        def background_round_ran() -> bool:
            # The catch-up rounds of the connection run at once; the first background round
            # only after ``interval``. A write during a round may still make it into that round:
            # wait until the round has ended.
            return all(
                s.last_success_ns is not None
                and s.last_success_ns > started + int(0.75 * interval * 1e9)
                for s in a.status()
                if s.peer_id == "b"
            )

        await arrival(background_round_ran, DEADLINE_S)
        a.store.episodic.add("later", {"x": 1})
        await asyncio.sleep(interval / 2)
        assert not has(b.store.episodic, "later")
        # Only the next background round brings it (no HIGH or URGENT path for a NORMAL write).
        await arrival(lambda: has(b.store.episodic, "later"), DEADLINE_S)
        (status,) = [s for s in a.status() if s.peer_id == "b" and s.tier == MemoryTier.EPISODIC]
        assert status.connected and status.last_success_ns is not None
        assert status.last_error is None


async def test_sync_now_and_status(quiet_pair: tuple[Node, Node]) -> None:
    a, b = quiet_pair
    a.store.episodic.add("e", {"x": 1})
    results = await a.sync_now()
    assert {(r.peer_id, r.tier) for r in results} == {("b", t) for t in MemoryTier}
    assert all(r.ok for r in results)
    assert has(b.store.episodic, "e")
    assert a.monitor.flows()[("b", MemoryTier.EPISODIC, "send")].items >= 1


async def test_stop_leaves_no_task_behind(tmp_path: Path) -> None:
    settings = NodeSettings(sync_interval_s=0.2, high_delay_s=0.05)
    async with pair(tmp_path, settings) as (a, _):
        for i in range(300):
            a.store.working.add(f"w{i}", {"i": i}, priority=SyncPriority.URGENT)
        await asyncio.sleep(0.05)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(NodeStateError, match="not started"):
        _ = a.store


async def test_a_node_on_a_local_mesh(tmp_path: Path) -> None:
    """Any Mesh works: two nodes embedded in one process on a LocalMesh."""
    hub = LocalMesh()
    settings = NodeSettings(sync_interval_s=NEVER_S, catch_up_delay_s=NEVER_S)
    async with (
        Node(tmp_path / "a.db", node_id="a", mesh=hub.endpoint("a"), settings=settings) as a,
        Node(tmp_path / "b.db", node_id="b", mesh=hub.endpoint("b"), settings=settings) as b,
    ):
        a.store.working.add("x", {"v": 1}, priority=SyncPriority.URGENT)
        # No round runs within the hour: the URGENT push over the LocalMesh brought it.
        await arrival(lambda: has(b.store.working, "x"), DEADLINE_S)


async def test_an_empty_tier_asks_for_a_snapshot_with_bootstrap(tmp_path: Path) -> None:
    # No round of either node runs within the hour: what arrives came with the snapshot b asked
    # for, and a saw each of b's REPLICATE requests.
    quiet = NodeSettings(sync_interval_s=NEVER_S, catch_up_delay_s=NEVER_S)
    async with Node(tmp_path / "a.db", node_id="a", key=KEY, settings=quiet) as a:
        for i in range(250):
            a.store.episodic.add(f"e{i}", {"i": i})
        asked: list[tuple[str, MemoryTier]] = []
        answer = a.link.on_replicate
        assert answer is not None

        def note(peer_id: str, tier: MemoryTier) -> None:
            asked.append((peer_id, tier))
            answer(peer_id, tier)

        a.link.on_replicate = note
        eager = NodeSettings(
            sync_interval_s=NEVER_S, catch_up_delay_s=NEVER_S, bootstrap_replicate=True
        )
        b = Node(tmp_path / "b.db", node_id="b", key=KEY, peers={"a": a.address}, settings=eager)
        async with b:
            await arrival(lambda: len(b.store.episodic.get_modified_since(0)) == 250, DEADLINE_S)
            # Every tier of b was empty, so b asked for each, once.
            await arrival(lambda: len(asked) >= len(MemoryTier), DEADLINE_S)
            assert sorted(asked) == [("b", tier) for tier in sorted(MemoryTier)]
