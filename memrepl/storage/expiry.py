"""Expiry on every tier: when a node forgets an item, what reads do with an expired one, and
refreshing a deadline on read.

Each tier table has a local ``expires_at_ns`` column (NULL: never): when this node forgets the
item. It is set two ways:

- by a **replicated TTL**, the ``ttl_ns`` filing option a write files the item with
  (:mod:`memrepl.filing`; ``LocalWrite.put(..., expire_after_s=...)``): every write, local or
  applied from a peer, sets it to the latest write's stamp plus the TTL, so every node computes
  the same deadline from the same state; a read may push it later on the node that reads
  (:func:`refresh`, LangGraph's ``refresh_ttl``);
- by a **local TTL** (working memory's ``ttl_s``, :func:`memrepl.storage.working.ttl_expiry`),
  which only that node knows.

The rules that keep it right:

- **An expired item is absent** for every read (``get_by_id``, search, ``list_namespaces``) from
  its deadline on, whether or not it was forgotten yet.
- **Expiry is local forgetting** (:func:`memrepl.storage.items.forget_items`): the row goes
  without a tombstone, nothing replicates -- every node holding the item forgets it by itself.
  A peer that later sends a newer state of it brings it back (as a new row with its own
  deadline); one that sends the same state (anti-entropy, from a node where a read kept it)
  brings it back already expired, for the next :func:`expire` to forget.
- **Nothing is forgotten before it has replicated**: a row changed after the lowest cursor the
  tier's known peers acknowledged is kept until they have it (:func:`replicated_through`).

When forgetting happens: working memory's write hook runs :func:`expire` on every write
(:mod:`memrepl.storage.working`); every tier's ``expire()`` runs it on demand (a LangGraph
store's TTL sweeper calls it periodically).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from memrepl.filing import stored_options
from memrepl.storage.items import forget_items
from memrepl.storage.records import StoredItem
from memrepl.storage.schema import TierSpec, sync_vectors

#: The local column that holds a row's deadline.
COLUMN = "expires_at_ns"


def replicated_through(conn: Connection, spec: TierSpec) -> int | None:
    """The lowest acknowledged cursor of the tier's known peers; None when no peer is known
    (then every row counts as replicated)."""
    value = conn.execute(
        select(func.min(sync_vectors.c.acked_cursor)).where(sync_vectors.c.tier == int(spec.tier))
    ).scalar_one()
    return None if value is None else int(value)


def forgettable(spec: TierSpec, safe_through: int | None) -> list[Any]:
    """The conditions of a live row this node may forget: it has replicated (``safe_through``:
    :func:`replicated_through`)."""
    table = spec.table
    conditions: list[Any] = [table.c.deleted.is_(False)]
    if safe_through is not None:
        conditions.append(table.c.modified_at <= safe_through)
    return conditions


def expire(conn: Connection, spec: TierSpec, now_ns: int) -> list[str]:
    """Forget the live rows whose ``expires_at_ns`` is at or before ``now_ns`` (and that have
    replicated); their ids. An index range scan on ``expires_at_ns``."""
    table = spec.table
    conditions = forgettable(spec, replicated_through(conn, spec))
    ids = list(
        conn.execute(
            select(table.c.item_id).where(table.c.expires_at_ns <= now_ns, *conditions)
        ).scalars()
    )
    forget_items(conn, spec, ids)
    return ids


def is_expired(item: StoredItem, now_ns: int) -> bool:
    """Whether ``item`` has a deadline that has passed."""
    return item.expired(now_ns)


def any_expiring(conn: Connection, spec: TierSpec) -> bool:
    """Whether any row of the tier has a deadline (one index lookup): searches leave the expiry
    condition out of their queries when none has."""
    column = spec.table.c.expires_at_ns
    return conn.execute(select(column).where(column.is_not(None)).limit(1)).first() is not None


def refresh(
    conn: Connection, spec: TierSpec, items: Iterable[StoredItem], now_ns: int
) -> list[StoredItem]:
    """Push the deadline of each live item with a replicated TTL to at least ``now_ns`` plus the
    TTL (a read's refresh: local, never replicated); the items as they now are, in order. Items
    without one are returned as they were. In the caller's write transaction."""
    found: list[StoredItem] = []
    changes: list[dict[str, Any]] = []
    for item in items:
        ttl = stored_options(item.state.placement.options).ttl_ns
        current = item.extras.get(COLUMN)
        if ttl is None or item.deleted or current is None or current >= now_ns + ttl:
            found.append(item)
            continue
        extras = dict(item.extras)
        extras[COLUMN] = now_ns + ttl
        changes.append({"refresh_id": item.item_id, "deadline": extras[COLUMN]})
        found.append(replace(item, extras=extras))
    if changes:
        conn.execute(_refresh_statement(spec), changes)
    return found


def _refresh_statement(spec: TierSpec) -> Any:
    table = spec.table
    return (
        update(table)
        .where(table.c.item_id == bindparam("refresh_id"))
        .values(expires_at_ns=bindparam("deadline"))
    )


def live_unexpired(items: Sequence[StoredItem | None], now_ns: int) -> list[StoredItem | None]:
    """``items`` with tombstones and expired items as None."""
    return [
        None if item is None or item.deleted or is_expired(item, now_ns) else item for item in items
    ]
