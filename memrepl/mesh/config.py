"""The limits and timings of a :class:`~memrepl.mesh.tcp.TcpMesh`, in one frozen value.

The rule that keeps it right: every limit is checked once, here, at construction (a
:class:`~memrepl.errors.MeshError` names the bad one), so the mesh's loops never meet a
nonsensical bound; and every number carries its unit in its name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from memrepl.errors import MeshError

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_UNACKED_BATCHES",
    "DEFAULT_RECONNECT_BASE_S",
    "DEFAULT_RECONNECT_CAP_S",
    "TcpMeshConfig",
    "backoff_delay_s",
]

#: The largest frame payload accepted: a maximal batch (255 items of 65,583 bytes, ~16.7 MiB,
#: plus metadata) fits with room to spare.
DEFAULT_MAX_FRAME_BYTES = 32 * 1024 * 1024
#: VECTOR_SYNC frames written and not yet answered, per peer.
DEFAULT_MAX_UNACKED_BATCHES = 8
#: Liveness: a quiet connection says HEARTBEAT this often, and one from which nothing arrives for
#: the idle timeout is given up and redialled. Why 5 s: a connection that lives through a
#: partition resumes only at TCP's next retransmission, and those go out 3.0, 6.2, 12.6 ... s
#: after the loss began, so a connection kept through a 7 s partition would stay silent for
#: 5.6 s after the heal; one given up after 5 s is redialled within a second of it instead.
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_IDLE_TIMEOUT_S = 5.0
#: Reconnect delays: a lost connection is redialled within a tenth of a second, a peer that is
#: down about once a second -- so a partition that heals is bridged within about a second.
DEFAULT_RECONNECT_BASE_S = 0.1
DEFAULT_RECONNECT_CAP_S = 1.0


@dataclass(frozen=True, slots=True)
class TcpMeshConfig:
    """Limits and timings; the defaults suit a LAN. See each field."""

    #: A frame whose header announces a larger payload is refused and the connection closed.
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: Backpressure: VECTOR_SYNC frames in flight (sent, not yet ACKed/NACKed) per peer.
    max_unacked_batches: int = DEFAULT_MAX_UNACKED_BATCHES
    #: An unanswered VECTOR_SYNC frame gives its window slot back after this long (the sync
    #: manager's own ACK timeout is 30 s by default).
    unacked_timeout_s: float = 30.0
    #: Per-peer outbox bound, in frames and in bytes; ``send`` past it raises
    #: ``PeerUnavailableError`` (an empty outbox always takes one frame).
    max_queued_frames: int = 1024
    max_queued_bytes: int = 128 * 1024 * 1024
    #: While a known peer is disconnected, ``send`` keeps queueing for it this long (counted from
    #: the disconnection, or from ``start()`` for a peer not connected yet); after that it raises
    #: ``PeerUnavailableError`` and the peer's queue is dropped.
    queue_while_down_s: float = 10.0
    #: TCP connect, and the whole handshake (TLS included), must each finish within these (a
    #: connect that hangs, as into a partition, is tried again rather than waited on).
    connect_timeout_s: float = 2.0
    handshake_timeout_s: float = 10.0
    #: A HEARTBEAT goes out after this long without any other frame.
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    #: A peer from which nothing arrives (or which reads nothing) for this long is disconnected.
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    #: Reconnect delays: exponential from the base, capped, with jitter (:func:`backoff_delay_s`).
    reconnect_base_s: float = DEFAULT_RECONNECT_BASE_S
    reconnect_cap_s: float = DEFAULT_RECONNECT_CAP_S
    #: Authentic frames refused for what they say (an unknown type...) after which a connection is
    #: closed; a frame that fails its seal closes it at once (memrepl.mesh.auth).
    max_faults: int = 3
    #: Coroutine handlers running for one connection before its reader waits for one to finish.
    max_pending_handlers: int = 64
    #: Failed handshakes in a row from one address (IP) after which it is locked out, for
    #: ``auth_lockout_base_s``, doubling with each further failure up to ``auth_lockout_cap_s``
    #: (:mod:`memrepl.mesh.throttle`).
    auth_failures_allowed: int = 5
    auth_lockout_base_s: float = 1.0
    auth_lockout_cap_s: float = 30.0
    #: Handshakes in progress at once from one address, and from all addresses together (more
    #: are closed at once: strangers holding handshakes open until their timeout must not use up
    #: the process's file descriptors).
    max_handshakes_per_address: int = 8
    max_handshakes: int = 128
    #: How often the revocation list file is checked for changes (certificate mode).
    revocation_poll_s: float = 1.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise MeshError(
                    f"TcpMeshConfig.{item.name} must be a positive number, not {value!r}"
                )
        if self.idle_timeout_s <= self.heartbeat_interval_s:
            raise MeshError(
                f"TcpMeshConfig.idle_timeout_s ({self.idle_timeout_s}) must exceed "
                f"heartbeat_interval_s ({self.heartbeat_interval_s})"
            )
        if self.reconnect_cap_s < self.reconnect_base_s:
            raise MeshError("TcpMeshConfig.reconnect_cap_s must be at least reconnect_base_s")
        if self.auth_lockout_cap_s < self.auth_lockout_base_s:
            raise MeshError("TcpMeshConfig.auth_lockout_cap_s must be at least auth_lockout_base_s")
        for name in ("auth_failures_allowed", "max_handshakes_per_address", "max_handshakes"):
            if not isinstance(getattr(self, name), int):
                raise MeshError(f"TcpMeshConfig.{name} must be an integer")


def backoff_delay_s(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """The delay before reconnect attempt ``attempt`` (0 = first retry).

    ``min(cap, base * 2**attempt)``, of which the upper half is random ("equal jitter"): delays
    grow exponentially, never exceed the cap, and nodes that lost a peer together do not all
    redial at the same instant.
    """
    ceiling = min(cap_s, base_s * 2 ** min(attempt, 32))
    draw = rng.random() if rng is not None else random.random()
    return float(ceiling / 2 + draw * ceiling / 2)
