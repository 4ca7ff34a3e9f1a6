"""The ``node`` row: this database's node id and the persisted hybrid logical clock.

The rule that keeps it right (ARCHITECTURE.md, "Clocks and versions"): the clock lives in the
database, not in a process. Every write transaction loads ``node.clock_last_ns`` inside its
write transaction (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory write lock: no other
writer can move it meanwhile), stamps its changes from a
:class:`~memrepl.clock.HybridLogicalClock` built on that value, and writes the last stamp back
before it commits (:func:`stamping`). Two processes on one file, a restart, or a wall clock that
steps back therefore never reuse or lower a stamp. If the transaction fails the clock is not
saved, and nothing stamped with it was either.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import metadata as importlib_metadata

from sqlalchemy import bindparam, insert, literal_column, select, update
from sqlalchemy.engine import Connection

from memrepl.clock import DEFAULT_MAX_CLOCK_SKEW_NS, HybridLogicalClock, WallClock
from memrepl.errors import NodeIdMismatchError, StoreError
from memrepl.protocol.item import id_problem
from memrepl.storage import driver
from memrepl.storage.driver import DriverStatement, compile_statement
from memrepl.storage.schema import node

#: A node id travels in every batch's metadata: at most this many bytes of UTF-8.
MAX_NODE_ID_BYTES = 32


@dataclass(frozen=True, slots=True)
class ClockSettings:
    """How a store's clock reads time: the wall clock and the tolerated remote skew."""

    wall: WallClock = time.time_ns
    max_skew_ns: int = DEFAULT_MAX_CLOCK_SKEW_NS


def check_node_id(node_id: object) -> str:
    """``node_id`` if it can travel intact (1-32 bytes of UTF-8, no NUL); else StoreError."""
    problem = id_problem(node_id, MAX_NODE_ID_BYTES)
    if problem is not None:
        raise StoreError(f"node id {problem}")
    return node_id  # type: ignore[return-value]


def memrepl_version() -> str:
    """The installed memrepl's version, or ``"unknown"`` when running from a bare checkout."""
    try:
        return importlib_metadata.version("memrepl")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def stored_node_id(conn: Connection) -> str | None:
    """The node id recorded in the database, None before the node row was written."""
    return conn.execute(select(node.c.node_id).where(node.c.id == 1)).scalar_one_or_none()


def ensure_node(conn: Connection, node_id: str, *, now_ns: int) -> None:
    """Write the node row if it is missing; refuse a database that belongs to another node.

    Raises :class:`~memrepl.errors.NodeIdMismatchError` (writing nothing) when the stored node id
    differs. Run it in a write transaction.
    """
    stored = stored_node_id(conn)
    if stored is None:
        conn.execute(
            insert(node).values(
                id=1,
                node_id=node_id,
                clock_last_ns=0,
                created_at_ns=now_ns,
                created_by_version=memrepl_version(),
            )
        )
    elif stored != node_id:
        raise NodeIdMismatchError(
            f"opening a store as node {node_id!r}: the database belongs to node {stored!r}",
            stored=stored,
            requested=node_id,
        )


@cache
def _clock_statements(backend: str) -> tuple[str, DriverStatement]:
    # Every write transaction runs both: hot statements, run on the driver (see .driver).
    load = compile_statement(
        select(node.c.clock_last_ns).where(node.c.id == literal_column("1")), backend
    )
    save = compile_statement(
        update(node)
        .where(node.c.id == literal_column("1"), node.c.clock_last_ns < bindparam("below"))
        .values(clock_last_ns=bindparam("last_ns")),
        backend,
    )
    return load.sql, save


def load_clock(conn: Connection, settings: ClockSettings) -> HybridLogicalClock:
    """The node's clock as last saved. Call it inside a write transaction."""
    rows = driver.execute(conn, _clock_statements(conn.dialect.name)[0])
    if not rows:
        raise StoreError("the database has no node row: open it with memrepl.open() first")
    return HybridLogicalClock(rows[0][0], wall=settings.wall, max_skew_ns=settings.max_skew_ns)


def save_clock(conn: Connection, clock: HybridLogicalClock) -> None:
    """Store the clock's last stamp (never lowering the stored one)."""
    values = {"last_ns": clock.last_ns, "below": clock.last_ns}
    save = _clock_statements(conn.dialect.name)[1]
    driver.execute(conn, save.sql, save.parameters(values))


@contextmanager
def stamping(conn: Connection, settings: ClockSettings) -> Iterator[HybridLogicalClock]:
    """The node's clock for one write transaction; saved on normal exit if it moved.

    Use it inside a write transaction (``Store.write()``), around everything that ticks or
    observes the clock.
    """
    clock = load_clock(conn, settings)
    start = clock.last_ns
    yield clock
    if clock.last_ns != start:
        save_clock(conn, clock)
