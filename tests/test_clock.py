"""The hybrid logical clock: strictly rising stamps, remote stamps taken in, skew refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memrepl.clock import DEFAULT_MAX_CLOCK_SKEW_NS, HybridLogicalClock
from memrepl.errors import ClockSkewError, MemreplError


class SteppingWall:
    """A wall clock the test moves by hand, including backwards."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def test_tick_follows_the_wall_clock_when_it_moves_forward() -> None:
    wall = SteppingWall(1_000)
    clock = HybridLogicalClock(wall=wall)
    assert clock.tick() == 1_000
    wall.now_ns = 5_000
    assert clock.tick() == 5_000


def test_tick_keeps_rising_when_the_wall_clock_stands_still_or_steps_back() -> None:
    wall = SteppingWall(10_000)
    clock = HybridLogicalClock(wall=wall)
    first = clock.tick()
    second = clock.tick()
    wall.now_ns = 1
    third = clock.tick()
    assert first < second < third


def test_a_restored_clock_never_reuses_a_stamp() -> None:
    wall = SteppingWall(100)
    clock = HybridLogicalClock(last_ns=5_000, wall=wall)
    assert clock.tick() == 5_001


def test_observing_a_remote_stamp_moves_later_local_stamps_above_it() -> None:
    wall = SteppingWall(1_000)
    clock = HybridLogicalClock(wall=wall)
    clock.observe(2_000 + DEFAULT_MAX_CLOCK_SKEW_NS // 2)
    assert clock.tick() > 2_000 + DEFAULT_MAX_CLOCK_SKEW_NS // 2


def test_a_stamp_too_far_ahead_is_refused_and_changes_nothing() -> None:
    wall = SteppingWall(1_000_000)
    clock = HybridLogicalClock(last_ns=7, wall=wall, max_skew_ns=1_000)
    with pytest.raises(ClockSkewError) as caught:
        clock.observe(1_000_000 + 1_001)
    assert isinstance(caught.value, MemreplError)
    assert caught.value.timestamp_ns == 1_001_001
    assert caught.value.limit == 1_001_000
    assert clock.last_ns == 7
    clock.observe(1_001_000)  # exactly at the tolerance is accepted
    assert clock.last_ns == 1_001_000


def test_a_stamp_beyond_what_sqlite_can_store_is_refused() -> None:
    clock = HybridLogicalClock(max_skew_ns=2**64)
    with pytest.raises(ClockSkewError):
        clock.observe(2**63)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=60))
def test_stamps_strictly_rise_under_any_wall_clock_and_observations(
    steps: list[tuple[bool, int]],
) -> None:
    wall = SteppingWall(0)
    clock = HybridLogicalClock(wall=wall, max_skew_ns=10**7)
    issued: list[int] = []
    seen = 0
    for is_observation, value in steps:
        if is_observation:
            clock.observe(value)
            seen = max(seen, value)
        else:
            wall.now_ns = value
            stamp = clock.tick()
            assert stamp > seen
            issued.append(stamp)
            seen = stamp
    assert issued == sorted(set(issued))
