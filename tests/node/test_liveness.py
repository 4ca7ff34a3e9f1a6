"""Liveness under network faults: two embedded nodes whose connection runs through a fault proxy.

Node b dials node a through :class:`~tests.faultproxy.FaultProxy` on 127.0.0.1. Every test
turns off what could rescue it by waiting: no background round within the hour, an ACK timeout of
an hour, an idle timeout of an hour (except the partition test, which needs connections to die).
So a write that arrives at all arrived because a fault cost a reconnect and the batch in flight
went out again -- the rules under test -- and each test asserts convergence within a generous
deadline and prints the time it measured (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from memrepl.mesh import certs
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.identity import NodeCertificate
from memrepl.node import Node, NodeSettings
from memrepl.protocol.enums import MemoryTier, MessageTypes, SyncPriority

from ..faultproxy import TO_DIALLER, FaultProxy
from ..replicas import replicated_store

KEY = b"a-cluster-key-for-the-liveness-tests"
HOUR_S = 3600.0
#: Generous: a fault costs a reconnect (a fraction of a second); a stall would cost the hour.
DEADLINE_S = 60.0

#: Nothing but the rule under test brings a write across: no round within the hour, no ACK
#: timeout, no idle timeout.
PATIENT = NodeSettings(
    sync_interval_s=HOUR_S,
    ack_timeout_s=HOUR_S,
    high_delay_s=0.05,
    antientropy_interval_s=None,
    verify_interval_s=None,
    consolidate_interval_s=None,
)
PATIENT_MESH = TcpMeshConfig(
    heartbeat_interval_s=1.0,
    idle_timeout_s=HOUR_S,
    reconnect_base_s=0.05,
    reconnect_cap_s=0.5,
    auth_failures_allowed=10_000,
)


def has(node: Node, tier: MemoryTier, item_id: str) -> bool:
    return any(r["item_id"] == item_id for r in node.store.tier(tier).get_modified_since(0))


async def took(check: Callable[[], bool], what: str) -> float:
    """Seconds until ``check()`` holds (printed); fails after :data:`DEADLINE_S`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > DEADLINE_S:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        await asyncio.sleep(0.005)
    seconds = time.monotonic() - started
    print(f"\n{what}: {seconds * 1000:.0f} ms")
    return seconds


@asynccontextmanager
async def through_proxy(
    tmp_path: Path,
    *,
    settings: NodeSettings = PATIENT,
    mesh: TcpMeshConfig = PATIENT_MESH,
    tls: bool = False,
) -> AsyncIterator[tuple[Node, Node, FaultProxy]]:
    credentials: dict[str, dict[str, Any]] = {"a": {"key": KEY}, "b": {"key": KEY}}
    if tls:
        ca = tmp_path / "ca"
        certs.create_ca(ca)
        for node_id in credentials:
            out = tmp_path / f"certs-{node_id}"
            certs.issue_node(ca, node_id, out)
            credentials[node_id] = {
                "certificate": NodeCertificate.load(
                    out / "node.crt", out / "node.key", out / "ca.crt"
                )
            }
    options: dict[str, Any] = {"settings": settings, "mesh_config": mesh}
    async with Node(tmp_path / "a.db", node_id="a", **credentials["a"], **options) as a:
        proxy = await FaultProxy(a.address[1], tls=tls).start()
        try:
            b = Node(
                tmp_path / "b.db",
                node_id="b",
                peers={"a": ("127.0.0.1", proxy.port)},
                **credentials["b"],
                **options,
            )
            async with b:
                await b.wait_for_peer("a", DEADLINE_S)
                await a.wait_for_peer("b", DEADLINE_S)
                # Past the catch-up rounds of the new connection.
                await took(lambda: caught_up(a, "b") and caught_up(b, "a"), "catch-up rounds")
                yield a, b, proxy
        finally:
            await proxy.close()


def caught_up(node: Node, peer: str) -> bool:
    """Every tier synced with ``peer`` since it connected."""
    tracks = [s for s in node.status() if s.peer_id == peer and s.connected]
    return len(tracks) == len(MemoryTier) and all(s.last_success_ns for s in tracks)


def last_success(node: Node, peer: str, tier: MemoryTier) -> int | None:
    (track,) = [s for s in node.status() if s.peer_id == peer and s.tier is tier]
    return track.last_success_ns


def refused(node: Node, code: str) -> int:
    return int(node.mesh.stats().total.refused.get(code, 0))  # type: ignore[attr-defined]


def connects(node: Node, peer: str) -> int:
    return int(node.mesh.stats().peers[peer].traffic.connects)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["payload", "length"])
async def test_a_batch_altered_on_the_wire_costs_a_reconnect(tmp_path: Path, kind: str) -> None:
    async with through_proxy(tmp_path) as (a, b, proxy):
        before = connects(b, "a")
        fault = proxy.corrupt_next(MessageTypes.VECTOR_SYNC, kind)
        b.store.working.add("urgent", {"v": 1}, priority=SyncPriority.URGENT)
        await took(lambda: has(a, MemoryTier.WORKING, "urgent"), f"urgent write, {kind} altered")
        assert fault.done.is_set()
        # a refused the frame from its header (a length it must not believe) or its MAC, ended
        # the connection at once, and b came back and sent the batch again.
        assert refused(a, "bad-hmac") == 1
        assert refused(a, "too-many-faults") == 0
        assert connects(b, "a") == before + 1


async def test_a_batch_lost_with_its_connection_is_sent_again(tmp_path: Path) -> None:
    async with through_proxy(tmp_path) as (a, b, proxy):
        fault = proxy.corrupt_next(MessageTypes.VECTOR_SYNC, "swallow")
        b.store.episodic.add("lost", {"v": 1}, priority=SyncPriority.URGENT)
        await asyncio.wait_for(fault.done.wait(), DEADLINE_S)
        await asyncio.sleep(0.2)  # the batch is gone, its ACK will never come...
        assert not has(a, MemoryTier.EPISODIC, "lost")
        proxy.drop_connections()  # ... and its connection dies
        await took(lambda: has(a, MemoryTier.EPISODIC, "lost"), "urgent write, connection lost")
        assert refused(a, "bad-hmac") == 0


async def test_a_round_whose_ack_was_lost_resends_its_batch_and_ends(tmp_path: Path) -> None:
    """A batch of a round arrived, its ACK did not, and the connection died (had it not, the
    next frame from a would have shown b the gap in a's sequence numbers: bad-sequence, the same
    reconnect): the round sends the batch again on the next connection (applied once) and ends
    well, instead of holding the tier's rounds for the ACK timeout (here an hour)."""
    async with through_proxy(tmp_path) as (a, b, proxy):
        track = last_success(b, "a", MemoryTier.EPISODIC)
        fault = proxy.corrupt_next(MessageTypes.ACK, "swallow", TO_DIALLER)
        b.store.episodic.add("ack-lost", {"v": 1}, priority=SyncPriority.HIGH)
        await asyncio.wait_for(fault.done.wait(), DEADLINE_S)
        proxy.drop_connections()
        await took(
            lambda: last_success(b, "a", MemoryTier.EPISODIC) != track,
            "round ended after its ACK was lost",
        )
        assert [r["item_id"] for r in a.store.episodic.get_modified_since(0)].count("ack-lost") == 1


async def test_writes_during_a_partition_converge_soon_after_it_heals(tmp_path: Path) -> None:
    # Connections die in the partition here (idle timeout 2 s): after it, b redials, and the
    # catch-up rounds of the new connection carry what was written meanwhile.
    mesh = TcpMeshConfig(
        heartbeat_interval_s=0.5,
        idle_timeout_s=2.0,
        reconnect_base_s=0.05,
        reconnect_cap_s=0.5,
        connect_timeout_s=1.0,
        auth_failures_allowed=10_000,
    )
    async with through_proxy(tmp_path, mesh=mesh) as (a, b, proxy):
        proxy.partition()
        for node in (a, b):
            for n in range(30):
                node.store.episodic.add(f"{node.node_id}-{n}", {"n": n})
            node.store.working.add(f"{node.node_id}-alarm", {}, priority=SyncPriority.URGENT)
            node.store.semantic.merge("shared", {node.node_id: True}, priority=SyncPriority.HIGH)
        await took(lambda: "a" not in b.peers() and "b" not in a.peers(), "the partition noticed")
        proxy.heal()
        await took(
            lambda: replicated_store(a.store) == replicated_store(b.store),
            "convergence after the heal",
        )
        shared = a.store.semantic.get_by_id("shared")
        assert shared is not None and shared["content"] == {"a": True, "b": True}


@pytest.mark.parametrize("kind", ["payload", "length"])
async def test_certificate_mode_an_altered_record_costs_a_reconnect(
    tmp_path: Path, kind: str
) -> None:
    """TLS protects the frames in certificate mode: an altered record (its ciphertext, or its
    length) fails TLS's own check and ends the connection, like a frame that fails its seal. (A
    record length grown by 64 bytes is caught once that many more bytes arrived: the next
    heartbeat or two, a second or two.)"""
    async with through_proxy(tmp_path, tls=True) as (a, b, proxy):
        before = connects(b, "a")
        fault = proxy.corrupt_next(MessageTypes.VECTOR_SYNC, kind)
        b.store.working.add("urgent", {"v": 1}, priority=SyncPriority.URGENT)
        await took(lambda: has(a, MemoryTier.WORKING, "urgent"), f"TLS record, {kind} altered")
        assert fault.done.is_set()
        assert connects(b, "a") == before + 1
