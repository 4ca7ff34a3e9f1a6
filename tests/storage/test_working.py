"""Working memory (L1): capacity eviction by score down to the low-water mark, pinning, the
replication rule, TTL -- all local forgetting that leaves no tombstone and replicates nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from memrepl.errors import ItemError, ItemNotFoundError
from memrepl.policy.promotion import promotion_score
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import LocalWrite, Store
from memrepl.storage.working import RECENCY_HALF_LIFE_NS, low_water
from memrepl.sync.vectors import advance_acked_cursor

from ..clocks import S, Wall
from ..files import query


def ids(store: Store) -> set[str]:
    return {r["item_id"] for r in store.working.get_modified_since(0) if not r["deleted"]}


def test_evicts_lowest_priority_first(opener: Callable[..., Store], wall: Wall) -> None:
    store = opener(wall=wall, working_capacity=3)
    store.working.add("low", {"n": 1}, priority=SyncPriority.BACKGROUND)
    store.working.add("urgent", {"n": 2}, priority=SyncPriority.URGENT)
    store.working.add("normal", {"n": 3})
    store.working.add("new", {"n": 4})
    assert ids(store) == {"urgent", "normal", "new"}


@pytest.mark.parametrize(
    ("capacity", "expected"), [(1, 1), (2, 2), (99, 99), (100, 99), (250, 248), (10_000, 9_900)]
)
def test_low_water_is_one_percent_below_capacity(capacity: int, expected: int) -> None:
    # Under 100 there is no slack: small tiers evict exactly to the capacity (the tests above).
    assert low_water(capacity) == expected


def test_overflow_evicts_to_low_water_then_fills_the_slack(
    opener: Callable[..., Store], wall: Wall
) -> None:
    capacity = 500
    slack = capacity - low_water(capacity)
    assert slack == 5
    store = opener(wall=wall, working_capacity=capacity)
    # Five BACKGROUND items spread among NORMAL ones, and the oldest item read three times: the
    # lowest scores are not simply the oldest rows.
    writes = [
        LocalWrite.add(
            f"i{n:03}",
            {"n": n},
            SyncPriority.BACKGROUND if n % 97 == 50 else SyncPriority.NORMAL,
        )
        for n in range(capacity)
    ]
    for start in range(0, capacity, 50):
        wall.now += S
        store.working.write_many(writes[start : start + 50])
    for _ in range(3):
        assert store.working.get_by_id("i000") is not None
    before = store.working.get_modified_since(0)
    assert len(before) == capacity  # at capacity, nothing evicted yet

    wall.now += S
    over = store.working.add("over", {"n": -1})
    # (a) One write past the capacity evicts slack + 1 rows, down to the low-water mark...
    kept = ids(store)
    assert len(kept) == low_water(capacity) == capacity - slack
    evicted = {r["item_id"] for r in before} - kept
    assert evicted == {"i050", "i147", "i244", "i341", "i438", "i001"}
    # ...and they are the lowest-scored at the time of the write (ties: older first).
    ranked = sorted(
        [*before, over],
        key=lambda r: (promotion_score(r, wall.now), r["modified_at"], r["item_id"]),
    )
    assert {r["item_id"] for r in ranked[: slack + 1]} == evicted

    # (b) The next `slack` writes fill the slack and evict nothing.
    for n in range(slack):
        wall.now += S
        store.working.add(f"fill{n}", {"n": n})
        kept |= {f"fill{n}"}
        assert ids(store) == kept
    assert len(kept) == capacity
    # The one after overflows again: back to the low-water mark.
    wall.now += S
    store.working.add("again", {"n": 0})
    assert len(ids(store)) == low_water(capacity)


def test_accesses_and_recency_raise_the_score(opener: Callable[..., Store], wall: Wall) -> None:
    store = opener(wall=wall, working_capacity=2)
    store.working.add("read", {"n": 1})
    wall.now += S
    store.working.add("unread", {"n": 2})
    for _ in range(5):
        assert store.working.get_by_id("read") is not None
    store.working.add("third", {"n": 3})
    # "unread" is newer than "read" was written, but "read" has five accesses.
    assert ids(store) == {"read", "third"}
    wall.now += 10 * RECENCY_HALF_LIFE_NS
    store.working.update("read", {"n": 1})  # fresh again: "third" is now the oldest
    wall.now += S
    store.working.add("fourth", {"n": 4})
    assert ids(store) == {"read", "fourth"}


def test_pinned_never_evicted(opener: Callable[..., Store], wall: Wall) -> None:
    store = opener(wall=wall, working_capacity=2)
    store.working.add("a", {"n": 1}, priority=SyncPriority.BACKGROUND, pinned=True)
    store.working.add("b", {"n": 2}, priority=SyncPriority.BACKGROUND)
    store.working.pin("b")
    store.working.add("c", {"n": 3}, priority=SyncPriority.URGENT)
    # Nothing but the newcomer could go, and a write is never evicted by its own call: the
    # capacity is soft until something is evictable.
    assert ids(store) == {"a", "b", "c"}
    store.working.unpin("b")
    store.working.add("d", {"n": 4}, priority=SyncPriority.URGENT)
    assert ids(store) == {"a", "d"}
    record = store.working.get_by_id("a")
    assert record is not None and record["pinned"] is True
    with pytest.raises(ItemNotFoundError):
        store.working.pin("b")


def test_unreplicated_never_evicted(opener: Callable[..., Store], wall: Wall) -> None:
    store = opener(wall=wall, working_capacity=1)
    first = store.working.add("a", {"n": 1})
    with store.write() as conn:
        advance_acked_cursor(conn, MemoryTier.WORKING, "peer", first["modified_at"], wall())
    store.working.add("b", {"n": 2}, priority=SyncPriority.URGENT)
    assert ids(store) == {"b"}  # a had replicated, so it could go
    store.working.add("c", {"n": 3}, priority=SyncPriority.BACKGROUND)
    # Neither b nor c has been acknowledged: the capacity is soft while the peer lags.
    assert ids(store) == {"b", "c"}
    with store.write() as conn:
        advance_acked_cursor(conn, MemoryTier.WORKING, "peer", 2**62, wall())
        # A second peer that acknowledged nothing blocks everything again.
        advance_acked_cursor(conn, MemoryTier.WORKING, "slow", 0, wall())
    store.working.add("d", {"n": 4})
    assert ids(store) == {"b", "c", "d"}


def test_eviction_leaves_no_tombstone_and_replicates_nothing(
    opener: Callable[..., Store], db_path: Path, wall: Wall
) -> None:
    store = opener(wall=wall, working_capacity=2)
    for n in range(5):
        store.working.add(f"i{n}", {"n": n}, priority=SyncPriority(n))
    changes = store.working.get_modified_since(0)
    assert [r["item_id"] for r in changes] == ["i3", "i4"]
    assert not any(r["deleted"] for r in changes)
    assert query(db_path, "SELECT item_id, deleted FROM working_items ORDER BY item_id") == [
        ("i3", 0),
        ("i4", 0),
    ]


def test_ttl(opener: Callable[..., Store], db_path: Path, wall: Wall) -> None:
    store = opener(wall=wall, working_capacity=None)
    store.working.add("short", {"n": 1}, ttl_s=1)
    store.working.add("long", {"n": 2}, ttl_s=100)
    store.working.add("forever", {"n": 3})
    wall.now += 2 * S
    assert store.working.get_by_id("short") is None
    assert store.working.get_by_id("long") is not None
    assert store.working.expire() == ["short"]
    assert "short" not in ids(store)
    store.working.set_ttl("forever", 5)
    wall.now += 200 * S
    store.working.add("other", {"n": 4})  # expiry also runs on every write
    assert ids(store) == {"other"}
    assert query(db_path, "SELECT count(*) FROM working_items WHERE deleted") == [(0,)]
    with pytest.raises(ItemError):
        store.working.add("bad", {"n": 5}, ttl_s=0)
    assert ids(store) == {"other"}


def test_expired_but_unreplicated_is_kept_and_hidden(
    opener: Callable[..., Store], wall: Wall
) -> None:
    store = opener(wall=wall)
    with store.write() as conn:
        advance_acked_cursor(conn, MemoryTier.WORKING, "peer", 0, wall())
    store.working.add("a", {"n": 1}, ttl_s=1)
    wall.now += 2 * S
    assert store.working.expire() == []
    assert store.working.get_by_id("a") is None
    assert "a" in ids(store)


def test_private_constructor_has_capacity_hook() -> None:
    from memrepl.storage import WorkingMemory

    memory = WorkingMemory()
    memory.add("a", {"n": 1}, pinned=True)
    assert memory.get_by_id("a") is not None
    memory.store.close()


def test_applied_batch_is_evicted_too(opener: Callable[..., Store], tmp_path: Path) -> None:
    from memrepl.merge import Version, apply_local_write
    from memrepl.protocol.enums import SyncOperation
    from memrepl.storage.items import RemoteItem, apply_remote_states

    store = opener(working_capacity=2)
    store.working.add("mine", {"n": 0}, priority=SyncPriority.URGENT)
    remote = [
        RemoteItem(
            f"r{n}",
            apply_local_write(None, SyncOperation.INSERT, {"n": n}, Version(n + 1, "node-b")),
            SyncPriority(n),
        )
        for n in range(3)
    ]
    with store.write() as conn, store.stamping(conn) as clock:
        apply_remote_states(conn, store.working.spec, clock, remote, from_peer="node-b")
    assert ids(store) == {"mine", "r2"}


async def test_async_working_memory(tmp_path: Path, wall: Wall) -> None:
    import memrepl.aio
    from memrepl.protocol.enums import SyncOperation
    from memrepl.storage import LocalWrite

    store = await memrepl.aio.open(
        tmp_path / "a.db", node_id="node-a", wall=wall, working_capacity=1
    )
    try:
        pinned = LocalWrite("a", SyncOperation.INSERT, {"n": 1}, local={"pinned": True})
        await store.working.write_many([pinned])
        await store.working.add("b", {"n": 2})
        # Soft: a is pinned, and b is the call's own write.
        assert {r["item_id"] for r in await store.working.get_modified_since(0)} == {"a", "b"}
        await store.working.add("c", {"n": 3})
        assert {r["item_id"] for r in await store.working.get_modified_since(0)} == {"a", "c"}
        assert (await store.working.get_by_id("a")) is not None
    finally:
        await store.close()
