"""The pure authentication functions: transcript, proofs, session keys, the frame seals."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from memrepl.mesh.auth import (
    HEADER_SEAL_BYTES,
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
    body = 32 + HEADER_SEAL_BYTES
    return RawFrame(
        sealed[:32], sealed[body:-TRAILER_BYTES], sealed[-TRAILER_BYTES:], sealed[32:body]
    )


def accept(session: Session, sealed: bytes) -> None:
    """What the reader does with a frame: its header first, then the whole frame."""
    raw = as_raw(sealed)
    session.check_header(raw.header, raw.seal)
    session.check(raw)


def test_transcript_is_length_prefixed_fields() -> None:
    t = terms()
    assert t.startswith(b"\x00\x0ememrepl-mesh/3\x00\x01a\x00\x01b\x00\x20" + NI)
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


def test_seal_layout_header_sequence_header_mac_payload_frame_mac() -> None:
    key = session_key(KEY, terms())
    frame = encode_frame(MessageTypes.ACK, b"{}", timestamp_ns=1)
    header, payload = frame[:32], frame[32:]
    sealed = Session.for_role(key, initiator=True).seal(frame)
    seq = bytes(8)  # sequence 0, u64 BE
    label = INITIATOR_TO_RESPONDER
    header_mac = hmac.new(key, label + b"h" + seq + header, hashlib.sha256).digest()[:16]
    frame_mac = hmac.new(key, label + b"f" + seq + header + payload, hashlib.sha256).digest()
    assert sealed == header + seq + header_mac + payload + frame_mac
    assert len(sealed) == len(frame) + HEADER_SEAL_BYTES + TRAILER_BYTES == len(frame) + 56


def test_every_altered_byte_is_refused_and_ends_the_connection() -> None:
    key = session_key(KEY, terms())
    sender = Session.for_role(key, initiator=True)
    sealed = sender.seal(encode_frame(MessageTypes.VECTOR_SYNC, b"payload bytes"))
    for i in range(len(sealed)):
        receiver = Session.for_role(key, initiator=False)
        altered = bytearray(sealed)
        altered[i] ^= 0x80
        raw = as_raw(bytes(altered))
        with pytest.raises(FrameFaultError) as caught:
            receiver.check_header(raw.header, raw.seal)
            receiver.check(raw)
        # A byte of the header or its seal is caught before the payload is read.
        header_caught = "header" in str(caught.value)
        assert header_caught == (i < 32 + HEADER_SEAL_BYTES), i
        assert caught.value.code in ("bad-hmac", "bad-sequence")
        assert not caught.value.in_sync  # the connection ends: nothing after it is trusted
        assert receiver.recv_seq == 0
    receiver = Session.for_role(key, initiator=False)
    accept(receiver, sealed)
    assert receiver.recv_seq == 1


def test_replay_reorder_and_reflection_are_refused() -> None:
    key = session_key(KEY, terms())
    sender = Session.for_role(key, initiator=True)
    receiver = Session.for_role(key, initiator=False)
    first, second = (sender.seal(encode_frame(MessageTypes.ACK, b"%d" % i)) for i in range(2))
    with pytest.raises(FrameFaultError, match="out of order") as caught:
        accept(receiver, second)
    assert caught.value.code == "bad-sequence" and not caught.value.in_sync
    accept(receiver, first)
    with pytest.raises(FrameFaultError, match="replayed"):
        accept(receiver, first)
    accept(receiver, second)
    # A frame sent the other way cannot be reflected back to its sender.
    echo = receiver.seal(encode_frame(MessageTypes.ACK, b"0"))
    with pytest.raises(FrameFaultError, match="HMAC"):
        accept(receiver, echo)
    with pytest.raises(FrameFaultError, match="no header seal"):
        receiver.check_header(first[:32], b"")
    with pytest.raises(FrameFaultError, match="not sealed"):
        receiver.check(RawFrame(first[:32], b"", b""))


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
            {"type": "hello", "protocol": "memrepl-mesh/3", "auth": "password", "node_id": "a"}
            | {"version": 2, "schema": "s", "nonce": "00" * 32}
        ).encode(),
        json.dumps(
            {"type": "hello", "protocol": "memrepl-mesh/1", "auth": "shared-key", "node_id": "a"}
            | {"version": 2, "schema": "s", "nonce": "00" * 32}
        ).encode(),
        # /2 sealed frames with one trailer: its nodes and this one must not connect.
        json.dumps(
            {"type": "hello", "protocol": "memrepl-mesh/2", "auth": "shared-key", "node_id": "a"}
            | {"version": 2, "schema": "s", "nonce": "00" * 32}
        ).encode(),
        b"[" * 100_000,
    ],
)
def test_bad_handshake_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(FrameFaultError) as caught:
        decode_handshake(payload)
    assert caught.value.code == "bad-handshake"
