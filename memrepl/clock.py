"""The hybrid logical clock (HLC) that stamps every write and every local change.

A stamp is a u64 of nanoseconds since the Unix epoch (ARCHITECTURE.md, "Clocks and versions"):

- a local event takes ``max(wall_ns, last + 1)``, so stamps strictly increase even when the wall
  clock stands still or steps back;
- observing a remote stamp ``t`` moves ``last`` to at least ``t``, so any later local write is
  stamped above everything this node has seen (LWW then respects causality);
- a remote stamp further ahead of the local wall clock than ``max_skew_ns`` is refused with
  :class:`~memrepl.errors.ClockSkewError`: never silently applied or clamped, because one node
  with a clock years ahead would otherwise win every future conflict.

The clock itself is pure state; the storage layer loads ``last`` from the database inside each
write transaction and saves it back before commit, which is what makes stamps rise across
restarts and across processes sharing one file.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from memrepl.errors import ClockSkewError

#: How far ahead of local wall time a remote stamp may be (ARCHITECTURE.md: default 60 s).
DEFAULT_MAX_CLOCK_SKEW_NS = 60 * 10**9

#: Stamps are u64 on the wire, but SQLite integers are signed 64-bit: the largest storable stamp.
MAX_TIMESTAMP_NS = 2**63 - 1

WallClock = Callable[[], int]


class HybridLogicalClock:
    """A hybrid logical clock over a wall clock in nanoseconds."""

    __slots__ = ("_last_ns", "_max_skew_ns", "_wall")

    def __init__(
        self,
        last_ns: int = 0,
        *,
        wall: WallClock = time.time_ns,
        max_skew_ns: int = DEFAULT_MAX_CLOCK_SKEW_NS,
    ) -> None:
        self._last_ns = last_ns
        self._wall = wall
        self._max_skew_ns = max_skew_ns

    @property
    def last_ns(self) -> int:
        """The highest stamp issued or observed so far."""
        return self._last_ns

    def tick(self) -> int:
        """Stamp a local event: strictly above every stamp issued or observed before."""
        stamp = max(self._wall(), self._last_ns + 1)
        self._last_ns = stamp
        return stamp

    def check_skew(self, timestamp_ns: int) -> None:
        """Raise :class:`ClockSkewError` if ``timestamp_ns`` is too far ahead of the wall clock."""
        wall = self._wall()
        limit = wall + self._max_skew_ns
        if timestamp_ns > limit or timestamp_ns > MAX_TIMESTAMP_NS:
            ahead_ns = timestamp_ns - wall
            raise ClockSkewError(
                f"refusing stamp {timestamp_ns}: {ahead_ns / 1e9:.3f} s ahead of the local wall "
                f"clock (tolerance {self._max_skew_ns / 1e9:g} s)",
                timestamp_ns=timestamp_ns,
                limit=min(limit, MAX_TIMESTAMP_NS),
                ahead_ns=ahead_ns,
            )

    def observe(self, timestamp_ns: int) -> None:
        """Take in a remote stamp, so later local stamps are above it. Refuses skewed stamps."""
        self.check_skew(timestamp_ns)
        self._last_ns = max(self._last_ns, timestamp_ns)
