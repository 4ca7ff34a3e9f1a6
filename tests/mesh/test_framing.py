"""Reading frames off a stream within limits; the configuration's checks; the backoff."""

from __future__ import annotations

import asyncio
import random

import pytest

from memrepl.errors import MeshError
from memrepl.mesh.auth import HEADER_SEAL_BYTES, Session
from memrepl.mesh.config import TcpMeshConfig, backoff_delay_s
from memrepl.mesh.framing import FrameFaultError, check_framing, parse_header, read_frame
from memrepl.protocol.enums import MessageTypes
from memrepl.protocol.header import encode_frame

from .rawpeer import raw_header


def stream(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def sessions() -> tuple[Session, Session]:
    key = b"s" * 32
    return Session.for_role(key, initiator=True), Session.for_role(key, initiator=False)


async def test_reads_sealed_frames_then_none_at_a_clean_end() -> None:
    sender, receiver = sessions()
    frames = [sender.seal(encode_frame(MessageTypes.ACK, b"{%d}" % n)) for n in range(2)]
    reader = stream(b"".join(frames))
    for n, sealed in enumerate(frames):
        raw = await read_frame(reader, max_payload=10, idle_timeout_s=1, seal=receiver)
        assert raw is not None and raw.payload == b"{%d}" % n
        assert raw.size == len(sealed)
    assert receiver.recv_seq == 2
    assert await read_frame(reader, max_payload=10, idle_timeout_s=1, seal=receiver) is None


@pytest.mark.parametrize("byte", range(16, 24))
async def test_a_length_altered_on_the_wire_is_refused_before_its_payload(byte: int) -> None:
    sender, receiver = sessions()
    sealed = bytearray(sender.seal(encode_frame(MessageTypes.VECTOR_SYNC, b"x" * 100)))
    sealed[byte] ^= 0x04  # payload_len, still far below the frame limit
    # Only the header and its seal arrive, and the stream stays open: a reader that believed
    # the length would wait for the rest for an hour.
    reader = stream(bytes(sealed[: 32 + HEADER_SEAL_BYTES]), eof=False)
    async with asyncio.timeout(30):
        with pytest.raises(FrameFaultError) as caught:
            await read_frame(reader, max_payload=1 << 25, idle_timeout_s=3600, seal=receiver)
    assert caught.value.code == "bad-hmac" and not caught.value.in_sync


async def test_a_frame_cut_short_is_an_incomplete_read() -> None:
    frame = encode_frame(MessageTypes.ACK, b"{}")
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(stream(frame[:-1]), max_payload=10, idle_timeout_s=1)


async def test_oversized_payload_is_refused_before_reading_it() -> None:
    reader = stream(raw_header(MessageTypes.VECTOR_SYNC, 1 << 40), eof=False)
    with pytest.raises(FrameFaultError) as caught:
        await read_frame(reader, max_payload=1 << 20, idle_timeout_s=1)
    assert caught.value.code == "frame-too-large" and not caught.value.in_sync


async def test_a_peer_that_stalls_mid_frame_times_out() -> None:
    reader = stream(raw_header(MessageTypes.VECTOR_SYNC, 100) + b"partial", eof=False)
    with pytest.raises(FrameFaultError) as caught:
        await read_frame(reader, max_payload=1000, idle_timeout_s=0.05)
    assert caught.value.code == "idle-timeout"


async def test_large_payloads_are_read_in_chunks() -> None:
    payload = bytes(range(256)) * 10_000  # 2.5 MB, three chunks
    raw = await read_frame(
        stream(encode_frame(MessageTypes.MEMORY_STORE, payload)),
        max_payload=len(payload),
        idle_timeout_s=1,
    )
    assert raw is not None and raw.payload == payload


def test_framing_and_header_faults() -> None:
    good = raw_header(MessageTypes.ACK, 5)
    assert check_framing(good, max_payload=5) == 5
    with pytest.raises(FrameFaultError, match="magic"):
        check_framing(b"\x01" + good[1:], max_payload=5)
    with pytest.raises(FrameFaultError, match="version"):
        check_framing(good[:9] + b"\x03" + good[10:], max_payload=5)
    for header, code in (
        (raw_header(0x0201, 0), "unknown-msg-type"),
        (raw_header(MessageTypes.ACK, 0, priority=7), "unknown-priority"),
    ):
        with pytest.raises(FrameFaultError) as caught:
            parse_header(header)
        assert caught.value.code == code and caught.value.in_sync


def test_config_refuses_nonsense() -> None:
    for bad in (
        {"max_faults": 0},
        {"max_frame_bytes": -1},
        {"heartbeat_interval_s": True},
        {"idle_timeout_s": 1.0, "heartbeat_interval_s": 2.0},
        {"reconnect_base_s": 2.0, "reconnect_cap_s": 1.0},
    ):
        with pytest.raises(MeshError):
            TcpMeshConfig(**bad)


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        ceiling = min(5.0, 0.1 * 2**attempt)
        delay = backoff_delay_s(attempt, base_s=0.1, cap_s=5.0, rng=rng)
        assert ceiling / 2 <= delay <= ceiling
    delays = {backoff_delay_s(3, base_s=0.1, cap_s=5.0, rng=rng) for _ in range(20)}
    assert len(delays) == 20  # jittered
