"""How ``memrepl sync`` shows a long round: a bar on a terminal, plain lines elsewhere.

The facts are a round's :class:`~memrepl.node.monitor.Snapshot`: the items the round counted when
it began (its total), those the peer acknowledged, the rate and the ETA -- read from the node's
monitor, whether ``memrepl sync`` runs the round itself or asks the node running on the store to
(which then streams them over its control channel, memrepl.node.control). On a terminal one
line is redrawn in place (``\\r``) a few times a second::

    memrepl: sync episodic -> node-b [#########-----------]  45%  90,000/200,000  24,113/s  ETA 0:05

and ends with a newline; when stderr is not a terminal (a log file, CI), a plain line is printed
every ``--progress-interval`` seconds instead, so a log gets a steady record, not a thousand
redraws::

    memrepl: sync episodic -> node-b: 90,000 of 200,000 items (45%), 24,113 items/s, ETA 5 s

Nothing is shown for a round that ends within :data:`SHOW_AFTER_S`.
"""

from __future__ import annotations

import sys
import time

from memrepl.node.monitor import Snapshot

__all__ = ["SHOW_AFTER_S", "Display", "bar", "line"]

#: A round that ends sooner shows nothing.
SHOW_AFTER_S = 1.0
#: How often the terminal bar is redrawn.
REDRAW_EVERY_S = 0.2
BAR_WIDTH = 20


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _share(shown: Snapshot) -> float:
    return shown.done / shown.total if shown.total else 1.0


def bar(label: str, shown: Snapshot) -> str:
    """The terminal line: label, bar, percentage, counts, rate and ETA."""
    share = _share(shown)
    filled = min(BAR_WIDTH, round(share * BAR_WIDTH))
    return (
        f"memrepl: sync {label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {share:4.0%}  "
        f"{shown.done:,}/{shown.total:,}  {shown.items_per_s:,.0f}/s  ETA {_clock(shown.eta_s)}"
    )


def line(label: str, shown: Snapshot) -> str:
    """The plain line for a log: the same facts in words."""
    eta = "unknown" if shown.eta_s is None else f"{shown.eta_s:.0f} s"
    return (
        f"memrepl: sync {label}: {shown.done:,} of {shown.total:,} items "
        f"({_share(shown):.0%}), {shown.items_per_s:,.0f} items/s, ETA {eta}"
    )


class Display:
    """The progress of one ``memrepl sync`` on stderr: :meth:`show` as often as facts arrive;
    it redraws the bar at most every REDRAW_EVERY_S on a terminal and prints a line every
    ``every_s`` elsewhere; :meth:`end` finishes the bar's line."""

    def __init__(self, peer_id: str, *, every_s: float) -> None:
        self.peer_id = peer_id
        self.every_s = every_s
        self.interactive = sys.stderr.isatty()
        self.last_shown = -1e9
        self.shown = False

    def show(self, tier: str, shown: Snapshot) -> None:
        now = time.monotonic()
        if now - self.last_shown < (REDRAW_EVERY_S if self.interactive else self.every_s):
            return
        label = f"{tier} -> {self.peer_id}"
        if self.interactive:
            sys.stderr.write("\r" + bar(label, shown))
        else:
            sys.stderr.write(line(label, shown) + "\n")
        sys.stderr.flush()
        self.shown = True
        self.last_shown = now

    def end(self) -> None:
        if self.shown and self.interactive:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.shown = False
