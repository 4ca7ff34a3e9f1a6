"""The round driver over a LocalMesh: a lost connection is an event, not a wait.

The answer timeout is an hour in these tests, so a round that ends at all ended because of the
rule under test, never because an answer timed out.
"""

from __future__ import annotations

import asyncio

from memrepl.mesh import LocalMesh
from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.sync.driver import RoundOptions
from memrepl.sync.results import SyncStatus

from .conftest import Cluster

TIER = MemoryTier.WORKING
HOUR_S = 3600.0
#: A generous bound for work that takes milliseconds (a loaded runner may be slow).
DEADLINE_S = 60.0


async def first_held_batch(hub: LocalMesh) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not any(m.msg_type is MessageTypes.VECTOR_SYNC for m in hub.held):
            await asyncio.sleep(0.001)


async def test_a_batch_lost_with_its_connection_is_sent_again_at_once(cluster: Cluster) -> None:
    a = cluster.add("a", ack_timeout_s=HOUR_S)
    cluster.add("b", ack_timeout_s=HOUR_S)
    for n in range(5):
        cluster.stores["a"].working.add(f"w{n}", {"n": n})
    hub = cluster.hub
    hub.hold = True
    round_ = asyncio.create_task(a.sync_with_peer("b", TIER))
    await first_held_batch(hub)
    # The probe is lost on the wire, and the connection with it; a new one comes up at once.
    hub.held.clear()
    hub.hold = False
    hub.partition("a", "b")
    hub.heal("a", "b")
    async with asyncio.timeout(DEADLINE_S):
        result = await round_
    assert result.ok and result.items == 5
    assert len(cluster.stores["b"].working.get_modified_since(0)) == 5


async def test_with_the_lost_peer_rule_a_gone_peer_ends_the_round(cluster: Cluster) -> None:
    a = cluster.add("a", ack_timeout_s=HOUR_S, round_options=RoundOptions(lost_peer_wait_s=0.2))
    cluster.add("b", ack_timeout_s=HOUR_S)
    cluster.stores["a"].working.add("w", {"n": 1})
    hub = cluster.hub
    hub.hold = True
    round_ = asyncio.create_task(a.sync_with_peer("b", TIER))
    await first_held_batch(hub)
    hub.held.clear()
    hub.partition("a", "b")  # and it stays cut
    async with asyncio.timeout(DEADLINE_S):
        result = await round_
    assert result.status is SyncStatus.UNREACHABLE
    assert result.error is not None and "not back within 0.2 s" in result.error
    # A peer that is not connected at all is not waited for.
    async with asyncio.timeout(DEADLINE_S):
        result = await a.sync_with_peer("b", TIER)
    assert result.status is SyncStatus.UNREACHABLE


async def test_draining_shortens_every_wait(cluster: Cluster) -> None:
    a = cluster.add("a", ack_timeout_s=HOUR_S)
    cluster.add("b", ack_timeout_s=HOUR_S)
    cluster.stores["a"].working.add("w", {"n": 1})
    hub = cluster.hub
    hub.hold = True  # nothing is ever answered
    round_ = asyncio.create_task(a.sync_with_peer("b", TIER))
    await first_held_batch(hub)
    a.drain_answers(0.05)
    async with asyncio.timeout(DEADLINE_S):
        result = await round_
    assert result.status is SyncStatus.TIMEOUT
