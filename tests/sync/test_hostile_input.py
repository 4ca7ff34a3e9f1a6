"""Whatever an admitted peer sends, the answer is an ACK or a NACK with a specific code.

memrepl.sync.receiver: a batch moves only its own sender's inbound cursor; a cursor that cannot
be a stamp of the sender's clock (above 2**63 - 1, or further ahead of the wall clock than the
skew tolerance) is refused with a NACK naming it; REPLICATE requests are checked; ACKs settle only
batches sent to the peer they come from, and an ACK's cursor beyond this node's clock is refused.
The last test feeds hypothesis-made hostile batches and checks every one against those rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memrepl
from memrepl.clock import DEFAULT_MAX_CLOCK_SKEW_NS
from memrepl.errors import BadCursorError, ClockSkewError
from memrepl.mesh import LocalMesh
from memrepl.protocol.batch import MemorySyncBatch, SnapshotMark
from memrepl.protocol.enums import MemoryTier, MessageTypes, SyncOperation
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem
from memrepl.storage import digests
from memrepl.storage.items import LocalWrite, max_modified_at
from memrepl.sync import vectors
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.results import SyncStatus

from ..conftest import Location, Locator
from ..files import dump, location_of, query
from .conftest import examples
from .hostile import RawPeer, batch, replicate_item, v2_insert

WORKING = MemoryTier.WORKING
SKEW_NS = DEFAULT_MAX_CLOCK_SKEW_NS
U63 = 2**63 - 1


class Victim:
    """A node (working and episodic tiers registered, semantic not) with an honest peer and a
    hostile one on one LocalMesh."""

    def __init__(self, location: Location) -> None:
        self.hub = LocalMesh()
        self.store = memrepl.open(location, node_id="victim")
        self.manager = MemorySyncManager("victim", self.hub.endpoint("victim"))
        for tier in (WORKING, MemoryTier.EPISODIC):
            self.manager.register_memory_tier(tier, self.store.tier(tier))
        self.mallory = RawPeer(self.hub, "mallory")
        self.honest = RawPeer(self.hub, "honest")
        self.store.working.write_many([LocalWrite.add(f"own-{i}", {"i": i}) for i in range(5)])
        # Some history from both peers: items and inbound cursors.
        # Some history from both peers: items and inbound cursors, and from mallory an old item
        # (written three days ago: older than the grace period, so a snapshot could forget it).
        old = time.time_ns() - 3 * 24 * 3600 * 10**9
        for peer, cursor in ((self.honest, 1_000), (self.mallory, 2_000)):
            name = peer.node_id
            items = [v2_insert(f"{name}-1", {"by": name}), v2_insert(f"old-{name}", {}, old)]
            peer.send("victim", batch(name, "victim", items=items, cursor=cursor))

    @property
    def path(self) -> Location:
        return location_of(self.store)

    def cursors(self) -> dict[tuple[int, str], int]:
        with self.store.read() as conn:
            return {
                (int(tier), peer): cursor
                for tier in MemoryTier
                for peer, cursor in vectors.applied_cursors(conn, tier).items()
            }

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def victim(locate: Locator) -> Iterator[Victim]:
    made = Victim(locate("victim"))
    yield made
    made.close()


def last_answer(peer: RawPeer) -> tuple[str, dict[str, object]]:
    answers = peer.answers()
    assert answers, "no answer at all"
    return answers[-1]


# -- cursors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cursor", "code"),
    [
        (U63, "clock-skew"),
        (2**63, "bad-cursor"),
        (2**64 - 1, "bad-cursor"),
        ("ahead", "clock-skew"),
    ],
)
def test_a_cursor_that_cannot_be_a_stamp_is_nacked_naming_it(
    victim: Victim, cursor: int | str, code: str
) -> None:
    """The stall attack of issue 12 (cursor 2**63 - 1 stored as the sender's inbound cursor), and
    the OverflowError of a cursor above it: refused, nothing applied, nothing moved."""
    value = time.time_ns() + SKEW_NS + 5 * 10**9 if cursor == "ahead" else int(cursor)
    before, cursors = dump(victim.path, skip_refusals=True), victim.cursors()
    hostile = batch("mallory", "victim", items=[v2_insert("stall", {"x": 1})], cursor=value)
    victim.mallory.send("victim", hostile)
    kind, answer = last_answer(victim.mallory)
    assert (kind, answer["code"], answer["batch_id"]) == ("NACK", code, hostile.batch_id)
    assert str(value) in str(answer["reason"])
    assert dump(victim.path, skip_refusals=True) == before and victim.cursors() == cursors
    refused = query(
        victim.path,
        "SELECT tier, direction, code, count FROM sync_refusals WHERE peer_id = 'mallory'",
    )
    assert refused == [(1, "inbound", code, 1)]


def test_an_impossible_purge_horizon_is_nacked_too(victim: Victim) -> None:
    before = dump(victim.path, skip_refusals=True)
    victim.mallory.send("victim", batch("mallory", "victim", purge_horizon=2**64 - 1))
    assert last_answer(victim.mallory)[1]["code"] == "bad-cursor"
    assert dump(victim.path, skip_refusals=True) == before


def test_the_library_call_raises_the_same_errors(victim: Victim) -> None:
    with pytest.raises(BadCursorError) as too_big:
        victim.manager.apply_sync_batch(batch("mallory", "victim", cursor=2**64 - 1))
    assert too_big.value.cursor == 2**64 - 1
    with pytest.raises(ClockSkewError) as ahead:
        victim.manager.apply_sync_batch(batch("mallory", "victim", cursor=U63))
    assert ahead.value.timestamp_ns == U63 and ahead.value.ahead_ns is not None


def test_a_batch_moves_only_its_own_senders_cursor(victim: Victim) -> None:
    before, cursors = dump(victim.path, skip_refusals=True), victim.cursors()
    claimed = batch("honest", "victim", items=[v2_insert("x", {"x": 1})], cursor=5_000)
    victim.mallory.send("victim", claimed)
    assert last_answer(victim.mallory)[1]["code"] == "wrong-source"
    assert dump(victim.path, skip_refusals=True) == before and victim.cursors() == cursors
    # Its own batch moves its own cursor only.
    victim.mallory.send("victim", batch("mallory", "victim", cursor=3_000))
    assert last_answer(victim.mallory)[0] == "ACK"
    assert victim.cursors() == {**cursors, (1, "mallory"): 3_000}


# -- REPLICATE requests --------------------------------------------------------------------------


def request(*items: MemorySyncItem, target: str = "victim", **fields: object) -> MemorySyncBatch:
    tier = items[0].tier if items else WORKING
    return batch("mallory", target, tier=tier, items=list(items), **fields)


SEMANTIC = MemoryTier.SEMANTIC


@pytest.mark.parametrize(
    ("request_batch", "code"),
    [
        (request(replicate_item(SEMANTIC)), "unknown-tier"),
        (request(replicate_item(), replicate_item()), "bad-replicate-request"),
        (request(replicate_item(), v2_insert("x", {})), "bad-replicate-request"),
        (request(replicate_item(), cursor=5), "bad-replicate-request"),
        (request(replicate_item(), snapshot=SnapshotMark("s")), "bad-replicate-request"),
        (request(replicate_item(), target="elsewhere"), "misaddressed-batch"),
    ],
)
def test_bad_replicate_requests_are_nacked(
    victim: Victim, request_batch: MemorySyncBatch, code: str
) -> None:
    before = dump(victim.path, skip_refusals=True)
    victim.mallory.send("victim", request_batch)
    assert last_answer(victim.mallory)[1]["code"] == code
    assert dump(victim.path, skip_refusals=True) == before


# -- ACKs ----------------------------------------------------------------------------------------


async def started_round(victim: Victim, peer: RawPeer) -> tuple[asyncio.Task[object], str]:
    """A round from the victim to ``peer``, its probe sent; the probe's batch id."""
    task: asyncio.Task[object] = asyncio.ensure_future(
        victim.manager.sync_with_peer(peer.node_id, MemoryTier.EPISODIC)
    )
    for _ in range(100):
        await asyncio.sleep(0)
        if peer.batches():
            break
    (probe,) = peer.batches()
    return task, probe.batch_id


async def test_an_ack_settles_only_a_batch_sent_to_its_sender(victim: Victim) -> None:
    task, probe = await started_round(victim, victim.honest)
    victim.mallory.ack("victim", probe, int(MemoryTier.EPISODIC), 0)
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()
    victim.honest.ack("victim", probe, int(MemoryTier.EPISODIC), 0)
    result = await task
    assert result.status == SyncStatus.UP_TO_DATE  # type: ignore[attr-defined]
    assert victim.manager.get_sync_vector(MemoryTier.EPISODIC) == {"honest": 0}


async def test_an_ack_cursor_beyond_this_nodes_clock_is_refused(victim: Victim) -> None:
    victim.store.episodic.add("e", {"v": 1})
    task, probe = await started_round(victim, victim.honest)
    with victim.store.read() as conn:
        (clock_last,) = conn.exec_driver_sql("SELECT clock_last_ns FROM node").one()
    victim.honest.ack("victim", probe, int(MemoryTier.EPISODIC), clock_last + 10**15)
    result = await task
    assert result.status == SyncStatus.REJECTED  # type: ignore[attr-defined]
    assert "bad-ack-cursor" in str(result.error)  # type: ignore[attr-defined]
    assert victim.manager.get_sync_vector(MemoryTier.EPISODIC) == {}


async def test_an_ack_or_nack_that_is_not_one_is_ignored(victim: Victim) -> None:
    victim.manager.ack_timeout_s = 0.3
    task, probe = await started_round(victim, victim.honest)
    for junk in (
        b"not json",
        b"[]",
        json.dumps({"batch_id": probe, "tier": 2, "cursor": 2**63, "applied": 0, "conflicts": 0}),
        json.dumps({"batch_id": probe, "tier": 2, "cursor": -1, "applied": 0, "conflicts": 0}),
        json.dumps({"batch_id": probe, "tier": 2, "cursor": 1, "applied": True, "conflicts": 0}),
    ):
        data = junk if isinstance(junk, bytes) else junk.encode()
        victim.honest.endpoint.send("victim", MessageTypes.ACK, data)
        victim.honest.endpoint.send("victim", MessageTypes.NACK, data)
    result = await task
    assert result.status == SyncStatus.TIMEOUT  # type: ignore[attr-defined]
    assert victim.manager.get_sync_vector(MemoryTier.EPISODIC) == {}


# -- hostile batches, generated ------------------------------------------------------------------

#: Codes a hostile batch may be refused with: each names a fault of the input.
SPECIFIC_CODES = {
    "wrong-source",
    "misaddressed-batch",
    "unknown-tier",
    "bad-cursor",
    "clock-skew",
    "unrequested-snapshot",
    "unexpected-replicate",
    "bad-replicate-request",
    "bad-item-state",
    "tier-mismatch",
    "invalid-item-id",
}


DAY_NS = 24 * 3600 * 10**9


def stamps() -> st.SearchStrategy[int]:
    """Mostly stamps a clock can reach (old, recent, within the tolerance), and the rest."""
    now = time.time_ns()
    good = [1, now - 3 * DAY_NS, now - 10**12, now - 10**9, now, now + SKEW_NS // 2]
    bad = [0, now + SKEW_NS + 10**10, U63, 2**63, 2**64 - 1]
    return st.sampled_from(good * 4 + bad)


def mostly(usual: object, *others: object) -> st.SearchStrategy[object]:
    """``usual`` four times in five, else one of ``others``."""
    return st.sampled_from([usual] * 4 * len(others) + list(others))


@st.composite
def hostile_items(draw: st.DrawFn, tier: MemoryTier) -> MemorySyncItem:
    item_id = draw(st.sampled_from(["own-1", "honest-1", "mallory-1", "old-1", "new", "*"]))
    operation = draw(mostly(SyncOperation.INSERT, *SyncOperation))
    payload = draw(mostly(b'{"v": 1}', b"", b'{"a": 1, "a": 2}', b"[1]", b"nan", b'{"v": NaN}'))
    stamp = draw(stamps())
    version = None
    if draw(st.booleans()):
        origin = draw(st.sampled_from(["mallory", "honest", "victim"]))
        version = ItemVersionInfo(
            origin_node=origin,
            causal_context=draw(mostly({origin: stamp}, {}, {"x": 2**64 - 1})),
            whole_timestamp_ns=draw(mostly(stamp, 0, 1)),
            whole_origin=origin,
            whole_deleted=operation == SyncOperation.DELETE,
        )
    return MemorySyncItem(
        item_id=item_id,
        timestamp_ns=stamp,
        tier=draw(mostly(tier, *MemoryTier)),
        operation=operation,
        payload=b"" if operation == SyncOperation.DELETE and version else payload,
        version=version,
    )


@st.composite
def hostile_batches(draw: st.DrawFn) -> MemorySyncBatch:
    tier = draw(mostly(WORKING, *MemoryTier))
    open_mark = SnapshotMark("open")
    mark = draw(
        st.sampled_from(
            [None, None, open_mark, SnapshotMark("open", final=True), SnapshotMark("x")]
        )
    )
    return MemorySyncBatch(
        batch_id=draw(st.sampled_from(["h1", "h2", ""])),
        source_node=draw(mostly("mallory", "honest", "victim")),
        target_node=draw(mostly("victim", "mallory")),
        tier=tier,
        items=draw(st.lists(hostile_items(tier), max_size=4)),
        cursor=draw(st.none() | stamps()),
        snapshot=mark,
        purge_horizon=draw(st.none() | stamps()),
    )


FUZZ_CASES = int(os.environ.get("MEMREPL_HOSTILE_CASES", "200"))


def forgotten(victim: Victim) -> list[tuple[object, ...]]:
    return query(
        victim.path,
        "SELECT item_id, version_ts, received_from, peer_id, snapshot_id FROM forgotten_items",
    )


def test_every_hostile_batch_gets_an_ack_or_a_specific_nack(victim: Victim, backend: str) -> None:
    @settings(
        max_examples=examples(backend, FUZZ_CASES),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(hostile=hostile_batches())
    def run(hostile: MemorySyncBatch) -> None:
        answered_and_kept(victim, hostile)

    run()


def answered_and_kept(victim: Victim, hostile: MemorySyncBatch) -> None:
    """No input ends in silence, a traceback or ``internal-error``; a NACK leaves the data as it
    was; an ACK moves only the sender's own cursor, never past the skew limit; only the final
    batch of the snapshot the victim asked for ("open") forgets, and only items whose latest
    write the horizon and the grace explain."""
    requests = victim.manager.snapshot_requests
    if requests.get(WORKING, "mallory") is None:
        # As if mallory had acknowledged everything the victim holds: every row counts as seen.
        with victim.store.read() as conn:
            acked = max_modified_at(conn, victim.store.working.spec)
        requests.open(WORKING, "mallory", "open", acked=acked, now_ns=time.time_ns())
    victim.mallory.received.clear()
    before, cursors, forgot = (
        dump(victim.path, skip_refusals=True),
        victim.cursors(),
        forgotten(victim),
    )
    victim.mallory.send("victim", hostile)
    answers = victim.mallory.answers()
    assert len(answers) == 1, answers
    kind, answer = answers[0]
    assert answer["batch_id"] == hostile.batch_id
    if kind == "NACK":
        assert answer["code"] in SPECIFIC_CODES, answer
        assert dump(victim.path, skip_refusals=True) == before
        return
    with victim.store.read() as conn:  # the anti-entropy digests follow every accepted change
        assert digests.find_errors(conn, victim.store.working.spec) == {}
    after = victim.cursors()
    moved = {key for key in after if after[key] != cursors.get(key)}
    assert moved <= {(int(hostile.tier), "mallory")}
    for key in moved:
        assert cursors.get(key, 0) < after[key] <= time.time_ns() + SKEW_NS
    new = [row for row in forgotten(victim) if row not in forgot]
    if not new:
        return
    mark = hostile.snapshot
    assert mark == SnapshotMark("open", final=True) and hostile.tier == WORKING
    bound = min(hostile.purge_horizon or 0, time.time_ns() - DAY_NS + SKEW_NS)
    for _, version_ts, _, peer_id, snapshot_id in new:
        assert (peer_id, snapshot_id) == ("mallory", "open")
        assert isinstance(version_ts, int) and version_ts <= bound


def test_a_v2_merge_without_fields_is_a_malformed_item(victim: Victim) -> None:
    """Found by the fuzz above: the merge core refuses a MERGE that sets no field, and the peer
    must hear ``bad-item-state``, not a generic code."""
    empty_merge = dataclasses.replace(v2_insert("own-1", {}), operation=SyncOperation.MERGE)
    before = dump(victim.path, skip_refusals=True)
    victim.mallory.send("victim", batch("mallory", "victim", items=[empty_merge]))
    kind, answer = last_answer(victim.mallory)
    assert (kind, answer["code"]) == ("NACK", "bad-item-state")
    assert dump(victim.path, skip_refusals=True) == before
