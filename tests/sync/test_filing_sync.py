"""Filing options replicate with the placement: a fifth element of the metadata's ``"p"`` entry
only when there are some, merged with the namespace as one register, hashed into the digests,
refused whole when malformed; every node derives the same deadline from them."""

from __future__ import annotations

import json
import time

import pytest

from memrepl.errors import ProtocolError
from memrepl.filing import FilingOptions, encode_options
from memrepl.protocol.batch import MemorySyncBatch
from memrepl.protocol.enums import MemoryTier, SyncOperation
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem
from memrepl.protocol.limits import HEADER_SIZE
from memrepl.storage import LocalWrite

from ..files import dump, location_of, query
from .conftest import Cluster

EPISODIC = MemoryTier.EPISODIC
S = 1_000_000_000


def placements(packed: bytes) -> list[object]:
    length = int.from_bytes(packed[HEADER_SIZE : HEADER_SIZE + 4], "big")
    metadata = json.loads(packed[HEADER_SIZE + 4 : HEADER_SIZE + 4 + length])
    return [entry.get("p") for entry in metadata["memrepl"]["items"]]


def test_options_travel_and_every_node_derives_the_same_deadline(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    store = cluster.stores["a"]
    store.episodic.write_many(
        [
            LocalWrite.put("opt", {"t": "x"}, namespace=("n",), embed=["t"], expire_after_s=3600),
            LocalWrite.put("plain", {"t": "y"}, namespace=("n",)),
        ]
    )
    batch = a.create_delta_batch(EPISODIC, "b")
    packed = batch.pack(compress_threshold=10**9)
    options = '{"embed":["t"],"ttl_ns":3600000000000}'
    by_id = dict(zip([item.item_id for item in batch.items], placements(packed), strict=True))
    assert isinstance(by_id["opt"], list) and by_id["opt"][4:] == [options]
    assert isinstance(by_id["plain"], list) and len(by_id["plain"]) == 4
    assert b.apply_sync_batch(MemorySyncBatch.unpack(packed)) == (2, 0)
    sql = "SELECT item_id, item_options, version_ts + 3600000000000 = expires_at_ns, "
    sql += "expires_at_ns FROM episodic_items ORDER BY item_id"
    on_a = query(location_of(cluster.stores["a"]), sql)
    on_b = query(location_of(cluster.stores["b"]), sql)
    assert (
        on_a
        == on_b
        == [
            ("opt", options, 1, on_a[0][3]),
            ("plain", "", None, None),
        ]
    )
    digests = "SELECT tier, bucket, digest, row_count FROM tier_digests ORDER BY tier, bucket"
    assert query(location_of(cluster.stores["a"]), digests) == query(
        location_of(cluster.stores["b"]), digests
    )


def test_concurrent_puts_converge_on_the_later_options(cluster: Cluster) -> None:
    a, b = cluster.add("a"), cluster.add("b")
    cluster.stores["a"].episodic.write_many(
        [LocalWrite.put("k", {"v": 1}, namespace=("n",), expire_after_s=10)]
    )
    time.sleep(0.002)
    cluster.stores["b"].episodic.write_many(
        [LocalWrite.put("k", {"v": 2}, namespace=("n",), embed=False)]
    )
    ab, ba = a.create_delta_batch(EPISODIC, "b"), b.create_delta_batch(EPISODIC, "a")
    assert b.apply_sync_batch(ab)[1] == 1
    assert a.apply_sync_batch(ba)[1] == 1
    sql = "SELECT content, item_options, expires_at_ns FROM episodic_items"
    expected = [('{"v": 2}', encode_options(FilingOptions(embed=())), None)]
    assert query(location_of(cluster.stores["a"]), sql) == expected
    assert query(location_of(cluster.stores["b"]), sql) == expected


def optioned(now: int, options: str) -> MemorySyncItem:
    return MemorySyncItem(
        item_id="bad",
        timestamp_ns=now,
        tier=EPISODIC,
        operation=SyncOperation.UPDATE,
        payload=b'{"v": 1}',
        version=ItemVersionInfo(
            origin_node="a",
            causal_context={"a": now},
            whole_timestamp_ns=now,
            whole_origin="a",
            namespace=("n",),
            namespace_ts=now,
            namespace_origin="a",
            options=options,
        ),
    )


@pytest.mark.parametrize(
    "options",
    ['{"ttl_ns": 5}', '{"ttl_ns":-5}', '{"embed":"t"}', '{"colour":"red"}', "{}", "[1]", "x"],
)
def test_options_that_are_not_canonical_are_refused_whole(cluster: Cluster, options: str) -> None:
    cluster.add("a")
    b = cluster.add("b")
    cluster.stores["b"].episodic.add("kept", {"v": 1})
    now = time.time_ns()
    good = MemorySyncItem("good", now - 10, EPISODIC, SyncOperation.INSERT, payload=b'{"v": 2}')
    batch = MemorySyncBatch("bad-batch", "a", "b", EPISODIC, [good, optioned(now, options)])
    before = dump(location_of(cluster.stores["b"]))
    for attempt in (batch, MemorySyncBatch.unpack(batch.pack())):
        with pytest.raises(ProtocolError) as caught:
            b.apply_sync_batch(attempt)
        assert caught.value.code == "bad-item-state"
    assert dump(location_of(cluster.stores["b"])) == before


@pytest.mark.parametrize("fifth", ["", 5, ["t"], None])
def test_a_fifth_placement_element_that_is_not_a_text_is_bad_metadata(fifth: object) -> None:
    now = time.time_ns()
    entry = optioned(now, '{"ttl_ns":5}').version.to_json()  # type: ignore[union-attr]
    assert entry["p"][4] == '{"ttl_ns":5}'
    entry["p"][4] = fifth
    with pytest.raises(ProtocolError) as caught:
        ItemVersionInfo.from_json(entry)
    assert caught.value.code == "bad-metadata"
    entry["p"].append("extra")
    with pytest.raises(ProtocolError):
        ItemVersionInfo.from_json(entry)
