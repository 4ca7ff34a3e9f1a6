"""Rows and StoredItems convert both ways without loss: the state that merges is the one stored."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from memrepl.merge import ItemState, Version
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import Store, StoredItem
from memrepl.storage.items import RemoteItem, apply_remote_states, load_items
from memrepl.storage.records import item_from_row, item_from_values, row_tuple
from memrepl.storage.schema import TIER_SPECS

names = st.text(min_size=1, max_size=8)
stamps = st.integers(min_value=1, max_value=2**62)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def item_states(draw: st.DrawFn) -> ItemState:
    content = draw(st.dictionaries(names, json_values, max_size=4))
    whole = Version(draw(stamps), draw(names))
    deleted = draw(st.booleans())
    merged = draw(st.dictionaries(names, json_values, max_size=3))
    clocks = {key: Version(draw(stamps), draw(names)) for key in merged}
    context = draw(st.dictionaries(names, stamps, min_size=1, max_size=3))
    return ItemState({} if deleted else content | merged, whole, deleted, clocks, context)


@settings(max_examples=60, deadline=None)
@given(state=item_states(), priority=st.sampled_from(SyncPriority))
def test_row_round_trip_in_memory(state: ItemState, priority: SyncPriority) -> None:
    for spec in TIER_SPECS.values():
        extras = spec.derive_columns(state.content) | dict(spec.local_defaults)
        item = StoredItem("id", state, priority, 7, "peer", 3, 2, 9, extras)
        assert item_from_values(spec, row_tuple(spec, item)) == item


def test_row_round_trip_through_sqlite(store: Store) -> None:
    """States with every part set survive a real write and read, on every tier."""
    state = ItemState(
        {"a": 1, "b": [1, {"c": None}], "é": "ü"},
        Version(10, "node-x"),
        False,
        {"b": Version(12, "node-y")},
        {"node-x": 10, "node-y": 12},
    )
    for tier in MemoryTier:
        spec = store.tier(tier).spec
        with store.write() as conn, store.stamping(conn) as clock:
            apply_remote_states(
                conn, spec, clock, [RemoteItem("r", state, SyncPriority.LOW)], from_peer="p"
            )
        with store.read() as conn:
            (item,) = load_items(conn, spec, ["r"]).values()
            row = conn.execute(select(spec.table)).mappings().one()
        assert item.state == state
        assert item.priority == SyncPriority.LOW
        assert item.received_from == "p"
        assert item_from_row(spec, row) == item
        record: dict[str, Any] = item.to_record()
        assert (record["timestamp_ns"], record["origin_node"]) == (12, "node-y")
