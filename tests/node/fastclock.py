"""``python fastclock.py SECONDS ARGS...``: ``memrepl ARGS...`` on a machine whose wall clock is
SECONDS fast -- a real process with a wrong system clock, for the clock-trouble tests.

``time.time_ns`` (and ``time.time``) are replaced before memrepl is imported, so every default
that captured the wall clock (``memrepl.open(..., wall=time.time_ns)``) gets the fast one;
``time.monotonic``, which asyncio's timers use, is left alone, as a wrong wall clock leaves it.
"""

from __future__ import annotations

import sys
import time

OFFSET_NS = int(float(sys.argv[1]) * 1e9)
_real_time_ns = time.time_ns


def _fast_time_ns() -> int:
    return _real_time_ns() + OFFSET_NS


time.time_ns = _fast_time_ns
time.time = lambda: _fast_time_ns() / 1e9

from memrepl.cli.main import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[2:]))
