"""Working memory's tier objects: :class:`WorkingMemory` and its asyncio twin.

What is working memory's own -- capacity and eviction, expiry-aware reads, pinning and TTL, all
local and never replicated -- is in :mod:`memrepl.storage.working`, over a ``Connection``. The
rule that keeps the two classes one implementation (as :mod:`memrepl.storage.tiers` says for
every tier): each method builds the call of ONE ``_*_op`` function below and runs it in a store
transaction, directly in :class:`WorkingMemory`, through ``AsyncConnection.run_sync`` in
:class:`AsyncWorkingMemory`; ``pinned=``/``ttl_s=`` of a write become the same
``LocalWrite.local`` columns in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from memrepl.protocol.enums import SyncPriority
from memrepl.storage import working
from memrepl.storage.items import LocalWrite
from memrepl.storage.records import Record
from memrepl.storage.schema import WORKING, TierSpec
from memrepl.storage.tiers import AsyncTier, Tier, TierContext, _TierBase

if TYPE_CHECKING:
    from memrepl.storage.store import StoreBase

__all__ = ["AsyncWorkingMemory", "WorkingMemory"]


def _working_spec(store: StoreBase) -> TierSpec:
    hook = working.eviction_hook(store.working_capacity, store.clock_settings.wall)
    return replace(WORKING, on_change=hook)


def _local(
    ctx: TierContext, write: LocalWrite, pinned: bool | None, ttl_s: float | None
) -> LocalWrite:
    """``write`` with its local columns: pinned, and the expiry of a TTL counted from now."""
    local: dict[str, Any] = {}
    if pinned is not None:
        local["pinned"] = bool(pinned)
    if ttl_s is not None:
        local["expires_at_ns"] = working.ttl_expiry(ttl_s, ctx.clock.wall())
    return write._replace(local=local) if local else write


def _get_op(conn: Connection, ctx: TierContext, item_id: str, count_access: bool) -> Record | None:
    item = working.read_live(conn, ctx.spec, item_id, ctx.clock.wall(), count_access=count_access)
    return None if item is None else item.to_record(copy=False)


def _pin_op(conn: Connection, ctx: TierContext, item_id: str, pinned: bool) -> None:
    working.set_local(conn, ctx.spec, item_id, pinned=pinned)


def _set_ttl_op(conn: Connection, ctx: TierContext, item_id: str, ttl_s: float | None) -> None:
    expires = working.ttl_expiry(ttl_s, ctx.clock.wall())
    working.set_local(conn, ctx.spec, item_id, expires_at_ns=expires)


class _WorkingBase(_TierBase):
    default_spec = WORKING

    @classmethod
    def _spec_for(cls, store: StoreBase) -> TierSpec:
        return _working_spec(store)


class WorkingMemory(_WorkingBase, Tier):
    """L1: small and hot. Capacity (``Store.working_capacity``), eviction of the lowest-scored
    unpinned items, pinning and TTL: all local, never replicated (:mod:`~.working`)."""

    def get_by_id(self, item_id: str, *, count_access: bool = True) -> Record | None:
        """The live, unexpired item ``item_id`` (None otherwise); see :meth:`Tier.get_by_id`."""
        if not count_access:
            with self._store.read() as conn:
                return _get_op(conn, self._ctx, item_id, False)
        with self._store.write() as conn:
            return _get_op(conn, self._ctx, item_id, True)

    def add(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        pinned: bool | None = None,
        ttl_s: float | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """:meth:`Tier.add`, optionally pinning the item or giving it a TTL in seconds (local)."""
        write = LocalWrite.add(item_id, content, priority, namespace=namespace, key=key)
        return self.write_many([_local(self._ctx, write, pinned, ttl_s)])[0]

    def update(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        pinned: bool | None = None,
        ttl_s: float | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """:meth:`Tier.update`, optionally (un)pinning or setting a TTL (local)."""
        write = LocalWrite.update(item_id, content, priority, namespace=namespace, key=key)
        return self.write_many([_local(self._ctx, write, pinned, ttl_s)])[0]

    def merge(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        pinned: bool | None = None,
        ttl_s: float | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """:meth:`Tier.merge`, optionally (un)pinning or setting a TTL (local)."""
        write = LocalWrite.merge(item_id, content, priority, namespace=namespace, key=key)
        return self.write_many([_local(self._ctx, write, pinned, ttl_s)])[0]

    def pin(self, item_id: str) -> None:
        """Never evict ``item_id`` (local; ItemNotFoundError if it is not live)."""
        with self._store.write() as conn:
            _pin_op(conn, self._ctx, item_id, True)

    def unpin(self, item_id: str) -> None:
        """Make ``item_id`` evictable again (local; ItemNotFoundError if it is not live)."""
        with self._store.write() as conn:
            _pin_op(conn, self._ctx, item_id, False)

    def set_ttl(self, item_id: str, ttl_s: float | None) -> None:
        """Expire ``item_id`` ``ttl_s`` seconds from now, or never (None). Local."""
        with self._store.write() as conn:
            _set_ttl_op(conn, self._ctx, item_id, ttl_s)


class AsyncWorkingMemory(_WorkingBase, AsyncTier):
    """The asyncio twin of :class:`WorkingMemory`: the same methods as coroutines."""

    async def get_by_id(self, item_id: str, *, count_access: bool = True) -> Record | None:
        """See :meth:`WorkingMemory.get_by_id`."""
        if not count_access:
            async with self._store.read() as conn:
                return await conn.run_sync(_get_op, self._ctx, item_id, False)
        async with self._store.write() as conn:
            return await conn.run_sync(_get_op, self._ctx, item_id, True)

    async def add(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        pinned: bool | None = None,
        ttl_s: float | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """See :meth:`WorkingMemory.add`."""
        write = LocalWrite.add(item_id, content, priority, namespace=namespace, key=key)
        return (await self.write_many([_local(self._ctx, write, pinned, ttl_s)]))[0]

    async def update(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        pinned: bool | None = None,
        ttl_s: float | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """See :meth:`WorkingMemory.update`."""
        write = LocalWrite.update(item_id, content, priority, namespace=namespace, key=key)
        return (await self.write_many([_local(self._ctx, write, pinned, ttl_s)]))[0]

    async def merge(
        self,
        item_id: str,
        content: Mapping[str, Any],
        *,
        priority: SyncPriority | None = None,
        pinned: bool | None = None,
        ttl_s: float | None = None,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> Record:
        """See :meth:`WorkingMemory.merge`."""
        write = LocalWrite.merge(item_id, content, priority, namespace=namespace, key=key)
        return (await self.write_many([_local(self._ctx, write, pinned, ttl_s)]))[0]

    async def pin(self, item_id: str) -> None:
        """See :meth:`WorkingMemory.pin`."""
        async with self._store.write() as conn:
            await conn.run_sync(_pin_op, self._ctx, item_id, True)

    async def unpin(self, item_id: str) -> None:
        """See :meth:`WorkingMemory.unpin`."""
        async with self._store.write() as conn:
            await conn.run_sync(_pin_op, self._ctx, item_id, False)

    async def set_ttl(self, item_id: str, ttl_s: float | None) -> None:
        """See :meth:`WorkingMemory.set_ttl`."""
        async with self._store.write() as conn:
            await conn.run_sync(_set_ttl_op, self._ctx, item_id, ttl_s)
