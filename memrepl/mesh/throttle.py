"""Throttling failed handshakes per source address, so that a key or a certificate cannot be
guessed or a node worn down by hammering its port.

Per remote address (the IP, without the port; for IPv6 its /64 prefix, :func:`source_of`) the
listener keeps a streak of failed handshakes.
The ``allowed``-th failure, and each one after it, locks the address out for
``min(cap_s, base_s * 2**k)`` seconds (k = 0, 1, 2...): while locked out, its new connections are
closed before any work (no TLS, no handshake). A handshake that succeeds ends the streak; a streak
is forgotten ``forget_s`` after its last failure. Besides, an address may have at most
``max_pending`` handshakes in progress at once, so a burst of parallel connections cannot run
ahead of the count; and the node as a whole at most ``max_total_pending``, so that strangers with
many addresses (an IPv6 prefix, a botnet) holding handshakes open until their timeout cannot use
up the process's file descriptors -- without which it can neither dial its peers nor open its
database files.

The rule that keeps it right: **the table is bounded** -- at most ``max_addresses`` entries, the
longest-idle dropped first -- so a stranger with many addresses costs memory in proportion to
nothing but this bound. The price is known and written down (README): honest nodes behind the
same address as an attacker (one NAT) are locked out with it, for new connections only.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailureThrottle", "source_of"]

#: IPv6 sources are counted per prefix of this length: one host (one ISP customer) is routinely
#: given a whole /64, so counting each address would let it try 2**64 times as often.
IPV6_PREFIX = 64


def source_of(host: str) -> str:
    """What the throttle counts a connection from ``host`` against: the IPv4 address (also
    when IPv4-mapped into IPv6), an IPv6 address's /64 prefix, or ``host`` as it is (not an IP)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


@dataclass(slots=True)
class _Streak:
    failures: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0
    pending: int = 0


class FailureThrottle:
    """The per-address state of the module docstring."""

    def __init__(
        self,
        *,
        allowed: int,
        base_s: float,
        cap_s: float,
        max_pending: int,
        max_total_pending: int = 128,
        max_addresses: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.base_s = base_s
        self.cap_s = cap_s
        self.max_pending = max_pending
        self.max_total_pending = max_total_pending
        self.max_addresses = max_addresses
        #: Handshakes in progress from every address together.
        self.pending = 0
        self.forget_s = 10 * cap_s
        self._clock = clock
        self._streaks: dict[str, _Streak] = {}

    def __len__(self) -> int:
        return len(self._streaks)

    def admit(self, address: str) -> str | None:
        """Start a handshake from ``address``: None if it may go ahead (then call
        :meth:`finished` exactly once), else why not."""
        if self.pending >= self.max_total_pending:
            return f"{self.pending} handshakes already in progress (this node's limit)"
        now = self._clock()
        streak = self._streaks.get(address)
        if streak is not None and now - streak.last_seen > self.forget_s and not streak.pending:
            del self._streaks[address]
            streak = None
        if streak is not None:
            if streak.locked_until > now:
                return (
                    f"{streak.failures} failed handshakes; locked out for another "
                    f"{streak.locked_until - now:.1f} s"
                )
            if streak.pending >= self.max_pending:
                return f"{streak.pending} handshakes already in progress from this address"
        else:
            streak = self._streaks[address] = _Streak(last_seen=now)
            self._prune()
        streak.pending += 1
        self.pending += 1
        return None

    def finished(self, address: str, *, ok: bool) -> float:
        """End a handshake :meth:`admit` let through; the lockout it starts, in seconds (0 if
        none)."""
        self.pending = max(0, self.pending - 1)
        streak = self._streaks.get(address)
        if streak is None:  # pragma: no cover - entries with a handshake in progress stay
            return 0.0
        streak.pending = max(0, streak.pending - 1)
        now = self._clock()
        streak.last_seen = now
        if ok:
            streak.failures = 0
            streak.locked_until = 0.0
            return 0.0
        streak.failures += 1
        over = streak.failures - self.allowed
        if over < 0:
            return 0.0
        lockout = float(min(self.cap_s, self.base_s * 2 ** min(over, 32)))
        streak.locked_until = now + lockout
        return lockout

    def _prune(self) -> None:
        """Drop the longest-idle entries (none with a handshake in progress) over the bound."""
        excess = len(self._streaks) - self.max_addresses
        if excess <= 0:
            return
        idle = sorted(
            (s.last_seen, address) for address, s in self._streaks.items() if not s.pending
        )
        for _, address in idle[:excess]:
            del self._streaks[address]
