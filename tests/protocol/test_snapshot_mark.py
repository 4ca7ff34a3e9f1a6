"""The snapshot mark of memrepl's extension: round trip, v2 invisibility, strict decoding."""

from __future__ import annotations

import dataclasses
import json

import pytest

from memrepl.errors import ProtocolError
from memrepl.protocol import MemorySyncBatch, SnapshotMark

from .helpers import empty_batch


def batch(mark: SnapshotMark | None) -> MemorySyncBatch:
    return empty_batch(snapshot=mark)


@pytest.mark.parametrize("final", [False, True])
def test_a_snapshot_mark_survives_pack_and_unpack(final: bool) -> None:
    mark = SnapshotMark("snap-1", final=final)
    assert MemorySyncBatch.unpack(batch(mark).pack()).snapshot == mark


def test_a_batch_without_a_mark_has_no_extension() -> None:
    packed = batch(None).pack()
    assert b"memrepl" not in packed
    assert MemorySyncBatch.unpack(packed).snapshot is None


def test_a_malformed_mark_is_a_protocol_error() -> None:
    packed = batch(SnapshotMark("s")).pack()
    tampered = packed.replace(b'"final": false', b'"final": 0    ')
    with pytest.raises(ProtocolError) as caught:
        MemorySyncBatch.unpack(tampered)
    assert caught.value.code == "bad-metadata"
    assert json.loads(packed[36:].decode())["memrepl"]["snapshot"] == {"id": "s", "final": False}


def test_the_purge_horizon_survives_pack_and_unpack() -> None:
    horizon = 2**64 - 1
    marked = empty_batch(snapshot=SnapshotMark("s", final=True), purge_horizon=horizon)
    assert MemorySyncBatch.unpack(marked.pack()).purge_horizon == horizon
    assert MemorySyncBatch.unpack(batch(None).pack()).purge_horizon is None


def test_a_purge_horizon_that_is_not_a_u64_is_a_protocol_error() -> None:
    marked = dataclasses.replace(batch(None), purge_horizon=12345)
    packed = marked.pack()
    tampered = packed.replace(b'"purged_through": 12345', b'"purged_through": -1234')
    with pytest.raises(ProtocolError) as caught:
        MemorySyncBatch.unpack(tampered)
    assert caught.value.code == "bad-metadata"
