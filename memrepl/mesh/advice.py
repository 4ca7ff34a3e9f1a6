"""What an operator can do about each way a connection to a peer fails: :func:`advice`.

The mesh records why a connection failed as a stable code (a :class:`~memrepl.mesh.framing.
FaultCode` value, or :data:`UNREACHABLE` when nothing answered); ``memrepl status``, the logs and
``--metrics`` show the code with the sentence here, which says what is wrong in the terms an
operator acts on ("the cluster key differs") rather than in the protocol's ("the listener did
not prove it holds the cluster key", which is true on one side only). One table, so the words
are the same everywhere; a new fault code gets its line here.
"""

from __future__ import annotations

from memrepl.mesh.framing import FaultCode

__all__ = ["UNREACHABLE", "advice"]

#: The code of a dial that reached nothing (refused, timed out, no route, TLS failed).
UNREACHABLE = "unreachable"

_ADVICE: dict[str, str] = {
    FaultCode.AUTH_FAILED: (
        "the cluster credentials differ: this node and the peer hold different cluster keys "
        "(give both the same --key-file)"
    ),
    FaultCode.AUTH_MODE_MISMATCH: (
        "the cluster credentials differ in kind: one node uses certificates (--certs-dir), the "
        "other the shared key (--key-file); give both the same mode"
    ),
    FaultCode.BAD_CERTIFICATE: (
        "the cluster credentials differ: a certificate was refused (not signed by this "
        "cluster's CA, expired, or not a node certificate); issue it with 'memrepl cert issue'"
    ),
    FaultCode.IDENTITY_MISMATCH: (
        "the peer claims another node id than its certificate names: check its --node-id"
    ),
    FaultCode.REVOKED: "the peer's certificate is revoked (the revocation list names it)",
    FaultCode.THROTTLED: (
        "too many failed handshakes from that address: it is locked out for a while; fix the "
        "cause of the earlier failures"
    ),
    FaultCode.SCHEMA_MISMATCH: (
        "the two nodes run memrepl releases that replicate differently (another replication "
        "revision): upgrade the older one"
    ),
    FaultCode.VERSION_MISMATCH: (
        "the peer speaks another protocol version: run compatible memrepl releases"
    ),
    FaultCode.WRONG_PEER: (
        "the address answers as another node than the one configured: check the peer's ID=HOST:PORT"
    ),
    FaultCode.HANDSHAKE_TIMEOUT: (
        "the peer did not complete the handshake in time: is it a memrepl node, with TLS on "
        "both sides or on neither?"
    ),
    FaultCode.HANDSHAKE_REQUIRED: "the peer does not speak memrepl's handshake: is it a node?",
    FaultCode.BAD_HANDSHAKE: "the peer does not speak memrepl's handshake: is it a node?",
    FaultCode.BAD_HMAC: (
        "frames arrive altered: something between the nodes changes bytes, or the key changed"
    ),
    FaultCode.BAD_SEQUENCE: "frames arrive replayed or out of order on the connection",
    FaultCode.TOO_MANY_FAULTS: "the connection was closed after repeated bad frames",
    FaultCode.IDLE_TIMEOUT: "the peer went silent (network cut, or the process stalled)",
    UNREACHABLE: "nothing answers at the peer's address: is it running, and is the address right?",
}


def advice(code: str | None) -> str | None:
    """What to do about a connection that failed with ``code`` (None when there is nothing
    to add)."""
    if code is None:
        return None
    return _ADVICE.get(code)
