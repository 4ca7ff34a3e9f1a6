"""apply_remote_states, modified_since's echo filter, and the two tier hooks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from memrepl.errors import ClockSkewError, InvalidItemIdError
from memrepl.merge import ItemState, Outcome, Version
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import RemoteItem, Store, StoredItem
from memrepl.storage.items import (
    LocalWrite,
    apply_remote_states,
    load_items,
    max_modified_at,
    modified_since,
    write_local,
)

from ..files import dump, query


@pytest.fixture
def pair(opener: Callable[..., Store], tmp_path: Path) -> tuple[Store, Store]:
    return opener("node-a", tmp_path / "a.db"), opener("node-b", tmp_path / "b.db")


def states(store: Store, tier: MemoryTier, since: int = 0) -> list[RemoteItem]:
    """What a sender would ship: every change since ``since``, as remote items."""
    with store.read() as conn:
        changed = modified_since(conn, store.tier(tier).spec, since)
    return [RemoteItem(item.item_id, item.state, item.priority) for item in changed]


def apply(
    store: Store, tier: MemoryTier, incoming: Sequence[RemoteItem], peer: str
) -> list[Outcome]:
    with store.write() as conn, store.stamping(conn) as clock:
        merged = apply_remote_states(conn, store.tier(tier).spec, clock, incoming, from_peer=peer)
    return [verdict.outcome for verdict in merged.verdicts]


def stored(store: Store, tier: MemoryTier, item_id: str) -> StoredItem:
    with store.read() as conn:
        return load_items(conn, store.tier(tier).spec, [item_id])[item_id]


def test_new_items_are_stored_as_received(pair: tuple[Store, Store], tier: MemoryTier) -> None:
    a, b = pair
    a.tier(tier).add("x", {"v": 1}, priority=SyncPriority.HIGH)
    a.tier(tier).add("gone", {"v": 1})
    a.tier(tier).delete("gone")
    before = max_modified_at_of(b, tier)
    assert apply(b, tier, states(a, tier), "node-a") == [Outcome.NEW, Outcome.NEW]
    item = stored(b, tier, "x")
    assert item.received_from == "node-a"
    assert item.state == stored(a, tier, "x").state
    assert item.priority == SyncPriority.HIGH
    assert item.modified_at > before
    assert stored(b, tier, "gone").deleted
    # Applied items flow on (multi-hop) but are not echoed back to their sender.
    assert [r["item_id"] for r in b.tier(tier).get_modified_since(0)] == ["x", "gone"]
    with b.read() as conn:
        spec = b.tier(tier).spec
        assert modified_since(conn, spec, 0, exclude_received_from="node-a") == []
        assert len(modified_since(conn, spec, 0, exclude_received_from="node-c")) == 2
        assert max_modified_at(conn, spec) == stored(b, tier, "gone").modified_at > item.modified_at


def max_modified_at_of(store: Store, tier: MemoryTier) -> int:
    with store.read() as conn:
        return max_modified_at(conn, store.tier(tier).spec)


def test_redelivery_is_a_duplicate_and_changes_nothing(
    pair: tuple[Store, Store], tier: MemoryTier, tmp_path: Path
) -> None:
    a, b = pair
    a.tier(tier).add("x", {"v": 1})
    shipped = states(a, tier)
    apply(b, tier, shipped, "node-a")
    before = dump(tmp_path / "b.db")
    assert apply(b, tier, shipped, "node-a") == [Outcome.DUPLICATE]
    assert dump(tmp_path / "b.db") == before


def test_older_state_is_superseded(pair: tuple[Store, Store], tier: MemoryTier) -> None:
    a, b = pair
    a.tier(tier).add("x", {"v": 1})
    first = states(a, tier)
    apply(b, tier, first, "node-a")
    b.tier(tier).update("x", {"v": 2})
    assert apply(b, tier, first, "node-a") == [Outcome.SUPERSEDED]
    assert stored(b, tier, "x").received_from is None


def test_concurrent_writes_merge_to_a_new_local_state(
    pair: tuple[Store, Store], tier: MemoryTier
) -> None:
    a, b = pair
    a.tier(tier).merge("x", {"from_a": 1}, priority=SyncPriority.LOW)
    b.tier(tier).merge("x", {"from_b": 2}, priority=SyncPriority.URGENT)
    b_before = stored(b, tier, "x")
    with b.write() as conn, b.stamping(conn) as clock:
        (verdict,) = apply_remote_states(
            conn, b.tier(tier).spec, clock, states(a, tier), from_peer="node-a"
        ).verdicts
    assert verdict.outcome == Outcome.CONCURRENT
    item = stored(b, tier, "x")
    assert item.content == {"from_a": 1, "from_b": 2}
    # A new combination: it must travel back to node-a too.
    assert item.received_from is None
    assert item.priority == SyncPriority.URGENT
    assert item.modified_at > b_before.modified_at


def test_later_states_of_one_id_in_one_call(pair: tuple[Store, Store], tier: MemoryTier) -> None:
    a, b = pair
    a.tier(tier).add("x", {"v": 1})
    v1 = states(a, tier)
    a.tier(tier).update("x", {"v": 2})
    v2 = states(a, tier)
    assert apply(b, tier, [*v1, *v2, *v1], "node-a") == [
        Outcome.NEW,
        Outcome.FAST_FORWARD,
        Outcome.SUPERSEDED,
    ]
    assert stored(b, tier, "x").content == {"v": 2}


def test_stamps_after_a_remote_write_are_above_it(
    opener: Callable[..., Store], tier: MemoryTier
) -> None:
    store = opener()
    ahead = store.clock_settings.wall() + 30 * 10**9  # within the 60 s skew tolerance
    remote = ItemState({"v": 1}, Version(ahead, "node-z"), False, {}, {"node-z": ahead})
    apply(store, tier, [RemoteItem("x", remote)], "node-z")
    assert stored(store, tier, "x").modified_at > ahead
    assert store.tier(tier).update("x", {"v": 2})["timestamp_ns"] > ahead


def test_skewed_stamp_refuses_the_whole_call(
    pair: tuple[Store, Store], tier: MemoryTier, tmp_path: Path
) -> None:
    a, b = pair
    a.tier(tier).add("fine", {"v": 1})
    future = b.clock_settings.wall() + 3600 * 10**9
    skewed = ItemState({"v": 1}, Version(future, "node-z"), False, {}, {"node-z": future})
    before = dump(tmp_path / "b.db")
    with pytest.raises(ClockSkewError) as caught:
        apply(b, tier, [*states(a, tier), RemoteItem("late", skewed)], "node-a")
    assert caught.value.timestamp_ns == future
    assert dump(tmp_path / "b.db") == before


def test_remote_ids_are_checked(store: Store, tier: MemoryTier, db_path: Path) -> None:
    state = ItemState({"v": 1}, Version(1, "node-z"), False, {}, {"node-z": 1})
    before = dump(db_path)
    with pytest.raises(InvalidItemIdError):
        apply(store, tier, [RemoteItem("x" * 40, state)], "node-z")
    assert dump(db_path) == before


def test_after_commit_hook_sees_committed_changes(
    pair: tuple[Store, Store], tier: MemoryTier
) -> None:
    a, b = pair
    seen: list[list[tuple[str, bool]]] = []

    def hook(changed: Sequence[StoredItem]) -> None:
        seen.append([(item.item_id, item.deleted) for item in changed])

    b.tier(tier)._after_commit = hook  # type: ignore[method-assign]
    b.tier(tier).add("x", {"v": 1})
    b.tier(tier).write_many([LocalWrite.add("y", {"v": 1}), LocalWrite.delete("x")])
    a.tier(tier).add("z", {"v": 1})
    apply(b, tier, states(a, tier), "node-a")
    apply(b, tier, states(a, tier), "node-a")  # a duplicate changes nothing: no call
    with pytest.raises(ZeroDivisionError), b.write() as conn, b.stamping(conn) as clock:
        write_local(conn, b.tier(tier).spec, b.node_id, clock, [LocalWrite.add("w", {})])
        raise ZeroDivisionError  # rolled back: the hook must not hear of "w"
    b.tier(tier).get_by_id("y")  # reads are not changes
    other = MemoryTier(tier % 3 + 1)
    b.tier(other).add("elsewhere", {"v": 1})
    assert seen == [[("x", False)], [("y", False), ("x", True)], [("z", False)]]


def test_on_change_hook_runs_inside_the_transaction(
    store: Store, tier: MemoryTier, db_path: Path
) -> None:
    calls: list[tuple[tuple[str, ...], bool]] = []

    def on_change(conn: Connection, changed: Sequence[StoredItem], local: bool) -> None:
        calls.append((tuple(item.item_id for item in changed), local))
        assert conn.in_transaction()

    spec = dataclasses.replace(store.tier(tier).spec, on_change=on_change)
    with store.write() as conn, store.stamping(conn) as clock:
        write_local(
            conn, spec, store.node_id, clock, [LocalWrite.add("a", {}), LocalWrite.add("b", {})]
        )
    assert calls == [(("a", "b"), True)]
    with store.write() as conn, store.stamping(conn) as clock:
        state = ItemState({"v": 1}, Version(5, "node-z"), False, {}, {"node-z": 5})
        remote = [RemoteItem("r", state)]
        apply_remote_states(conn, spec, clock, remote, from_peer="node-z")
    assert calls[-1] == (("r",), False)

    def veto(conn: Connection, changed: Sequence[StoredItem], local: bool) -> None:
        raise RuntimeError("no room")

    before = dump(db_path)
    with pytest.raises(RuntimeError), store.write() as conn, store.stamping(conn) as clock:
        write_local(
            conn,
            dataclasses.replace(spec, on_change=veto),
            store.node_id,
            clock,
            [LocalWrite.add("c", {})],
        )
    assert dump(db_path) == before
    assert query(db_path, f"SELECT count(*) FROM {spec.table.name}") == [(3,)]
