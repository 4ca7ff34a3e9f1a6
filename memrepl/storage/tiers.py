"""The tier objects: the seed's interface over the storage operations, sync and asyncio.

The rule that keeps it right: a tier method holds no logic of its own. Each one builds the call
of ONE function over a ``Connection`` (the ``_*_op`` functions below, which call
:mod:`memrepl.storage.items`) and runs it in a store transaction: directly in
:class:`Tier`, through ``AsyncConnection.run_sync`` in :class:`AsyncTier`. The three tiers share
:class:`_TierBase`; each subclass names its :class:`~memrepl.storage.schema.TierSpec` and adds
only what is its own.

Hooks for tier-specific behaviour:

- ``_spec_for(store)`` (classmethod): the spec this tier uses in ``store``; override it to bind
  an in-transaction ``TierSpec.on_change`` hook to the store's settings (working memory's
  eviction, with ``store.working_capacity``).
- ``_after_commit(changed)``: called after every committed write transaction of the store that
  changed rows of this tier -- local writes and applied batches alike -- with the changed
  :class:`~memrepl.storage.records.StoredItem` objects in write order (semantic memory's graph).
  A hook that keeps content must keep its own copy (decode ``item.encoded_content()``): the
  item's content object goes on to the caller in the returned record.

What is a tier's own lives in its module, over a ``Connection`` like everything else:
:mod:`~memrepl.storage.working` (capacity, eviction, pinning, TTL), :mod:`~memrepl.storage.episodic`
(the episode queries), :mod:`~memrepl.storage.semantic` (ids and the graph); the classes below
only call it. The working tier's classes are in :mod:`~memrepl.storage.working_tiers`, the
semantic tier's, which also keep the graph, in :mod:`~memrepl.storage.graph_tiers`.

The bare constructors (``WorkingMemory()``, ``EpisodicMemory()``, ``SemanticMemory()``) open a
private in-memory store with a generated node id: handy for trying the API, NOT durable -- its
contents go when the object does. ``memrepl.open(path, node_id=...).working`` is the durable
form; ``WorkingMemory(store=store)`` returns that same object.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from sqlalchemy.engine import Connection

from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import episodic, expiry
from memrepl.storage.items import (
    LocalWrite,
    load_items,
    modified_since,
    read_item,
    read_items,
    write_local,
)
from memrepl.storage.node import ClockSettings, stamping
from memrepl.storage.recall import AsyncTierRecallMethods, TierRecallMethods
from memrepl.storage.records import Record, StoredItem
from memrepl.storage.schema import EPISODIC, TierSpec

if TYPE_CHECKING:
    from memrepl.storage.store import AsyncStore, Store, StoreBase


@dataclass(frozen=True, slots=True)
class TierContext:
    """What a tier operation needs besides its connection."""

    spec: TierSpec
    node_id: str
    clock: ClockSettings


def _write_op(conn: Connection, ctx: TierContext, writes: Sequence[LocalWrite]) -> list[Record]:
    with stamping(conn, ctx.clock) as clock:
        items = write_local(conn, ctx.spec, ctx.node_id, clock, writes)
    # The items' contents were built for this write (validated and decoded afresh from the
    # caller's), and after-commit hooks keep copies of their own: the caller may have them --
    # except a later write to the same id, whose content shares values with the earlier one.
    records: list[Record] = []
    seen: set[str] = set()
    for item in items:
        records.append(item.to_record(copy=item.item_id in seen))
        seen.add(item.item_id)
    return records


def _get_op(conn: Connection, ctx: TierContext, item_id: str, count_access: bool) -> Record | None:
    item = read_item(conn, ctx.spec, item_id, ctx.clock.wall(), count_access=count_access)
    return None if item is None else item.to_record(copy=False)


def _get_many_op(
    conn: Connection, ctx: TierContext, item_ids: Sequence[str], refresh_ttl: bool
) -> list[Record | None]:
    now_ns = ctx.clock.wall()
    found = read_items(conn, ctx.spec, item_ids, now_ns)
    if refresh_ttl and found:
        found = {
            item.item_id: item for item in expiry.refresh(conn, ctx.spec, found.values(), now_ns)
        }
    return [
        None if (item := found.get(item_id)) is None else item.to_record(copy=False)
        for item_id in item_ids
    ]


def _refresh_op(conn: Connection, ctx: TierContext, item_ids: Sequence[str]) -> int:
    now_ns = ctx.clock.wall()
    items = [
        item
        for item in load_items(conn, ctx.spec, item_ids).values()
        if not item.deleted and not item.expired(now_ns)
    ]
    refreshed = expiry.refresh(conn, ctx.spec, items, now_ns)
    return sum(1 for before, after in zip(items, refreshed, strict=True) if before is not after)


def _expire_op(conn: Connection, ctx: TierContext) -> list[str]:
    return expiry.expire(conn, ctx.spec, ctx.clock.wall())


def _modified_since_op(conn: Connection, ctx: TierContext, timestamp_ns: int) -> list[Record]:
    # Items just read from their rows: nothing else holds their content, no copy needed.
    return [item.to_record(copy=False) for item in modified_since(conn, ctx.spec, timestamp_ns)]


class _TierBase:
    """What every tier object has: its store, its spec, and the hooks."""

    #: The tier's spec (subclasses set it).
    default_spec: ClassVar[TierSpec]

    spec: TierSpec
    _ctx: TierContext

    @classmethod
    def _spec_for(cls, store: StoreBase) -> TierSpec:
        """The spec this tier uses in ``store`` (override to bind an ``on_change`` hook)."""
        return cls.default_spec

    def _setup(self, store: StoreBase) -> None:
        self.spec = type(self)._spec_for(store)
        self._ctx = TierContext(self.spec, store.node_id, store.clock_settings)

    @property
    def tier(self) -> MemoryTier:
        """Which tier this is."""
        return self.spec.tier

    @property
    def node_id(self) -> str:
        """The node id of the store this tier belongs to."""
        return self._ctx.node_id

    def _after_commit(self, changed: Sequence[StoredItem]) -> None:
        """Called after a committed transaction changed rows of this tier. Default: nothing."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} node_id={self.node_id!r}>"


class Tier(TierRecallMethods, _TierBase):
    """A memory tier over a synchronous :class:`~memrepl.storage.store.Store`.

    Every write is one ``BEGIN IMMEDIATE`` transaction: validated first, so a refused call
    changes nothing; see :mod:`memrepl.storage.items` for the exact semantics and errors.
    A write without ``priority=`` keeps the item's priority (NORMAL for a new item): a ``merge``
    never lowers an item added as HIGH (:class:`~memrepl.storage.items.LocalWrite`).
    """

    _store: Store

    def __new__(cls, store: Store | None = None) -> Self:
        if store is None:
            from memrepl.storage.store import open_private

            store = open_private()
            tier = store.tier(cls.default_spec.tier)
            # The private store lives as long as its tier object does.
            weakref.finalize(tier, store.engine.dispose)
        else:
            tier = store.tier(cls.default_spec.tier)
        if not isinstance(tier, cls):
            raise TypeError(f"{type(tier).__name__} is not a {cls.__name__}")
        return tier

    def __init__(self, store: Store | None = None) -> None:
        # Construction happens in __new__/_bind: WorkingMemory(store=s) is s.working.
        pass

    @classmethod
    def _bind(cls, store: Store) -> Self:
        tier = object.__new__(cls)
        tier._store = store
        tier._setup(store)
        return tier

    @property
    def store(self) -> Store:
        """The store this tier belongs to."""
        return self._store

    def get_modified_since(self, timestamp_ns: int) -> list[Record]:
        """Items changed on this node after ``timestamp_ns``, tombstones included, in
        ``modified_at`` order (an index range scan)."""
        with self._store.read() as conn:
            return _modified_since_op(conn, self._ctx, timestamp_ns)

    def get_by_id(self, item_id: str, *, count_access: bool = True) -> Record | None:
        """The live item ``item_id``, or None if missing, deleted or expired.

        Counts an access by default (local bookkeeping that never changes ``modified_at`` or
        replicates): the reads an agent makes are what promotion and the eviction score weigh.
        ``count_access=False`` reads without counting, in a read transaction that writes
        nothing -- for looking at an item rather than using it (``memrepl get`` does).
        """
        if not count_access:
            with self._store.read() as conn:
                return _get_op(conn, self._ctx, item_id, False)
        with self._store.write() as conn:
            return _get_op(conn, self._ctx, item_id, True)

    def get_many(
        self, item_ids: Sequence[str], *, refresh_ttl: bool = False
    ) -> list[Record | None]:
        """The live, unexpired items ``item_ids``, in order (None for a missing, deleted or
        expired one), in one transaction; each counts an access. ``refresh_ttl`` also pushes
        the deadline of those with a replicated TTL to now plus the TTL (local, like the
        access: :func:`memrepl.storage.expiry.refresh`)."""
        with self._store.write() as conn:
            return _get_many_op(conn, self._ctx, list(item_ids), refresh_ttl)

    def refresh_ttl(self, item_ids: Sequence[str]) -> int:
        """Push the deadline of the live items ``item_ids`` that have a replicated TTL to now
        plus the TTL (local; counts no access); how many deadlines moved."""
        with self._store.write() as conn:
            return _refresh_op(conn, self._ctx, list(item_ids))

    def expire(self) -> list[str]:
        """Forget the expired (and replicated) items now; their ids. Local, no tombstones
        (:mod:`memrepl.storage.expiry`)."""
        with self._store.write() as conn:
            return _expire_op(conn, self._ctx)

    def add(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """Create an item (or resurrect a deleted one). ItemExistsError if it is live.

        ``namespace`` (a tuple of non-empty strings) files the item there; None leaves it where
        it is (a new item: in none). ``key``: the key of a keyed id (:func:`memrepl.keyed_id`).
        The same two keywords work on ``update`` and ``merge``.
        """
        write = LocalWrite.add(item_id, content, priority, namespace=namespace, key=key)
        return self.write_many([write])[0]

    def update(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """Replace a live item's content. ItemNotFoundError if it is missing or deleted."""
        write = LocalWrite.update(item_id, content, priority, namespace=namespace, key=key)
        return self.write_many([write])[0]

    def delete(self, item_id: str, *, priority: SyncPriority | None = None) -> Record:
        """Delete a live item, leaving a tombstone that replicates. ItemNotFoundError if not
        live."""
        return self.write_many([LocalWrite.delete(item_id, priority)])[0]

    def merge(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """Set the given fields, keeping the others; creates the item if missing."""
        write = LocalWrite.merge(item_id, content, priority, namespace=namespace, key=key)
        return self.write_many([write])[0]

    def write_many(self, writes: Sequence[LocalWrite]) -> list[Record]:
        """Apply many writes in ONE transaction, in order; the record after each write.

        All or nothing: one refused write refuses the whole call.
        """
        with self._store.write() as conn:
            return _write_op(conn, self._ctx, list(writes))


class AsyncTier(AsyncTierRecallMethods, _TierBase):
    """The asyncio twin of :class:`Tier`: the same methods as coroutines, the same operations
    run through ``AsyncConnection.run_sync``."""

    _store: AsyncStore

    @classmethod
    def _bind(cls, store: AsyncStore) -> Self:
        tier = object.__new__(cls)
        tier._store = store
        tier._setup(store)
        return tier

    @property
    def store(self) -> AsyncStore:
        """The store this tier belongs to."""
        return self._store

    async def get_modified_since(self, timestamp_ns: int) -> list[Record]:
        """See :meth:`Tier.get_modified_since`."""
        async with self._store.read() as conn:
            return await conn.run_sync(_modified_since_op, self._ctx, timestamp_ns)

    async def get_by_id(self, item_id: str, *, count_access: bool = True) -> Record | None:
        """See :meth:`Tier.get_by_id`."""
        if not count_access:
            async with self._store.read() as conn:
                return await conn.run_sync(_get_op, self._ctx, item_id, False)
        async with self._store.write() as conn:
            return await conn.run_sync(_get_op, self._ctx, item_id, True)

    async def get_many(
        self, item_ids: Sequence[str], *, refresh_ttl: bool = False
    ) -> list[Record | None]:
        """See :meth:`Tier.get_many`."""
        async with self._store.write() as conn:
            return await conn.run_sync(_get_many_op, self._ctx, list(item_ids), refresh_ttl)

    async def refresh_ttl(self, item_ids: Sequence[str]) -> int:
        """See :meth:`Tier.refresh_ttl`."""
        async with self._store.write() as conn:
            return await conn.run_sync(_refresh_op, self._ctx, list(item_ids))

    async def expire(self) -> list[str]:
        """See :meth:`Tier.expire`."""
        async with self._store.write() as conn:
            return await conn.run_sync(_expire_op, self._ctx)

    async def add(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """See :meth:`Tier.add`."""
        write = LocalWrite.add(item_id, content, priority, namespace=namespace, key=key)
        return (await self.write_many([write]))[0]

    async def update(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """See :meth:`Tier.update`."""
        write = LocalWrite.update(item_id, content, priority, namespace=namespace, key=key)
        return (await self.write_many([write]))[0]

    async def delete(self, item_id: str, *, priority: SyncPriority | None = None) -> Record:
        """See :meth:`Tier.delete`."""
        return (await self.write_many([LocalWrite.delete(item_id, priority)]))[0]

    async def merge(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """See :meth:`Tier.merge`."""
        write = LocalWrite.merge(item_id, content, priority, namespace=namespace, key=key)
        return (await self.write_many([write]))[0]

    async def write_many(self, writes: Sequence[LocalWrite]) -> list[Record]:
        """See :meth:`Tier.write_many`."""
        async with self._store.write() as conn:
            return await conn.run_sync(_write_op, self._ctx, list(writes))


def _events_op(conn: Connection, ctx: TierContext, episode_id: str) -> list[Record]:
    items = episodic.events_of_episode(conn, episode_id, ctx.spec)
    return [item.to_record(copy=False) for item in items]


class EpisodicMemory(Tier):
    """L2: events of episodes (``episode_id``, ``occurred_at_ns`` indexed; :mod:`~.episodic`)."""

    default_spec = EPISODIC

    def events_of_episode(self, episode_id: str) -> list[Record]:
        """The live events of ``episode_id`` in ``occurred_at_ns`` order (an index range)."""
        with self._store.read() as conn:
            return _events_op(conn, self._ctx, episode_id)

    def episodes_between(self, start_ns: int, end_ns: int) -> list[str]:
        """The ids of episodes with a live event in ``[start_ns, end_ns]`` (an index range)."""
        with self._store.read() as conn:
            return episodic.episodes_between(conn, start_ns, end_ns)


class AsyncEpisodicMemory(AsyncTier):
    """The asyncio twin of :class:`EpisodicMemory`."""

    default_spec = EPISODIC

    async def events_of_episode(self, episode_id: str) -> list[Record]:
        """See :meth:`EpisodicMemory.events_of_episode`."""
        async with self._store.read() as conn:
            return await conn.run_sync(_events_op, self._ctx, episode_id)

    async def episodes_between(self, start_ns: int, end_ns: int) -> list[str]:
        """See :meth:`EpisodicMemory.episodes_between`."""
        async with self._store.read() as conn:
            return await conn.run_sync(episodic.episodes_between, start_ns, end_ns)
