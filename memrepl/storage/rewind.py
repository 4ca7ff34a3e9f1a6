"""Rewinding a clock that ran ahead: what ``memrepl clock rewind`` does after a fast wall clock
is fixed.

A node whose wall clock ran fast stamped its writes and its changes (``modified_at``) in the
future, and its hybrid clock keeps that offset after the wall clock is fixed: every local event
takes ``max(wall, last + 1)``, so it goes on stamping in the future until wall time catches up.
Meanwhile its peers refuse its batches (stamps and cursors beyond their wall clock plus the skew
tolerance): replication from it stops for about the size of the skew.

The clock cannot simply be set back: ``modified_at`` must rise in commit order (cursors are
positions in it), and every later write must be stamped above every stamp the node has already
used or seen (LWW would otherwise let an older write win). What CAN be changed is a stamp nobody
else holds. :func:`rewind_clock` therefore maps, in one write transaction, every stamp of this
node's clock above ``base = wall now + the skew tolerance`` -- the ``modified_at`` and
``created_at_ns`` of rows, the stamps of writes whose origin is this node (latest, whole, field
clocks, causal context, the write that set a namespace), a tombstone horizon -- onto ``base + 1,
base + 2, ...`` in their order, and sets the clock to the last of them. Why that is safe:

- **Nobody else holds those stamps.** A peer accepts a stamp or a cursor only up to its own wall
  clock plus the tolerance; with its clock right (and the same tolerance), everything it ever
  took from this node is at or below ``base``. Two checks back that up, and refuse the rewind
  (:class:`~memrepl.errors.ClockRewindError`) if either fails: no peer has acknowledged a
  position above ``base`` (``sync_vectors``), and no stamp of another node above ``base`` is
  stored here (that node's clock is ahead too: fix it first).
- **Every order is kept.** The map is strictly increasing and leaves everything at or below
  ``base`` alone: LWW between this node's writes, their order against every other write,
  ``modified_at`` order (so deltas and cursors), uniqueness, and "the clock is above everything
  it has seen" all still hold. A write keeps its identity except its stamp, which no one else
  knew.
- **Run it with the node stopped** (the CLI takes the node lock): a running node holds batches
  already built with the old stamps.

What it leaves: the conflict log and ``forgotten_items`` keep the stamps they recorded (history,
not state); ``inbound_cursors`` are positions of the peers' clocks, not this one's. The tier
digests (anti-entropy) and the keyword index (keyed by ``created_at_ns``) follow the rewritten
rows in the same transaction.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from memrepl.errors import ClockRewindError
from memrepl.merge import Version
from memrepl.storage import digests, keyword
from memrepl.storage.records import StoredItem, column_names, item_from_values, row_tuple
from memrepl.storage.schema import TIER_SPECS, TierSpec, node, sync_vectors, tombstone_horizons

#: The columns a rewind rewrites in a tier table.
_REWRITTEN = (
    "version_ts",
    "whole_ts",
    "field_clocks",
    "causal_context",
    "namespace_ts",
    "modified_at",
    "created_at_ns",
)


@dataclass(frozen=True, slots=True)
class Rewind:
    """What :func:`rewind_clock` did (or, with nothing ahead, would have done: nothing)."""

    #: The clock's last stamp before and after.
    before_ns: int
    after_ns: int
    #: The stamps above it were mapped onto ``base + 1 ...``.
    base_ns: int
    #: Distinct stamps mapped, and rows rewritten.
    stamps: int
    rows: int


def rewind_clock(conn: Connection, node_id: str, *, wall_ns: int, tolerance_ns: int) -> Rewind:
    """Bring this node's clock back to ``wall_ns + tolerance_ns`` (module docstring), in the
    caller's write transaction. Raises :class:`ClockRewindError` if it is not safe."""
    base = wall_ns + tolerance_ns
    before = int(conn.execute(select(node.c.clock_last_ns)).scalar_one())
    if before <= base:
        return Rewind(before, before, base, 0, 0)
    _check_acknowledgements(conn, base)
    rows = [(spec, _rows_after(conn, spec, base)) for spec in TIER_SPECS.values()]
    stamps: set[int] = set()
    for spec, found in rows:
        for item in found:
            _check_foreign(spec, item, node_id, base)
            stamps.update(s for s in _own_stamps(item, node_id) if s > base)
    horizons = conn.execute(
        select(tombstone_horizons.c.tier, tombstone_horizons.c.purged_through).where(
            tombstone_horizons.c.purged_through > base
        )
    ).all()
    stamps.update(horizon for _, horizon in horizons)
    ordered = sorted(stamps)

    def mapped(stamp: int) -> int:
        if stamp <= base:
            return stamp
        return base + 1 + bisect.bisect_left(ordered, stamp)

    count = 0
    for spec, found in rows:
        # In modified_at order: each new value is at or below the old one (the i-th stamp above
        # base is at least base + i), so the unique index never sees two rows on one value.
        items = [_remapped(item, node_id, mapped) for item in found]
        _stage_created_at(conn, spec, found, items)
        _write(conn, spec, items)
        # The keyword index is keyed by created_at_ns: its entries move with the rows.
        removed, added = keyword.entry_changes(zip(found, items, strict=True))
        keyword.index_changes(conn, spec, removed, added)
        # The stamps are part of each row's hash: keep the tier's digests right.
        changes = [
            (old.item_id, digests.item_hash(old), digests.item_hash(new))
            for old, new in zip(found, items, strict=True)
        ]
        digests.record_changes(conn, spec.tier, changes)
        count += len(items)
    for tier, horizon in horizons:
        conn.execute(
            update(tombstone_horizons)
            .where(tombstone_horizons.c.tier == tier)
            .values(purged_through=mapped(horizon))
        )
    after = base + len(ordered)
    conn.execute(update(node).values(clock_last_ns=after))
    return Rewind(before, after, base, len(ordered), count)


def _check_acknowledgements(conn: Connection, base: int) -> None:
    ahead = conn.execute(
        select(sync_vectors.c.peer_id, sync_vectors.c.acked_cursor).where(
            sync_vectors.c.acked_cursor > base
        )
    ).first()
    if ahead is not None:
        raise ClockRewindError(
            f"peer {ahead[0]!r} has acknowledged position {ahead[1]} of this node, above wall "
            f"time + the tolerance ({base}): it holds stamps a rewind would change; wait until "
            "the wall clock passes them instead"
        )


def _rows_after(conn: Connection, spec: TierSpec, base: int) -> list[StoredItem]:
    """Rows changed here after ``base``: only they can hold a stamp above it (a row takes a new
    ``modified_at`` above every stamp it holds whenever it changes here)."""
    table = spec.table
    query = select(table).where(table.c.modified_at > base).order_by(table.c.modified_at)
    return [item_from_values(spec, row) for row in conn.execute(query)]


def _own_stamps(item: StoredItem, node_id: str) -> Iterable[int]:
    state = item.state
    yield item.modified_at
    yield item.created_at_ns
    for write in (state.whole, *state.field_clocks.values(), state.placement.set_by):
        if write.origin == node_id:
            yield write.timestamp_ns
    own = state.context.get(node_id)
    if own is not None:
        yield own


def _check_foreign(spec: TierSpec, item: StoredItem, node_id: str, base: int) -> None:
    state = item.state
    foreign = [
        (write.origin, write.timestamp_ns)
        for write in (state.whole, *state.field_clocks.values(), state.placement.set_by)
        if write.origin != node_id
    ]
    foreign += [(origin, stamp) for origin, stamp in state.context.items() if origin != node_id]
    for origin, stamp in foreign:
        if stamp > base:
            raise ClockRewindError(
                f"{spec.table.name} item {item.item_id!r} holds a stamp of node {origin!r} "
                f"({stamp}) above wall time + the tolerance ({base}): that node's clock is "
                "ahead too -- fix it first"
            )


def _remapped(item: StoredItem, node_id: str, mapped: Callable[[int], int]) -> StoredItem:
    def own(write: Version) -> Version:
        return Version(mapped(write.timestamp_ns), node_id) if write.origin == node_id else write

    state = item.state
    context = dict(state.context)
    if node_id in context:
        context[node_id] = mapped(context[node_id])
    new_state = state._replace(
        whole=own(state.whole),
        field_clocks={name: own(write) for name, write in state.field_clocks.items()},
        context=context,
        placement=state.placement._replace(set_by=own(state.placement.set_by)),
    )
    return replace(
        item,
        state=new_state,
        modified_at=mapped(item.modified_at),
        created_at_ns=mapped(item.created_at_ns),
    )


def _stage_created_at(
    conn: Connection, spec: TierSpec, found: list[StoredItem], items: list[StoredItem]
) -> None:
    """Park the created_at_ns that change on their negatives first: they are unique too, and in
    modified_at order a row's new value can be one another row still holds (negatives are no
    stamp's)."""
    table = spec.table
    moving = [
        {"id": old.item_id}
        for old, new in zip(found, items, strict=True)
        if old.created_at_ns != new.created_at_ns
    ]
    if moving:
        statement = (
            update(table)
            .where(table.c.item_id == bindparam("id"))
            .values(created_at_ns=-table.c.created_at_ns)
        )
        conn.execute(statement, moving)


def _write(conn: Connection, spec: TierSpec, items: list[StoredItem]) -> None:
    if not items:
        return
    table = spec.table
    names = column_names(spec)
    statement = (
        update(table)
        .where(table.c.item_id == bindparam("id"))
        .values({name: bindparam(f"new_{name}") for name in _REWRITTEN})
    )
    for item in items:
        values = dict(zip(names, row_tuple(spec, item), strict=True))
        conn.execute(statement, {"id": item.item_id} | {f"new_{n}": values[n] for n in _REWRITTEN})
