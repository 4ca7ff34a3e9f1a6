"""``memrepl clock``: this node's hybrid clock against wall time, and rewinding it.

``memrepl clock show`` says how far the clock's last stamp (``node.clock_last_ns``) is ahead of
wall time: after a fast wall clock is fixed, the hybrid clock keeps the old offset, and peers
refuse this node's batches until wall time catches up (``clock-skew`` in their ``memrepl
status``). ``memrepl clock rewind`` brings it back without waiting, by re-stamping what only this
node holds (memrepl.storage.rewind says what and why it is safe); it refuses while a node runs on
the store (it takes the store's node lock) and whenever a rewind would change a stamp a peer may
hold.
"""

from __future__ import annotations

import argparse
import os
import time

from memrepl.cli.context import Subparsers, add_command, add_json_flag, open_store
from memrepl.cli.output import emit, emit_json, format_ns

# SQLAlchemy, the storage layer and the node lock are imported by the commands that use them:
# building the parser stays cheap (memrepl.cli: the start-up rule).

ORDER = 75

NS_PER_S = 1_000_000_000


def run_show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from memrepl.storage.schema import node

    with open_store(args) as store, store.read() as conn:
        last = int(conn.execute(select(node.c.clock_last_ns)).scalar_one())
        node_id = store.node_id
        tolerance = store.clock_settings.max_skew_ns
    wall = time.time_ns()
    ahead_s = max(0, last - wall) / NS_PER_S
    if args.json:
        emit_json(
            {
                "node_id": node_id,
                "clock_last_ns": last,
                "wall_ns": wall,
                "ahead_s": ahead_s,
                "tolerance_s": tolerance / NS_PER_S,
            }
        )
        return 0
    emit(f"node {node_id}: clock {_at(last)}, wall time {format_ns(wall)}")
    if last - wall > tolerance:
        emit(
            f"the clock is {ahead_s:.3f} s ahead of wall time, more than peers accept "
            f"({tolerance / NS_PER_S:g} s): stop the node and run 'memrepl clock rewind'"
        )
    elif ahead_s:
        emit(f"the clock is {ahead_s:.3f} s ahead of wall time (within what peers accept)")
    else:
        emit("the clock is not ahead of wall time")
    return 0


def run_rewind(args: argparse.Namespace) -> int:
    from memrepl.node.lock import LockInfo, NodeLock
    from memrepl.storage.rewind import rewind_clock

    with open_store(args) as store:
        assert store.path is not None
        lock = NodeLock(store.path)
        lock.acquire(LockInfo(os.getpid(), store.node_id, "memrepl clock rewind"))
        try:
            with store.write() as conn:
                done = rewind_clock(
                    conn,
                    store.node_id,
                    wall_ns=time.time_ns(),
                    tolerance_ns=store.clock_settings.max_skew_ns,
                )
        finally:
            lock.release()
    if not done.stamps:
        emit(
            f"node {store.node_id}: clock {_at(done.before_ns)}, not ahead of wall time by "
            "more than the tolerance: nothing to rewind"
        )
        return 0
    emit(
        f"node {store.node_id}: clock rewound from {format_ns(done.before_ns)} to "
        f"{format_ns(done.after_ns)} (wall time + the tolerance); {done.stamps} stamps in "
        f"{done.rows} rows re-stamped"
    )
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """The ``clock`` group."""
    clock = add_command(
        subparsers,
        "clock",
        help="the node's hybrid clock: how far ahead of wall time, and rewinding it",
    )
    commands: Subparsers = clock.add_subparsers(
        title="clock commands", dest="clock_command", metavar="CLOCK_COMMAND", required=True
    )
    show = add_command(
        commands,
        "show",
        help="the clock's last stamp against wall time (read-only)",
        run=run_show,
    )
    add_json_flag(show, "print one JSON document")
    add_command(
        commands,
        "rewind",
        help="after fixing a fast wall clock: re-stamp what only this node holds so that its "
        "clock is back at wall time (the node must be stopped)",
        description=(
            "After a fast wall clock was fixed, the node's hybrid clock keeps the offset and its "
            "peers refuse\nits batches until wall time catches up. This re-stamps, in order, "
            "every stamp of this node that\nis above wall time + the skew tolerance -- stamps no "
            "peer can hold -- and sets the clock there.\nRefused while a node runs on the store, "
            "if a peer acknowledged a position above that point,\nor if another node's stamps "
            "are ahead too."
        ),
        run=run_rewind,
    )


def _at(clock_ns: int) -> str:
    """Where the clock stands, in words: a store that never wrote has not started it."""
    return f"at {format_ns(clock_ns)}" if clock_ns else "not started (no write yet)"
