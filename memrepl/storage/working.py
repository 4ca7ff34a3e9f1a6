"""Working memory (L1): capacity, eviction, pinning and TTL -- all local, none of it replicated.

What this module owns (ARCHITECTURE.md, "The tiers"): the working tier's in-transaction hook
(:func:`eviction_hook`, bound by ``WorkingMemory._spec_for`` to ``Store.working_capacity``),
the expiry-aware read (:func:`read_live`), and the local-column edits (:func:`set_local`).

The rule that keeps it right: **eviction and expiry are local forgetting**
(:func:`memrepl.storage.items.forget_items`): the row is removed without a tombstone, so nothing
replicates and peers keep their copy. And **nothing is forgotten before it has replicated**: a row
whose ``modified_at`` is above the lowest acknowledged cursor of the tier's known peers (rows of
``sync_vectors`` for tier 1) is never evicted or expired, because the only copy of that change
is here. With no known peer every row may be forgotten. So the capacity is *soft* while peers
lag: a tier can hold more than ``capacity`` live rows until they acknowledge, and the next write
after that evicts down to the low-water mark (below).

Eviction. When a write (local, or an applied batch) leaves more than ``capacity`` live rows, the
hook forgets rows, lowest score first, among live rows that are not pinned and are replicated,
until ``capacity - slack`` remain (the low-water mark; :func:`low_water`), with
``slack = capacity // EVICTION_SLACK_DIVISOR``: 1% of the capacity, 0 below 100. Writes then
fill the slack without evicting anything, so the score sort over every evictable row runs once
per ``slack + 1`` writes at capacity instead of on every write. What a user can rely on: after
every write at most ``capacity`` rows are live (soft while peers lag, or when too few rows are
evictable), and an overflow leaves ``capacity - slack``, the highest-scored ones kept (as far as
pinned and unreplicated rows allow). The score, in [0, 1]::

    score = 0.4 * priority / 4                      # SyncPriority: 0 BACKGROUND .. 4 URGENT
          + 0.3 * min(access_count, 10) / 10        # local reads (get_by_id)
          + 0.3 * H / (H + age)                     # recency, 1 now, 0.5 after H
    age = max(0, now - max(last_accessed_ns, modified_at))    H = RECENCY_HALF_LIFE_NS

computed in SQL from the stored stamps (``modified_at`` is an HLC stamp, within the clock's skew
of wall time); ties go to the older ``modified_at``. Pinned rows count towards the capacity but are
never evicted.

**A local write is never evicted by its own transaction**: the items a ``write_many`` (or
``add``...) call has just made live are not candidates, whatever their score, so the records it
returns are items the tier holds. A call that alone makes more items live than ``capacity``
could not keep them all: it is refused whole (:class:`~memrepl.errors.CapacityExceededError`),
nothing written -- a 20,000-item ``write_many`` into a tier of 10,000 fails instead of silently
keeping 9,900. Split such a load, or raise ``working_capacity``. Batches applied from peers are
never refused: their rows are evictable like any other.

TTL. ``expires_at_ns`` (set from ``ttl_s`` on a write or by :func:`set_local`) is local: a read
treats an expired item as absent, :func:`expire` forgets expired rows (the hook also runs it on
every write), under the same replication rule; pinning does not protect from an explicit TTL.
Expiry is every tier's, as is the TTL that replicates with an item's filing options
(:mod:`memrepl.storage.expiry`); working memory adds only this local one and the write hook.
Forgetting is not deleting: a peer that later sends a newer state of a forgotten item brings it
back, as a new row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

from sqlalchemy import and_, case, func, literal, select, update
from sqlalchemy.engine import Connection

from memrepl.errors import CapacityExceededError, ItemError, ItemNotFoundError
from memrepl.protocol.item import check_item_id
from memrepl.storage import driver
from memrepl.storage.driver import compile_statement
from memrepl.storage.expiry import (
    expire,
    forgettable,
    is_expired,
    replicated_through,
)
from memrepl.storage.items import count_read, forget_items, read_item
from memrepl.storage.portable import greatest, least
from memrepl.storage.records import StoredItem
from memrepl.storage.schema import WORKING, ChangeHook, TierSpec, working_items

#: Age at which an item's recency term halves (one hour).
RECENCY_HALF_LIFE_NS = 3_600 * 1_000_000_000
#: Weights of the eviction score's terms (see the module docstring).
PRIORITY_WEIGHT = 0.4
ACCESS_WEIGHT = 0.3
RECENCY_WEIGHT = 0.3
#: Reads beyond this many add nothing to the score.
ACCESS_SATURATION = 10
#: Eviction hysteresis: an overflow evicts down to ``capacity - capacity // EVICTION_SLACK_DIVISOR``
#: (1% below the capacity), not to the capacity. Choosing the victims sorts every evictable row by
#: score (about 5 ms at the default 10,000 rows); evicting exactly to the capacity paid that on
#: every write once the tier was full, the slack pays it once per 1% of the capacity in writes.
#: Capacities under 100 get no slack: their sort is cheap, and a slack of one would leave a tier of
#: capacity 1 empty after each overflow, forgetting the item just written.
EVICTION_SLACK_DIVISOR = 100
_MAX_PRIORITY = 4

_NS_PER_S = 1_000_000_000


def ttl_expiry(ttl_s: float | None, now_ns: int) -> int | None:
    """``expires_at_ns`` for a TTL of ``ttl_s`` seconds from ``now_ns`` (None: no TTL).

    Raises :class:`~memrepl.errors.ItemError` for a TTL that is not a positive number.
    """
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0:
        raise ItemError(f"ttl_s must be a positive number of seconds, not {ttl_s!r}")
    return now_ns + int(ttl_s * _NS_PER_S)


def score_expression(now_ns: int) -> object:
    """The eviction score of a ``working_items`` row, as SQL (see the module docstring)."""
    table = working_items
    last = greatest(func.coalesce(table.c.last_accessed_ns, 0), table.c.modified_at)
    age = case((last >= now_ns, 0), else_=literal(now_ns) - last)
    half_life = float(RECENCY_HALF_LIFE_NS)
    accesses = least(table.c.access_count, ACCESS_SATURATION)
    return (
        PRIORITY_WEIGHT * table.c.priority / float(_MAX_PRIORITY)
        + ACCESS_WEIGHT * accesses / float(ACCESS_SATURATION)
        + RECENCY_WEIGHT * half_life / (half_life + age)
    )


def low_water(capacity: int) -> int:
    """The live rows an overflow of ``capacity`` evicts down to: ``capacity`` less the slack
    (``capacity // EVICTION_SLACK_DIVISOR``)."""
    return capacity - capacity // EVICTION_SLACK_DIVISOR


def evict(
    conn: Connection, spec: TierSpec, capacity: int, now_ns: int, keep_from: int | None = None
) -> list[str]:
    """When more than ``capacity`` rows are live, forget the lowest-scored, unpinned, replicated
    ones down to :func:`low_water`; their ids (lowest score first). Nothing at or under
    ``capacity``; fewer when the rest are pinned or unreplicated. Rows changed at or after
    ``keep_from`` (this transaction's own local writes) are never chosen."""
    table = spec.table
    live = int(
        conn.execute(
            select(func.count()).select_from(table).where(table.c.deleted.is_(False))
        ).scalar_one()
    )
    if live <= capacity:
        return []
    excess = live - low_water(capacity)
    conditions = forgettable(spec, replicated_through(conn, spec))
    if keep_from is not None:
        conditions.append(table.c.modified_at < keep_from)
    score = score_expression(now_ns)
    ids = list(
        conn.execute(
            select(table.c.item_id)
            .where(and_(table.c.pinned.is_(False), *conditions))
            .order_by(score, table.c.modified_at, table.c.item_id)  # type: ignore[arg-type]
            .limit(excess)
        ).scalars()
    )
    forget_items(conn, spec, ids)
    return ids


@cache
def _probe(backend: str) -> str:
    """The row count and the earliest expiry of the working tier: run on every write to the
    tier, a hot statement, run on the driver (see .driver)."""
    table = WORKING.table
    return compile_statement(
        select(
            select(func.count()).select_from(table).scalar_subquery(),
            select(func.min(table.c.expires_at_ns)).scalar_subquery(),
        ),
        backend,
    ).sql


def eviction_hook(capacity: int | None, wall: Callable[[], int]) -> ChangeHook:
    """The working tier's ``on_change``: expire, then, over ``capacity``, evict down to
    :func:`low_water` (None: no capacity, expiry only). Runs inside the write's transaction.

    The common case costs one query: the row count (tombstones included, on the smallest index)
    and the earliest expiry (an index lookup); expiry and eviction run only when they show work.
    """

    def on_change(conn: Connection, changed: Sequence[StoredItem], local_write: bool) -> None:
        now_ns = wall()
        local = [item for item in changed if not item.deleted] if local_write else []
        if capacity is not None and len(local) > capacity:
            # ``changed`` holds each item once, in its final state.
            raise CapacityExceededError(
                f"write of {len(local)} working items: the tier holds at most {capacity} "
                "(working_capacity); nothing was written -- split the write or raise the "
                "capacity",
                limit=capacity,
                size=len(local),
            )
        ((rows, earliest),) = driver.execute(conn, _probe(conn.dialect.name))
        # forget_items runs no hook, so forgetting never re-enters this one.
        if earliest is not None and earliest <= now_ns:
            expire(conn, WORKING, now_ns)
        if capacity is not None and rows > capacity and any(not i.deleted for i in changed):
            # This transaction's local writes have the highest modified_at stamps of the tier.
            keep_from = min((item.modified_at for item in local), default=None)
            evict(conn, WORKING, capacity, now_ns, keep_from)

    return on_change


def read_live(
    conn: Connection, spec: TierSpec, item_id: str, now_ns: int, *, count_access: bool = True
) -> StoredItem | None:
    """The live, unexpired item ``item_id`` (the access recorded with ``count_access``); None
    otherwise (an expired read counts no access)."""
    item = read_item(conn, spec, item_id, now_ns, count_access=False)
    if item is None or is_expired(item, now_ns):
        return None
    return count_read(conn, spec, item, now_ns) if count_access else item


def set_local(conn: Connection, spec: TierSpec, item_id: str, **values: object) -> None:
    """Set local columns (``pinned``, ``expires_at_ns``) of a live item: never ``modified_at``,
    nothing replicates. :class:`~memrepl.errors.ItemNotFoundError` if it is missing or deleted."""
    table = spec.table
    result = conn.execute(
        update(table)
        .where(table.c.item_id == check_item_id(item_id), table.c.deleted.is_(False))
        .values(**values)
    )
    if result.rowcount != 1:
        raise ItemNotFoundError(
            f"setting {sorted(values)} of working item {item_id!r}: it is missing or deleted",
            item_id=item_id,
        )
