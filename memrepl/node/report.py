"""Everything a running node knows about its peers, gathered in one place: :func:`gather`.

``memrepl serve`` writes this report to its status file every few seconds (and at exit), and
``memrepl status`` reads it next to what the store's tables say; ``--metrics`` serves the same
facts. It is the one place that collects per-peer facts from the node's parts:

- the **configuration** (the peers it dials) and the **mesh** (connected or not, who dialled,
  TLS, the last connection error with its stable code and what to do about it, handshake
  failures -- :mod:`memrepl.mesh.advice`);
- the **scheduler** (per tier: the last round's outcome, the last success, the last error);
- the **monitor** (per tier: the round being sent, the catch-up being received, with totals,
  rates and ETAs -- :mod:`memrepl.node.monitor`).

To show a new fact about a peer (clock skew, a repair, an authentication detail), add a field to
:class:`PeerReport` or :class:`PeerTierReport`, fill it in :func:`gather`, and render it in
:mod:`memrepl.cli.status_cmds`; the status file and ``memrepl status --json`` carry it as is.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from memrepl.mesh.advice import advice
from memrepl.node.monitor import RECEIVE, SEND
from memrepl.protocol.enums import MemoryTier

if TYPE_CHECKING:
    from memrepl.mesh.stats import MeshStats, TrafficStats
    from memrepl.node.node import Node

__all__ = ["NodeReport", "PeerReport", "PeerTierReport", "gather"]

#: What a status file says of its format (``memrepl status`` checks it).
REPORT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class PeerTierReport:
    """Replication with one peer for one tier, as the running node sees it."""

    tier: str
    #: The last round sent to the peer: how it ended, when it started and ended well (ns).
    last_status: str | None = None
    last_attempt_ns: int | None = None
    last_success_ns: int | None = None
    #: The last failed round (a status such as ``timeout`` and its reason), and when.
    last_error: str | None = None
    last_error_ns: int | None = None
    #: The round being sent now, and the catch-up being received now (None: none), as
    #: :meth:`memrepl.node.monitor.Progress.to_json`: total, done, remaining, rate, ETA.
    sending: dict[str, Any] | None = None
    receiving: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PeerReport:
    """One peer: configured, connected, or heard from."""

    peer_id: str
    #: ``host:port`` this node dials it at; None for a peer that only dials this node.
    address: str | None
    #: ``connected`` or ``not connected``.
    connection: str
    #: Which node dialled the current connection, and whether it is TLS (when connected).
    dialled_by: str | None = None
    tls: bool = False
    #: The last connection error: its text, its stable code, when, and what to do about it.
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_ns: int | None = None
    advice: str | None = None
    handshake_failures: int = 0
    tiers: list[PeerTierReport] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NodeReport:
    """The whole node: who it is, where it listens, and every peer."""

    node_id: str
    pid: int
    listening: str | None
    written_at_ns: int
    #: How often the status file is rewritten (how stale a running node's report may be).
    every_s: float
    peers: list[PeerReport]
    #: Handshakes refused from peers this node does not know (strangers, or a peer it does not
    #: dial with a wrong key): how many, and the last one's text, code and advice.
    refused_connections: int = 0
    last_refused: str | None = None
    last_refused_code: str | None = None
    last_refused_advice: str | None = None
    #: The last anti-entropy check with each peer, and the last verification of this node's
    #: digests (:meth:`memrepl.node.node.Node.antientropy_status`).
    antientropy: dict[str, Any] | None = None
    #: How the node authenticates and what its mesh's gate refused (:func:`auth_summary`).
    auth: dict[str, Any] | None = None
    #: Set when the node stopped (the last report it wrote).
    stopped_at_ns: int | None = None
    format: int = REPORT_FORMAT

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the status file's content)."""
        return asdict(self)


#: The refusal codes of the mesh's gate: what ``auth.refused`` counts.
AUTH_CODES = frozenset(
    {
        "auth-failed",
        "auth-mode-mismatch",
        "bad-certificate",
        "identity-mismatch",
        "revoked",
        "throttled",
        "wrong-peer",
    }
)


def auth_summary(stats: MeshStats | None) -> dict[str, Any] | None:
    """How the node authenticates and what its mesh refused (None without a TcpMesh)."""
    if stats is None or stats.auth is None:
        return None
    total = stats.total
    return {
        "mode": stats.auth.mode,
        "handshake_failures": total.handshake_failures,
        "refused": {code: n for code, n in total.refused.items() if code in AUTH_CODES},
        "last_refusal": stats.auth.last_refusal,
        "revoked_entries": stats.auth.revoked_entries,
        "revocation_error": stats.auth.revocation_error,
    }


def _connection(traffic: TrafficStats | None) -> dict[str, Any]:
    if traffic is None:
        return {}
    return {
        "last_error": traffic.last_error,
        "last_error_code": traffic.last_error_code,
        "last_error_ns": traffic.last_error_ns,
        "advice": advice(traffic.last_error_code),
        "handshake_failures": traffic.handshake_failures,
    }


def gather(node: Node, *, every_s: float, stopped: bool = False) -> NodeReport:
    """The report of a started node (see the module docstring)."""
    now = time.monotonic()
    stats = node.mesh_stats()
    connected = set(node.peers())
    tracks = {(s.peer_id, s.tier): s for s in node.status()}
    monitor = node.monitor
    flows = monitor.flows()
    configured = node.configured_peers
    names = sorted(
        {*configured, *connected, *(peer for peer, _ in tracks), *(peer for peer, _, _ in flows)}
        | (set(stats.peers) if stats is not None else set())
    )
    peers = []
    for peer_id in names:
        mesh_peer = stats.peers.get(peer_id) if stats is not None else None
        tiers = []
        for tier in MemoryTier:
            track = tracks.get((peer_id, tier))
            sending = monitor.progress(peer_id, tier, SEND)
            receiving = monitor.progress(peer_id, tier, RECEIVE)
            tiers.append(
                PeerTierReport(
                    tier=tier.name.lower(),
                    last_status=(
                        None
                        if track is None or track.last_result is None
                        else track.last_result.status.value
                    ),
                    last_attempt_ns=None if track is None else track.last_attempt_ns,
                    last_success_ns=None if track is None else track.last_success_ns,
                    last_error=None if track is None else track.last_error,
                    last_error_ns=None if track is None else track.last_error_ns,
                    sending=None if sending is None else sending.to_json(now),
                    receiving=None if receiving is None else receiving.to_json(now),
                )
            )
        address = configured.get(peer_id)
        peers.append(
            PeerReport(
                peer_id=peer_id,
                address=None if address is None else f"{address[0]}:{address[1]}",
                connection="connected" if peer_id in connected else "not connected",
                dialled_by=None if mesh_peer is None else mesh_peer.dialled_by,
                tls=False if mesh_peer is None else mesh_peer.tls,
                tiers=tiers,
                **_connection(None if mesh_peer is None else mesh_peer.traffic),
            )
        )
    strangers = None if stats is None else stats.strangers
    host, port = node.address
    return NodeReport(
        node_id=node.node_id,
        pid=os.getpid(),
        listening=f"{host}:{port}" if stats is not None else None,
        written_at_ns=time.time_ns(),
        every_s=every_s,
        peers=peers,
        refused_connections=0 if strangers is None else strangers.handshake_failures,
        last_refused=None if strangers is None else strangers.last_error,
        last_refused_code=None if strangers is None else strangers.last_error_code,
        last_refused_advice=None if strangers is None else advice(strangers.last_error_code),
        antientropy=node.antientropy_status(),
        auth=auth_summary(stats),
        stopped_at_ns=time.time_ns() if stopped else None,
    )
