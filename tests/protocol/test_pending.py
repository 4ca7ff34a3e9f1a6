"""The items a sender announces as pending: round trip, invisible to v2, strict decoding."""

from __future__ import annotations

import json

import pytest

from memrepl.errors import BatchError, ProtocolError
from memrepl.protocol import MemorySyncBatch

from .helpers import empty_batch


def batch(pending: int | None) -> MemorySyncBatch:
    return empty_batch(cursor=5, pending=pending)


@pytest.mark.parametrize("pending", [0, 1, 199_900, 2**64 - 1])
def test_pending_survives_pack_and_unpack(pending: int) -> None:
    packed = batch(pending).pack()
    assert MemorySyncBatch.unpack(packed).pending == pending
    assert json.loads(packed[36:].decode())["memrepl"]["pending"] == pending


def test_without_pending_the_bytes_are_as_before() -> None:
    packed = batch(None).pack()
    assert b"pending" not in packed
    assert MemorySyncBatch.unpack(packed).pending is None


@pytest.mark.parametrize("bad", [b'"pending": -1', b'"pending": "7"', b'"pending": 1.5'])
def test_a_malformed_pending_is_a_protocol_error(bad: bytes) -> None:
    packed = batch(12345).pack()
    body = packed[36:].replace(b'"pending": 12345', bad)
    header = bytearray(packed[:32])
    header[16:24] = (len(body) + 4).to_bytes(8, "big")
    length = (len(body) - len(packed[36:]) + int.from_bytes(packed[32:36], "big")).to_bytes(
        4, "big"
    )
    with pytest.raises(ProtocolError) as caught:
        MemorySyncBatch.unpack(bytes(header) + length + body)
    assert caught.value.code == "bad-metadata"


def test_a_pending_that_is_not_a_u64_is_refused_when_built() -> None:
    with pytest.raises(BatchError):
        batch(-1)
