"""A wall clock a test moves by hand (the ``wall`` fixture of tests/conftest.py)."""

from __future__ import annotations

#: Nanoseconds in a second.
S = 1_000_000_000


class Wall:
    """A wall clock the test moves by hand: ``wall.now += 5 * S``."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * S

    def __call__(self) -> int:
        return self.now
