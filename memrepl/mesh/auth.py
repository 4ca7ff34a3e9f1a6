"""Connection-level authentication for the mesh: the handshake messages and the frame seals.

MEMSHADOW v2 has no integrity field (PROTOCOL.md §1, §5), so the mesh adds authentication around
the frames without changing them. Everything here is a pure function over bytes: no sockets, no
clock; the only randomness is :func:`new_nonce`.

**Handshake.** Four HANDSHAKE frames, each a plain v2 frame (header + UTF-8 JSON payload, no
trailer, payload at most :data:`MAX_HANDSHAKE_PAYLOAD_BYTES`), initiator = the dialler::

    I -> R  {"type": "hello", "protocol": "memrepl-mesh/3", "auth": A, "node_id": I,
             "version": 2, "schema": S, "nonce": hex(Ni)}
    R -> I  {"type": "challenge", "protocol": ..., "auth": A, "node_id": R, "version": 2,
             "schema": S, "nonce": hex(Nr)}
    I -> R  {"type": "auth", "proof": hex(HMAC(K, PROOF_I || T))}
    R -> I  {"type": "welcome", "proof": hex(HMAC(K, PROOF_R || T))}

and, at any step instead, ``{"type": "refuse", "code": ..., "reason": ...}`` before closing.
``A`` is the authentication mode, ``"shared-key"`` or ``"certificate"``; both ends must use the
same. ``K`` is the cluster's shared key, ``Ni``/``Nr`` are 32 fresh random bytes from each side,
``S`` the replication revision (``memrepl.storage.migrate.REPLICATION_REVISION``, the newest
migration that changed what peers exchange; both sides must agree), and the transcript ``T``
binds every value both sides agreed on: each of ``"memrepl-mesh/3"``, I, R, Ni, Nr, S (UTF-8) and
the version (u16 BE), in that order, each preceded by its length as a u16 BE. Proofs are compared
with ``hmac.compare_digest``. The two proofs use different labels, so neither can be reflected as
the other; fresh nonces make every transcript, and so every session key, new.

**The dialler proves first.** The listener sends nothing that depends on the key until the
dialler's proof has verified: a stranger who connects gets a nonce, and a refusal, and nothing
to test guesses of the key against offline. (A node only dials the addresses its operator gave
it; a listener impersonating one of those does receive the dialler's proof, which is why a key
must be at least 32 random bytes: :func:`memrepl.mesh.identity.cluster_key`.)

In **certificate mode** (``A = "certificate"``) the connection is mutual TLS 1.3 and the proofs
are left out (``auth`` and ``welcome`` carry no ``proof``): the TLS handshake has proven both
certificates, and each side checks that the node id claimed in ``hello``/``challenge`` is the one
the other's certificate names.

**Session.** In shared-key mode ``session_key = HMAC-SHA256(K, SESSION_LABEL || T)``, and after
the handshake every frame in both directions is sealed: its 32-byte v2 header is followed by a
24-byte *header seal*, and its payload by a 32-byte *trailer*::

    header (32) | sequence (8) | header MAC (16) | payload (payload_len) | frame MAC (32)

    sequence    u64 BE: 0 for the first frame in each direction, then +1
    header MAC  the first 16 bytes of HMAC-SHA256(session_key,
                    direction_label || "h" || sequence || header)
    frame MAC   HMAC-SHA256(session_key, direction_label || "f" || sequence || header || payload)

``direction_label`` is :data:`INITIATOR_TO_RESPONDER` or :data:`RESPONDER_TO_INITIATOR` (equal
lengths; the header is 32 bytes and the sequence 8, so each MAC input is unambiguous). The
header has a MAC of its own so that its payload_len is believed only once it is authentic: a
length altered on the wire is refused as soon as the header arrives, instead of the reader
waiting for a payload that never comes (memrepl.mesh.framing). This layout is what is new in
``memrepl-mesh/3``: ``/2`` had one 40-byte trailer (sequence, then one MAC over header and
payload) after the payload, so its nodes and these refuse each other at the handshake rather
than failing every frame after it.

The rules that keep it right: a frame is accepted only if both MACs verify under this
connection's key for this direction AND its sequence number is exactly the next expected one.
**A frame that fails ends the connection at once** (DISCONNECT ``bad-hmac`` or
``bad-sequence``): once a frame is refused, the stream cannot be trusted to go on -- the frame
lost may be an honest one, after which every honest frame would be out of sequence -- so the
dialler reconnects at once with a new session, and the sync layer sends again what was in flight
(memrepl.sync.awaiting). Replayed, reordered, altered and foreign-session frames are all refused,
and an altered frame costs a reconnect, never a stall.

In certificate mode frames have **no trailer** (:class:`TlsSession`): TLS already authenticates,
numbers and orders every record of the connection, and refuses (by closing) anything altered,
replayed or reordered; a second MAC under a key derived from nothing secret would add cost, not
protection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from memrepl.mesh.framing import FaultCode, FrameFaultError, RawFrame
from memrepl.protocol.limits import PROTOCOL_VERSION

__all__ = [
    "AUTH_MODES",
    "HEADER_MAC_BYTES",
    "HEADER_SEAL_BYTES",
    "INITIATOR_TO_RESPONDER",
    "MAC_BYTES",
    "MAX_HANDSHAKE_PAYLOAD_BYTES",
    "NONCE_BYTES",
    "PROTOCOL_NAME",
    "RESPONDER_TO_INITIATOR",
    "SEQ_BYTES",
    "TRAILER_BYTES",
    "Auth",
    "Challenge",
    "HandshakeMessage",
    "Hello",
    "Refuse",
    "Session",
    "TlsSession",
    "Welcome",
    "decode_handshake",
    "frame_mac",
    "header_mac",
    "new_nonce",
    "proof",
    "session_key",
    "transcript",
    "verify_proof",
]

#: The name of this authentication scheme, sent in the handshake and bound into the transcript.
PROTOCOL_NAME = "memrepl-mesh/3"
#: Random bytes each side contributes to a handshake.
NONCE_BYTES = 32
#: Bytes of a sealed frame's sequence number (u64 BE).
SEQ_BYTES = 8
#: Bytes of an HMAC-SHA256 (a proof, a frame MAC).
MAC_BYTES = 32
#: Bytes of the header MAC (HMAC-SHA256 cut to 128 bits).
HEADER_MAC_BYTES = 16
#: Bytes after each sealed header: sequence number, then header MAC.
HEADER_SEAL_BYTES = SEQ_BYTES + HEADER_MAC_BYTES
#: Bytes after each sealed payload: the frame MAC.
TRAILER_BYTES = MAC_BYTES
#: A HANDSHAKE payload over this is refused before it is read.
MAX_HANDSHAKE_PAYLOAD_BYTES = 4096
#: Node ids and replication revisions in a handshake are at most this many bytes of UTF-8.
MAX_NAME_BYTES = 255

PROOF_INITIATOR = b"memrepl-mesh/3 proof: initiator"
PROOF_RESPONDER = b"memrepl-mesh/3 proof: responder"
SESSION_LABEL = b"memrepl-mesh/3 session key"
#: The label MACed into every frame from the dialler to the listener.
INITIATOR_TO_RESPONDER = b"memrepl-mesh/3 frame i>r"
#: The label MACed into every frame from the listener to the dialler.
RESPONDER_TO_INITIATOR = b"memrepl-mesh/3 frame r>i"
#: The authentication modes a hello can name.
AUTH_MODES = ("shared-key", "certificate")

_SEQ = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_SEQ_LIMIT = 2**64


def new_nonce() -> bytes:
    """Fresh random bytes for one side of one handshake."""
    return secrets.token_bytes(NONCE_BYTES)


def transcript(
    initiator_id: str,
    responder_id: str,
    *,
    initiator_nonce: bytes,
    responder_nonce: bytes,
    schema_revision: str,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """The handshake transcript ``T`` (see the module docstring): length-prefixed fields."""
    parts = (
        PROTOCOL_NAME.encode(),
        initiator_id.encode(),
        responder_id.encode(),
        initiator_nonce,
        responder_nonce,
        schema_revision.encode(),
        _U16.pack(version),
    )
    return b"".join(_U16.pack(len(part)) + part for part in parts)


def proof(key: bytes, *, initiator: bool, transcript_bytes: bytes) -> bytes:
    """The proof that one side holds ``key``: HMAC-SHA256 over its role label and ``T``."""
    label = PROOF_INITIATOR if initiator else PROOF_RESPONDER
    return hmac.new(key, label + transcript_bytes, hashlib.sha256).digest()


def verify_proof(key: bytes, *, initiator: bool, transcript_bytes: bytes, claimed: bytes) -> bool:
    """Whether ``claimed`` is the proof of that role, compared in constant time."""
    return hmac.compare_digest(
        proof(key, initiator=initiator, transcript_bytes=transcript_bytes), claimed
    )


def session_key(key: bytes, transcript_bytes: bytes) -> bytes:
    """The per-connection key every frame's HMAC uses."""
    return hmac.new(key, SESSION_LABEL + transcript_bytes, hashlib.sha256).digest()


def header_mac(key: bytes, label: bytes, seq: int, header: bytes) -> bytes:
    """The first 16 bytes of HMAC-SHA256(key, label || "h" || seq u64 BE || header)."""
    return hmac.new(key, label + b"h" + _SEQ.pack(seq) + header, hashlib.sha256).digest()[
        :HEADER_MAC_BYTES
    ]


def frame_mac(key: bytes, label: bytes, seq: int, header: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256(key, label || "f" || seq u64 BE || header || payload)."""
    mac = hmac.new(key, label + b"f", hashlib.sha256)
    mac.update(_SEQ.pack(seq))
    mac.update(header)
    mac.update(payload)
    return mac.digest()


@dataclass(slots=True)
class Session:
    """The authenticated state of one connection: its key and both sequence counters.

    :meth:`seal` seals an outgoing frame (the module docstring's layout); :meth:`check_header`
    and :meth:`check` verify an incoming one (memrepl.mesh.framing calls them as the frame is
    read), and only a frame that passes both advances the expected sequence number.
    """

    key: bytes
    send_label: bytes
    recv_label: bytes
    send_seq: int = 0
    recv_seq: int = 0
    #: Bytes after each header, and after each payload, on the wire.
    header_seal_bytes: int = HEADER_SEAL_BYTES
    trailer_bytes: int = TRAILER_BYTES

    @classmethod
    def for_role(cls, key: bytes, *, initiator: bool) -> Session:
        """The session of the dialler (``initiator=True``) or of the listener."""
        if initiator:
            return cls(key, INITIATOR_TO_RESPONDER, RESPONDER_TO_INITIATOR)
        return cls(key, RESPONDER_TO_INITIATOR, INITIATOR_TO_RESPONDER)

    def seal(self, frame: bytes, header_size: int = 32) -> bytes:
        """Return ``frame`` (a whole v2 frame) sealed; uses one sequence number."""
        seq = self.send_seq
        if seq >= _SEQ_LIMIT:  # pragma: no cover - 2**64 frames
            raise OverflowError("session sequence numbers exhausted")
        self.send_seq = seq + 1
        header, payload = frame[:header_size], frame[header_size:]
        return b"".join(
            (
                header,
                _SEQ.pack(seq),
                header_mac(self.key, self.send_label, seq, header),
                payload,
                frame_mac(self.key, self.send_label, seq, header, payload),
            )
        )

    def check_header(self, header: bytes, seal: bytes) -> None:
        """Accept a header, or raise :class:`FrameFaultError` (never in sync: the connection
        ends): ``bad-hmac``, or ``bad-sequence`` for an authentic header out of turn.

        The MAC is checked first, so a sequence number is only believed once it is authentic.
        """
        if len(seal) != HEADER_SEAL_BYTES:
            raise FrameFaultError(FaultCode.BAD_HMAC, "frame has no header seal", in_sync=False)
        (seq,) = _SEQ.unpack_from(seal)
        expected = header_mac(self.key, self.recv_label, seq, header)
        if not hmac.compare_digest(expected, seal[SEQ_BYTES:]):
            raise FrameFaultError(
                FaultCode.BAD_HMAC, "a frame's header HMAC does not verify", in_sync=False
            )
        if seq != self.recv_seq:
            what = "replayed" if seq < self.recv_seq else "out of order"
            raise FrameFaultError(
                FaultCode.BAD_SEQUENCE,
                f"frame #{seq} {what}: expected #{self.recv_seq}",
                in_sync=False,
            )

    def check(self, frame: RawFrame) -> None:
        """Accept a whole frame whose header passed :meth:`check_header`, or raise
        :class:`FrameFaultError` (``bad-hmac``, never in sync); advances the expected number."""
        if len(frame.trailer) != TRAILER_BYTES or len(frame.seal) != HEADER_SEAL_BYTES:
            raise FrameFaultError(FaultCode.BAD_HMAC, "frame is not sealed", in_sync=False)
        (seq,) = _SEQ.unpack_from(frame.seal)
        expected = frame_mac(self.key, self.recv_label, seq, frame.header, frame.payload)
        if not hmac.compare_digest(expected, frame.trailer):
            raise FrameFaultError(
                FaultCode.BAD_HMAC, f"frame #{seq}: HMAC does not verify", in_sync=False
            )
        self.recv_seq = seq + 1


@dataclass(slots=True)
class TlsSession:
    """The session of a certificate-mode connection: frames go as they are, TLS protects them
    (see the module docstring)."""

    header_seal_bytes: int = 0
    trailer_bytes: int = 0

    def seal(self, frame: bytes, header_size: int = 32) -> bytes:
        return frame

    def check_header(self, header: bytes, seal: bytes) -> None:
        """Nothing to check: TLS has authenticated the bytes."""

    def check(self, frame: RawFrame) -> None:
        if frame.trailer or frame.seal:  # pragma: no cover - the reader reads none in this mode
            raise FrameFaultError(FaultCode.BAD_HMAC, "unexpected seal", in_sync=False)


# -- handshake messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """The dialler's opening: who it is, what it speaks, its nonce."""

    node_id: str
    schema: str
    nonce: bytes
    auth: str = "shared-key"
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return _dump(
            {
                "type": "hello",
                "protocol": PROTOCOL_NAME,
                "auth": self.auth,
                "node_id": self.node_id,
                "version": self.version,
                "schema": self.schema,
                "nonce": self.nonce.hex(),
            }
        )


@dataclass(frozen=True, slots=True)
class Challenge:
    """The listener's answer: who it is and its nonce -- nothing that depends on a key."""

    node_id: str
    schema: str
    nonce: bytes
    auth: str = "shared-key"
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return _dump(
            {
                "type": "challenge",
                "protocol": PROTOCOL_NAME,
                "auth": self.auth,
                "node_id": self.node_id,
                "version": self.version,
                "schema": self.schema,
                "nonce": self.nonce.hex(),
            }
        )


@dataclass(frozen=True, slots=True)
class Auth:
    """The dialler's proof over the transcript (None in certificate mode: it accepts)."""

    proof: bytes | None = None

    def encode(self) -> bytes:
        return _dump({"type": "auth"} | _proof_field(self.proof))


@dataclass(frozen=True, slots=True)
class Welcome:
    """The listener accepted the dialler, with its own proof (None in certificate mode);
    authenticated frames follow."""

    proof: bytes | None = None

    def encode(self) -> bytes:
        return _dump({"type": "welcome"} | _proof_field(self.proof))


@dataclass(frozen=True, slots=True)
class Refuse:
    """Either side refuses the handshake, saying why, and closes."""

    code: str
    reason: str

    def encode(self) -> bytes:
        return _dump({"type": "refuse", "code": self.code, "reason": self.reason})


HandshakeMessage = Hello | Challenge | Auth | Welcome | Refuse


def _proof_field(proof: bytes | None) -> dict[str, str]:
    return {} if proof is None else {"proof": proof.hex()}


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode("utf-8")


def _bad(reason: str) -> FrameFaultError:
    return FrameFaultError(FaultCode.BAD_HANDSHAKE, f"handshake: {reason}", in_sync=True)


def _name(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if type(value) is not str or not 0 < len(value.encode("utf-8")) <= MAX_NAME_BYTES:
        raise _bad(f"{key!r} must be a string of 1..{MAX_NAME_BYTES} bytes")
    return value


def _hex(obj: dict[str, Any], key: str, size: int) -> bytes:
    value = obj.get(key)
    if type(value) is not str or len(value) != 2 * size:
        raise _bad(f"{key!r} must be {size} bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _bad(f"{key!r} must be {size} bytes of hex") from None


def _optional_proof(obj: dict[str, Any]) -> bytes | None:
    return None if obj.get("proof") is None else _hex(obj, "proof", MAC_BYTES)


def _auth_mode(obj: dict[str, Any]) -> str:
    value = obj.get("auth")
    if value not in AUTH_MODES:
        raise _bad(f"'auth' must be one of {', '.join(AUTH_MODES)}")
    return str(value)


def _version(obj: dict[str, Any]) -> int:
    value = obj.get("version")
    if type(value) is not int:
        raise _bad("'version' must be an integer")
    if obj.get("protocol") != PROTOCOL_NAME:
        raise _bad(f"'protocol' must be {PROTOCOL_NAME!r}")
    return value


def decode_handshake(payload: bytes) -> HandshakeMessage:
    """Parse a HANDSHAKE payload; raise :class:`FrameFaultError` (``bad-handshake``) otherwise.

    The version is returned as sent, not checked: the caller refuses a mismatch with its own code.
    """
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _bad("not UTF-8 JSON") from None
    if type(obj) is not dict:
        raise _bad("not a JSON object")
    kind = obj.get("type")
    if kind == "hello":
        return Hello(
            node_id=_name(obj, "node_id"),
            schema=_name(obj, "schema"),
            nonce=_hex(obj, "nonce", NONCE_BYTES),
            auth=_auth_mode(obj),
            version=_version(obj),
        )
    if kind == "challenge":
        return Challenge(
            node_id=_name(obj, "node_id"),
            schema=_name(obj, "schema"),
            nonce=_hex(obj, "nonce", NONCE_BYTES),
            auth=_auth_mode(obj),
            version=_version(obj),
        )
    if kind == "auth":
        return Auth(proof=_optional_proof(obj))
    if kind == "welcome":
        return Welcome(proof=_optional_proof(obj))
    if kind == "refuse":
        code, reason = obj.get("code"), obj.get("reason")
        if type(code) is not str or type(reason) is not str:
            raise _bad("'refuse' needs string 'code' and 'reason'")
        return Refuse(code=code[:64], reason=reason[:512])
    raise _bad(f"unknown message type {kind!r}")
