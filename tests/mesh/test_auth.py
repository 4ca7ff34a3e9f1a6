"""The pure authentication functions: transcript, proofs, session keys, the frame trailer."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from memrepl.mesh.auth import (
    INITIATOR_TO_RESPONDER,
    TRAILER_BYTES,
    Auth,
    Challenge,
    HandshakeMessage,
    Hello,
    Refuse,
    Session,
    Welcome,
    decode_handshake,
    new_nonce,
    proof,
    session_key,
    transcript,
    verify_proof,
)
from memrepl.mesh.framing import FrameFaultError, RawFrame
from memrepl.protocol.enums import MessageTypes
from memrepl.protocol.header import encode_frame

KEY = b"k" * 32
NI, NR = bytes(range(32)), bytes(range(32, 64))


def terms(**changes: object) -> bytes:
    values: dict[str, object] = {
        "initiator_id": "a",
        "responder_id": "b",
        "initiator_nonce": NI,
        "responder_nonce": NR,
        "schema_revision": "0002",
    }
    values.update(changes)
    return transcript(
        str(values["initiator_id"]),
        str(values["responder_id"]),
        initiator_nonce=values["initiator_nonce"],  # type: ignore[arg-type]
        responder_nonce=values["responder_nonce"],  # type: ignore[arg-type]
        schema_revision=str(values["schema_revision"]),
    )


def as_raw(sealed: bytes) -> RawFrame:
    return RawFrame(sealed[:32], sealed[32:-TRAILER_BYTES], sealed[-TRAILER_BYTES:])


def test_transcript_is_length_prefixed_fields() -> None:
    t = terms()
    assert t.startswith(b"\x00\x0ememrepl-mesh/2\x00\x01a\x00\x01b\x00\x20" + NI)
    assert t.endswith(b"\x00\x040002\x00\x02\x00\x02")
    # Moving a byte between fields changes the transcript.
    assert terms(initiator_id="ab", responder_id="") != terms(initiator_id="a", responder_id="bb")


def test_proofs_bind_every_field_and_the_role() -> None:
    t = terms()
    good = proof(KEY, initiator=True, transcript_bytes=t)
    assert verify_proof(KEY, initiator=True, transcript_bytes=t, claimed=good)
    assert not verify_proof(KEY, initiator=False, transcript_bytes=t, claimed=good)  # reflected
    assert not verify_proof(b"x" * 32, initiator=True, transcript_bytes=t, claimed=good)
    for change in (
        {"initiator_id": "c"},
        {"responder_id": "c"},
        {"initiator_nonce": new_nonce()},
        {"responder_nonce": new_nonce()},
        {"schema_revision": "0003"},
    ):
        assert not verify_proof(KEY, initiator=True, transcript_bytes=terms(**change), claimed=good)
    assert session_key(KEY, t) != session_key(KEY, terms(responder_nonce=new_nonce()))


def test_trailer_layout_is_sequence_then_hmac() -> None:
    key = session_key(KEY, terms())
    frame = encode_frame(MessageTypes.ACK, b"{}", timestamp_ns=1)
    sealed = Session.for_role(key, initiator=True).seal(frame)
    assert sealed[: len(frame)] == frame
    assert sealed[len(frame) : len(frame) + 8] == bytes(8)  # sequence 0, u64 BE
    mac = hmac.new(key, INITIATOR_TO_RESPONDER + bytes(8) + frame, hashlib.sha256).digest()
    assert sealed[len(frame) + 8 :] == mac


def test_every_altered_byte_is_refused_and_the_stream_carries_on() -> None:
    key = session_key(KEY, terms())
    sender = Session.for_role(key, initiator=True)
    receiver = Session.for_role(key, initiator=False)
    sealed = sender.seal(encode_frame(MessageTypes.VECTOR_SYNC, b"payload bytes"))
    for i in range(len(sealed)):
        altered = bytearray(sealed)
        altered[i] ^= 0x80
        with pytest.raises(FrameFaultError) as caught:
            receiver.check(as_raw(bytes(altered)))
        assert caught.value.code == "bad-hmac" and caught.value.in_sync
    receiver.check(as_raw(sealed))  # the genuine frame still has the expected number
    assert receiver.recv_seq == 1


def test_replay_reorder_and_reflection_are_refused() -> None:
    key = session_key(KEY, terms())
    sender = Session.for_role(key, initiator=True)
    receiver = Session.for_role(key, initiator=False)
    first, second = (sender.seal(encode_frame(MessageTypes.ACK, b"%d" % i)) for i in range(2))
    with pytest.raises(FrameFaultError, match="out of order") as caught:
        receiver.check(as_raw(second))
    assert caught.value.code == "bad-sequence"
    receiver.check(as_raw(first))
    with pytest.raises(FrameFaultError, match="replayed"):
        receiver.check(as_raw(first))
    receiver.check(as_raw(second))
    # A frame sent the other way cannot be reflected back to its sender.
    echo = receiver.seal(encode_frame(MessageTypes.ACK, b"0"))
    with pytest.raises(FrameFaultError, match="HMAC"):
        receiver.check(as_raw(echo))
    with pytest.raises(FrameFaultError, match="no trailer"):
        receiver.check(RawFrame(first[:32], first[32:-40], b""))


def test_handshake_messages_round_trip() -> None:
    messages: list[HandshakeMessage] = [
        Hello("a", "0002", NI),
        Hello("a", "0002", NI, "certificate"),
        Challenge("b", "0002", NR),
        Challenge("b", "0002", NR, "certificate"),
        Auth(bytes(range(32))),
        Auth(),
        Welcome(bytes(range(32))),
        Welcome(),
        Refuse("auth-failed", "no"),
    ]
    for message in messages:
        assert decode_handshake(message.encode()) == message


def test_the_listener_says_nothing_that_depends_on_the_key_before_the_dialler_proved() -> None:
    """The challenge carries no proof: nothing an unauthenticated dialler could test guesses of
    the key against. Only the welcome, sent after the dialler's proof verified, has one."""
    challenge = json.loads(Challenge("b", "0002", NR).encode())
    assert set(challenge) == {"type", "protocol", "auth", "node_id", "version", "schema", "nonce"}
    assert "proof" in json.loads(Welcome(bytes(32)).encode())


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"[]",
        b'{"type": "hello"}',
        b'{"type": "nope"}',
        json.dumps({"type": "auth", "proof": "zz" * 32}).encode(),
        json.dumps({"type": "auth", "proof": "00" * 31}).encode(),
        json.dumps(
            {"type": "hello", "protocol": "other", "node_id": "a", "version": 2, "schema": "s"}
            | {"nonce": "00" * 32}
        ).encode(),
        json.dumps(
            {"type": "hello", "protocol": "memrepl-mesh/1", "node_id": "", "version": 2}
            | {"schema": "s", "nonce": "00" * 32}
        ).encode(),
        json.dumps({"type": "refuse", "code": 1, "reason": "x"}).encode(),
        json.dumps(
            {"type": "hello", "protocol": "memrepl-mesh/2", "auth": "password", "node_id": "a"}
            | {"version": 2, "schema": "s", "nonce": "00" * 32}
        ).encode(),
        json.dumps(
            {"type": "hello", "protocol": "memrepl-mesh/1", "auth": "shared-key", "node_id": "a"}
            | {"version": 2, "schema": "s", "nonce": "00" * 32}
        ).encode(),
        b"[" * 100_000,
    ],
)
def test_bad_handshake_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(FrameFaultError) as caught:
        decode_handshake(payload)
    assert caught.value.code == "bad-handshake"
