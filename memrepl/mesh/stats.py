"""The mesh's counters, and the frozen snapshots ``TcpMesh.stats()`` returns.

Each peer has one :class:`Counters`, and the mesh one more for its totals; every event is counted
in both (a fault before authentication, whose peer is not known yet, only in the totals, so an
unauthenticated stranger cannot grow the per-peer table). The rule that keeps it right: counters
only ever grow, and callers only ever see copies (:class:`TrafficStats`), never the live objects.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AuthStats", "Counters", "MeshStats", "PeerStats", "TrafficStats"]


@dataclass(frozen=True, slots=True)
class TrafficStats:
    """Counts of frames and events on one peer's connections (or all of them)."""

    #: Frames read (authenticated or not) and their bytes on the wire (headers and trailers too).
    frames_in: int = 0
    bytes_in: int = 0
    #: Frames written and their bytes on the wire.
    frames_out: int = 0
    bytes_out: int = 0
    #: Frames handed to a registered handler.
    delivered: int = 0
    #: Frames and handshakes refused by the mesh, by fault code.
    refused: Mapping[str, int] = field(default_factory=dict)
    #: NACK frames sent, by code (the mesh's own and the handlers', e.g. ``gzip-too-large``).
    nacks_sent: Mapping[str, int] = field(default_factory=dict)
    #: Connections authenticated, and connections ended after authentication.
    connects: int = 0
    disconnects: int = 0
    #: Handshakes that failed (wrong key, schema mismatch, timeout, garbage...).
    handshake_failures: int = 0
    #: The last fault or error seen, as text; its stable code (a FaultCode value, or
    #: ``unreachable``: see :func:`memrepl.mesh.advice.advice`) and when (wall-clock ns).
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        data = asdict(self)
        data["refused"] = dict(self.refused)
        data["nacks_sent"] = dict(self.nacks_sent)
        return data


@dataclass(slots=True)
class Counters:
    """The live, mutable counters behind a :class:`TrafficStats`."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    delivered: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    nacks_sent: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    disconnects: int = 0
    handshake_failures: int = 0
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_ns: int | None = None

    def record_error(self, code: str, text: str) -> None:
        """Remember the last fault or error: its code, its text, and now."""
        self.last_error = text
        self.last_error_code = code
        self.last_error_ns = time.time_ns()

    def snapshot(self) -> TrafficStats:
        """A frozen copy."""
        return TrafficStats(
            frames_in=self.frames_in,
            bytes_in=self.bytes_in,
            frames_out=self.frames_out,
            bytes_out=self.bytes_out,
            delivered=self.delivered,
            refused=dict(self.refused),
            nacks_sent=dict(self.nacks_sent),
            connects=self.connects,
            disconnects=self.disconnects,
            handshake_failures=self.handshake_failures,
            last_error=self.last_error,
            last_error_code=self.last_error_code,
            last_error_ns=self.last_error_ns,
        )


@dataclass(frozen=True, slots=True)
class PeerStats:
    """One peer: whether it is connected, what waits for it, and its traffic."""

    peer_id: str
    connected: bool
    #: ``host:port`` dialled for this peer, None for a peer that only dials us.
    address: str | None
    #: Which node dialled the current connection (None when not connected), and whether it is
    #: encrypted with TLS.
    dialled_by: str | None
    tls: bool
    #: The serial (hex) of the certificate the current connection's peer proved itself with;
    #: None in shared-key mode or when not connected.
    certificate_serial: str | None
    queued_frames: int
    queued_bytes: int
    #: VECTOR_SYNC frames sent and not yet answered by ACK or NACK.
    unacked: int
    traffic: TrafficStats

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        data = {k: v for k, v in asdict(self).items() if k != "traffic"}
        data["traffic"] = self.traffic.to_dict()
        return data


@dataclass(frozen=True, slots=True)
class AuthStats:
    """How the node authenticates, and what its gate refused (counts are in the totals'
    ``refused``: ``auth-failed``, ``bad-certificate``, ``identity-mismatch``, ``revoked``,
    ``throttled``...)."""

    #: ``"certificate"`` or ``"shared-key"``.
    mode: str
    #: Entries of the revocation list in force (None: no list).
    revoked_entries: int | None = None
    #: Why the last reload of the revocation list failed (the previous entries stay in force).
    revocation_error: str | None = None
    #: Addresses the throttle currently tracks.
    throttled_addresses: int = 0
    #: The last connection the gate refused or cut off, as ``"code: reason"``.
    last_refusal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MeshStats:
    """The whole mesh: where it listens, its totals, and every peer it knows."""

    node_id: str
    host: str
    port: int
    total: TrafficStats
    peers: Mapping[str, PeerStats]
    auth: AuthStats | None = None
    #: Failed handshakes of peers this node does not know (their claimed ids are not trusted).
    strangers: TrafficStats = field(default_factory=TrafficStats)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "node_id": self.node_id,
            "host": self.host,
            "port": self.port,
            "auth": None if self.auth is None else self.auth.to_dict(),
            "total": self.total.to_dict(),
            "peers": {peer: stats.to_dict() for peer, stats in self.peers.items()},
            "strangers": self.strangers.to_dict(),
        }
