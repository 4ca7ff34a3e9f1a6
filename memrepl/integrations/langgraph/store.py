"""``MemreplStore``: LangGraph's ``BaseStore`` over a memrepl store, so a LangGraph agent's
long-term memory is durable and replicates between machines.

One line changes in a LangGraph program::

    store = InMemoryStore(index={"dims": 384, "embed": embed})            # before
    store = MemreplStore("agent.db", node_id="agent-1", index={"dims": 384, "embed": embed})

What it does, in memrepl's terms (the README's "Using memrepl from LangGraph" says it for users):

- **Where items live.** In ONE memrepl tier (episodic by default: durable, never evicted),
  each under its keyed id (:func:`memrepl.keyed_id` of namespace and key), filed in its
  namespace with its key. The same key written on two nodes is one item; a concurrent write to
  it on two nodes is one entry in the conflict log (:meth:`MemreplStore.conflicts`).
- **Operations** (:mod:`.ops`): ``get`` is ``get_many`` (counting an access, refreshing TTLs as
  asked); ``put`` is ``LocalWrite.put`` (create or replace), ``value=None`` is
  ``LocalWrite.discard`` (a tombstone that replicates); ``search`` is ``Store.search`` on the
  tier; ``list_namespaces`` is ``Store.list_namespaces``. In a batch, reads run first and then
  the puts (the last put of an item wins), all puts in one transaction: LangGraph's own order.
- **Search.** With an ``IndexConfig``, by meaning (memrepl's vector index, cosine scores like
  LangGraph's stores; ``fields`` and ``put(index=...)`` choose the texts, which replicate with
  the item); without one, by keyword (BM25; LangGraph's stores ignore the query then). A vector
  search first waits (up to ``index_wait_s``) for the vector index to embed what was written.
- **TTL** (``put(ttl=minutes)``, ``TTLConfig``): a TTL that replicates with the item
  (:mod:`memrepl.storage.expiry`); reads refresh it on the node that reads; expired items are
  absent from every read at once and forgotten by :meth:`MemreplStore.sweep_ttl` (periodically
  with ``sweep_interval_minutes``).
- **Sync and async.** ``batch`` runs in the caller's thread; ``abatch`` runs the same ``batch``
  in a worker thread, so the event loop never waits for SQLite or a model.
- **What LangGraph's stores lack:** :meth:`MemreplStore.sync_status` (where replication of the
  tier stands with each peer) and :meth:`MemreplStore.conflicts` (the conflict log of the items
  under a namespace, or of one key).

The rule that keeps it right: this is a translation. Every rule -- validation of content,
merge, search, expiry -- is memrepl's, run by memrepl's public store API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
)

import memrepl
from memrepl.errors import FilingOptionsError, StoreError
from memrepl.filing import check_options
from memrepl.integrations.langgraph import ops
from memrepl.integrations.langgraph.embeddings import LangChainEmbedder
from memrepl.integrations.langgraph.status import (
    ConflictEntry,
    SyncStatus,
    read_conflicts,
    read_status,
)
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage.store import Store, resolve_tier
from memrepl.storage.validation import check_content

log = logging.getLogger(__name__)

#: How long a vector search waits, at most, for the vector index to embed what was written.
DEFAULT_INDEX_WAIT_S = 30.0
#: The search modes a store may use for queries (memrepl's).
SEARCH_MODES = ("keyword", "vector", "hybrid")
#: LangGraph's default fields: the whole value as one text.
DEFAULT_FIELDS = ("$",)


class MemreplStore(BaseStore):
    """LangGraph's ``BaseStore`` over a memrepl store (see the module docstring).

    ``store`` is a path (the store is opened with ``node_id``, and closed by :meth:`close`) or
    an open :class:`memrepl.Store` (a ``Node``'s ``node.store``, say; the caller closes it).
    ``index`` is LangGraph's ``IndexConfig`` (``dims``, ``embed``, ``fields``); ``ttl`` its
    ``TTLConfig``. ``tier`` is the memrepl tier the items live in (episodic by default);
    ``priority`` the replication priority of puts (NORMAL: the next background round; HIGH:
    within about a second; URGENT: at once). ``search_mode`` is how a query is searched:
    ``"vector"`` (the default with an index), ``"hybrid"`` (vector and keyword by reciprocal
    rank fusion) or ``"keyword"`` (the default without). ``embedder_name`` names the model for
    the vector index (vectors of another name are embedded again).
    """

    supports_ttl: bool = True

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        *,
        node_id: str | None = None,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        tier: MemoryTier | int = MemoryTier.EPISODIC,
        priority: SyncPriority = SyncPriority.NORMAL,
        search_mode: str | None = None,
        index_wait_s: float = DEFAULT_INDEX_WAIT_S,
        embedder_name: str | None = None,
    ) -> None:
        self._sweeper: threading.Thread | None = None
        self._sweep_stop = threading.Event()
        self._owns_store = False
        self.tier = resolve_tier(tier)
        self.priority = SyncPriority(priority)
        self.ttl_config = ttl
        self.index_wait_s = index_wait_s
        self.index_config: dict[str, Any] | None = dict(index) if index else None
        self.embeddings: Any = None
        self._embedder: LangChainEmbedder | None = None
        self._fields: tuple[str, ...] | None = None
        if self.index_config is not None:
            self._fields = _fields_of(self.index_config)
        self.search_mode = _search_mode(search_mode, self.index_config is not None)
        if isinstance(store, Store):
            if node_id is not None and node_id != store.node_id:
                raise StoreError(
                    f"MemreplStore: node_id {node_id!r} is not the store's ({store.node_id!r})"
                )
            self.store, self._owns_store = store, False
        else:
            if node_id is None:
                raise StoreError("MemreplStore: opening a store by path needs node_id=")
            self.store, self._owns_store = memrepl.open(store, node_id=node_id), True
        self._memory = self.store.tier(self.tier)
        try:
            if self.index_config is not None:
                self.embeddings = ensure_embeddings(self.index_config.get("embed"))
                self._embedder = LangChainEmbedder(
                    self.embeddings, _dims_of(self.index_config), embedder_name
                )
                self.store.attach_embedder(self._embedder, tiers=[self.tier])
        except BaseException:
            self.close()
            raise
        if ttl and ttl.get("sweep_interval_minutes"):
            self.start_ttl_sweeper()

    # -- the operations ---------------------------------------------------------------------

    def batch(self, ops_: Iterable[Op]) -> list[Result]:
        """Run LangGraph operations (see the module docstring for their order); one result per
        operation. Every operation is checked before any runs: LangGraph's
        ``InvalidNamespaceError`` for its namespace rules, memrepl's errors for the rest
        (:class:`~memrepl.errors.InvalidContentError` for a value that is not a JSON object,
        ...), and then nothing was written."""
        batch = list(ops_)
        for op in batch:
            ops.check_op(op)
        puts = ops.latest_puts([op for op in batch if isinstance(op, PutOp)])
        writes = [ops.put_write(op, fields=self._fields, priority=self.priority) for op in puts]
        if writes and len(puts) < len(batch):
            # Reads run first and count accesses: a put that would be refused fails now.
            for write in writes:
                _precheck(write)
        results: list[Result] = [None] * len(batch)
        self._run_gets(batch, results)
        for index, op in enumerate(batch):
            if isinstance(op, SearchOp):
                results[index] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[index] = self._list_namespaces(op)
        if writes:
            self._memory.write_many(writes)
        return results

    async def abatch(self, ops_: Iterable[Op]) -> list[Result]:
        """:meth:`batch` in a worker thread: the event loop never waits for the store (or for
        a model; an async-only one runs on this loop meanwhile)."""
        batch = list(ops_)
        if self._embedder is not None:
            self._embedder.use_loop(asyncio.get_running_loop())
        return await asyncio.to_thread(self.batch, batch)

    def _run_gets(self, batch: Sequence[Op], results: list[Result]) -> None:
        gets = [(index, op) for index, op in enumerate(batch) if isinstance(op, GetOp)]
        for refresh in (True, False):
            chosen = [(index, op) for index, op in gets if bool(op.refresh_ttl) is refresh]
            if not chosen:
                continue
            records = self._memory.get_many(
                [ops.item_id(op.namespace, op.key) for _, op in chosen], refresh_ttl=refresh
            )
            for (index, op), record in zip(chosen, records, strict=True):
                if (
                    record is not None
                    and record["namespace"] == tuple(op.namespace)
                    and record["key"] == str(op.key)
                ):
                    results[index] = ops.item_of(record)

    def _search(self, op: SearchOp) -> list[Any]:
        query = op.query if op.query and op.query.strip() else None
        mode = self.search_mode if query is not None else "keyword"
        hits = self.store.search(
            query,
            tiers=[self.tier],
            namespace=tuple(op.namespace_prefix),
            filter=ops.flat_filter(op.filter),
            limit=op.limit,
            offset=op.offset,
            mode=mode,
            wait_s=self.index_wait_s if mode != "keyword" else None,
        )
        if op.refresh_ttl:
            expiring = [hit.item_id for hit in hits if hit.extras.get("expires_at_ns") is not None]
            if expiring:
                self._memory.refresh_ttl(expiring)
        return [ops.search_item_of(hit) for hit in hits]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        options, rest = ops.list_options(op)
        found = self.store.list_namespaces(tiers=[self.tier], **options)
        return ops.kept_namespaces(found, rest, op)

    # -- TTL --------------------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Forget the expired items now (those that have replicated); how many."""
        return len(self._memory.expire())

    def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> concurrent.futures.Future[None]:
        """Sweep every ``sweep_interval_minutes`` (default: the ``TTLConfig``'s, else 5) in a
        daemon thread until :meth:`stop_ttl_sweeper` or :meth:`close`; a future done when it
        stops (cancelling it stops it)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._sweeper is not None and self._sweeper.is_alive():
            done.add_done_callback(lambda f: self._sweep_stop.set() if f.cancelled() else None)
            return done
        configured = (self.ttl_config or {}).get("sweep_interval_minutes")
        interval_s = 60.0 * float(sweep_interval_minutes or configured or 5)
        self._sweep_stop.clear()

        def run() -> None:
            while not self._sweep_stop.wait(interval_s):
                try:
                    swept = self.sweep_ttl()
                    if swept:
                        log.info("swept %d expired items", swept)
                except Exception:  # a busy or closed store: tried again next time
                    log.exception("TTL sweep failed")
            if not done.done():
                done.set_result(None)

        self._sweeper = threading.Thread(target=run, name="memrepl-ttl-sweeper", daemon=True)
        self._sweeper.start()
        done.add_done_callback(lambda f: self._sweep_stop.set() if f.cancelled() else None)
        return done

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread; whether it stopped within ``timeout`` seconds."""
        sweeper = self._sweeper
        if sweeper is None or not sweeper.is_alive():
            return True
        self._sweep_stop.set()
        sweeper.join(timeout)
        return not sweeper.is_alive()

    # -- what LangGraph's stores do not have --------------------------------------------------

    def sync_status(self) -> SyncStatus:
        """Where replication of this store's tier stands: what it holds, and per known peer
        what the peer acknowledged and lacks (the same figures as ``memrepl status``)."""
        return read_status(self.store, self.tier)

    def conflicts(
        self, namespace: Sequence[str] = (), key: str | None = None
    ) -> list[ConflictEntry]:
        """The conflict log of the items under ``namespace`` (a prefix; ``()``: all), or of the
        one ``key`` in it: each concurrent write this node detected, oldest first, with both
        versions and the value kept."""
        namespace = ops.check_labels(namespace)
        ids = None if key is None else [ops.item_id(namespace, key)]
        return read_conflicts(self.store, self.tier, namespace, ids)

    # -- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the TTL sweeper; close the memrepl store if this object opened it."""
        self.stop_ttl_sweeper(timeout=30)
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> MemreplStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _precheck(write: memrepl.LocalWrite) -> None:
    """Refuse now what the write of ``write`` would refuse (content, filing options)."""
    if write.content is not None:
        check_content(write.content, write.item_id)
    try:
        check_options(write.embed, write.expire_after_s)
    except FilingOptionsError as exc:
        raise FilingOptionsError(f"item {write.item_id!r}: {exc}", item_id=write.item_id) from exc


def _fields_of(config: dict[str, Any]) -> tuple[str, ...]:
    fields = config.get("fields", config.get("text_fields"))
    if fields is None:
        return DEFAULT_FIELDS
    if isinstance(fields, str):
        return (fields,)
    return tuple(fields)


def _dims_of(config: dict[str, Any]) -> int:
    dims = config.get("dims")
    if not isinstance(dims, int) or isinstance(dims, bool):
        raise memrepl.EmbedderError(
            f"an IndexConfig needs dims, a positive int, not {dims!r}", reason="dims"
        )
    return dims


def _search_mode(mode: str | None, indexed: bool) -> str:
    if mode is None:
        return "vector" if indexed else "keyword"
    if mode not in SEARCH_MODES or (mode != "keyword" and not indexed):
        raise memrepl.RecallError(
            f"search_mode {mode!r}: use one of {SEARCH_MODES} ('vector' and 'hybrid' need an "
            "IndexConfig)"
        )
    return mode
