"""Namespaces replicate with their items: under the batch's ``"memrepl"`` metadata key (a v2
reader still reads the batch), merged as an LWW register, and refused whole when malformed."""

from __future__ import annotations

import json
import time

import pytest

from memrepl.errors import ProtocolError
from memrepl.namespaces import keyed_id
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, SyncOperation
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem
from memrepl.protocol.limits import HEADER_SIZE

from ..files import dump, location_of, query
from .conftest import Cluster

WORKING = MemoryTier.WORKING


def metadata_of(packed: bytes) -> dict[str, object]:
    length = int.from_bytes(packed[HEADER_SIZE : HEADER_SIZE + 4], "big")
    loaded: dict[str, object] = json.loads(packed[HEADER_SIZE + 4 : HEADER_SIZE + 4 + length])
    return loaded


def test_a_namespace_and_key_travel_with_the_item(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    key_id = keyed_id(("users", "alice"), "favourite food")
    cluster.stores["a"].working.add(
        key_id, {"food": "pizza"}, namespace=("users", "alice"), key="favourite food"
    )
    cluster.stores["a"].working.add("plain", {"v": 1})
    batch = a.create_delta_batch(WORKING, "b")
    packed = batch.pack(compress_threshold=10**9)
    # v2 readers see plain items and ignore the extension key; only the filed item has "p".
    extension = metadata_of(packed)["memrepl"]
    assert isinstance(extension, dict)
    entries = {
        item.item_id: entry for item, entry in zip(batch.items, extension["items"], strict=True)
    }
    assert "p" not in entries["plain"]
    assert entries[key_id]["p"][2:] == [["users", "alice"], "favourite food"]
    assert b.apply_sync_batch(MemorySyncBatch.unpack(packed)) == (2, 0)
    received = cluster.stores["b"].working.get_by_id(key_id)
    assert received is not None
    assert (received["namespace"], received["key"]) == (("users", "alice"), "favourite food")
    assert cluster.stores["b"].list_namespaces() == [("users", "alice")]


def test_concurrent_moves_converge_on_the_latest_and_are_logged(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.stores["a"].working.add("x", {"v": 0}, namespace=("users", "alice"))
    assert b.apply_sync_batch(a.create_delta_batch(WORKING, "b"))[0] == 1
    cluster.stores["b"].working.merge("x", {"w": 1}, namespace=("users", "bob"))
    time.sleep(0.001)
    cluster.stores["a"].working.update("x", {"v": 2})  # later, names no namespace
    ab = a.create_delta_batch(WORKING, "b")
    ba = b.create_delta_batch(WORKING, "a")
    assert b.apply_sync_batch(ab)[1] == 1
    assert a.apply_sync_batch(ba)[1] == 1
    for node in ("a", "b"):
        record = cluster.stores[node].working.get_by_id("x")
        assert record is not None
        # a's update won the content; b's move is the latest write that named a namespace.
        assert (record["content"], record["namespace"]) == ({"v": 2}, ("users", "bob"))
    path = location_of(cluster.stores["a"])
    assert query(path, "SELECT rule FROM conflicts WHERE item_id = 'x'") == [("field-merge",)]


def placed_item(
    now: int,
    *,
    namespace: tuple[str, ...] = ("users",),
    key: str = "",
    placed_ts: int | None = None,
    placed_origin: str = "a",
    context: dict[str, int] | None = None,
) -> MemorySyncItem:
    return MemorySyncItem(
        item_id="bad",
        timestamp_ns=now,
        tier=WORKING,
        operation=SyncOperation.UPDATE,
        payload=b'{"v": 1}',
        version=ItemVersionInfo(
            origin_node="a",
            causal_context=context or {"a": now},
            whole_timestamp_ns=now,
            whole_origin="a",
            namespace=namespace,
            key=key,
            namespace_ts=now if placed_ts is None else placed_ts,
            namespace_origin=placed_origin,
        ),
    )


def placed_ts_is_zero(item: MemorySyncItem) -> bool:
    return item.version is not None and item.version.namespace_ts == 0


@pytest.mark.parametrize(
    "case",
    [
        "empty part",
        "key that cannot travel",
        "namespace set after the latest write",
        "namespace write missing from the context",
        "namespace without the write that set it",
    ],
)
def test_a_malformed_placement_is_refused_whole(cluster: Cluster, case: str) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.stores["b"].working.add("kept", {"v": 1})
    now = time.time_ns()
    item = {
        "empty part": lambda: placed_item(now, namespace=("users", "")),
        "key that cannot travel": lambda: placed_item(now, key="a\x00b"),
        "namespace set after the latest write": lambda: placed_item(
            now, placed_ts=now + 5, context={"a": now + 5}
        ),
        "namespace write missing from the context": lambda: placed_item(now, placed_origin="z"),
        "namespace without the write that set it": lambda: placed_item(now, placed_ts=0),
    }[case]()
    good = MemorySyncItem("good", now - 10, WORKING, SyncOperation.INSERT, payload=b'{"v": 2}')
    batch = MemorySyncBatch("bad-batch", "a", "b", WORKING, [good, item], cursor=now)
    path = location_of(cluster.stores["b"])
    before = dump(path)
    # Packing carries no namespace without its write (ItemVersionInfo.to_json): that case can
    # only come from a hand-made batch.
    attempts = [batch] if placed_ts_is_zero(item) else [batch, MemorySyncBatch.unpack(batch.pack())]
    for attempt in attempts:
        with pytest.raises(ProtocolError) as caught:
            b.apply_sync_batch(attempt)
        assert caught.value.code == "bad-item-state"
    assert dump(path) == before
    del a


def test_a_placement_of_the_wrong_shape_is_bad_metadata(cluster: Cluster) -> None:
    now = time.time_ns()
    packed = MemorySyncBatch("b1", "a", "b", WORKING, [placed_item(now)], cursor=now).pack()
    metadata = metadata_of(packed)
    for bad in ([now, "a", "users", ""], [0, "a", [], ""], [now, "a", [1], ""], "p"):
        extension = metadata["memrepl"]
        assert isinstance(extension, dict)
        extension["items"][0]["p"] = bad
        with pytest.raises(ProtocolError) as caught:
            ItemVersionInfo.from_json(extension["items"][0])
        assert caught.value.code == "bad-metadata"
