"""Recall methods of stores and tiers, sync and asyncio: search, namespaces, indexes, embedders.

The rule that keeps it right: like the tier methods (:mod:`memrepl.storage.tiers`), a method here
holds no logic. Each checks its arguments once (:func:`memrepl.storage.search.request`), embeds
the query if the mode needs it (outside any transaction), then runs ONE function over a
``Connection`` in one transaction: directly in :class:`RecallMethods` (mixed into ``Store``) and
:class:`TierRecallMethods` (into ``Tier``), through ``AsyncConnection.run_sync`` in their
``Async`` twins. A search reads; a rebuild writes; the vector indexer runs beside
(:mod:`memrepl.storage.indexer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from memrepl.errors import RecallError
from memrepl.namespaces import Namespace
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import keyword, vector_index
from memrepl.storage.indexer import DEFAULT_POLL_S, AsyncIndexer, ThreadIndexer
from memrepl.storage.listing import list_namespaces
from memrepl.storage.search import (
    SearchRequest,
    SearchResults,
    merge_tiers,
    request,
    search_tier,
)
from memrepl.storage.vector_index import DEFAULT_BATCH_ITEMS, VectorIndex

if TYPE_CHECKING:
    from memrepl.storage.embedders import Embedder
    from memrepl.storage.node import ClockSettings
    from memrepl.storage.schema import TierSpec
    from memrepl.storage.tiers import _TierBase

#: The defaults of every search (one place, for the sync and asyncio twins and the tiers).
SEARCH_DEFAULTS: dict[str, Any] = {
    "namespace": None,
    "filter": None,
    "limit": 10,
    "offset": 0,
    "mode": "auto",
    "syntax": "words",
    "wait_s": None,
}


def _specs(
    store: RecallMethods | AsyncRecallMethods, tiers: Iterable[MemoryTier | int] | None
) -> list[TierSpec]:
    chosen = list(MemoryTier) if tiers is None else list(dict.fromkeys(tiers))
    return [store.tier(tier).spec for tier in chosen]


def _list_op(conn: Connection, specs: list[TierSpec], options: dict[str, Any]) -> list[Namespace]:
    return list_namespaces(conn, specs, **options)


def _search_op(
    conn: Connection,
    specs: list[TierSpec],
    req: SearchRequest,
    now_ns: int,
    index: VectorIndex | None,
) -> SearchResults:
    ranker = index.ranker() if index is not None and req.vector is not None else None
    per_tier = [search_tier(conn, spec, req, now_ns, ranker) for spec in specs]
    pending: dict[MemoryTier, int] = {}
    if ranker is not None and index is not None:
        for spec in specs:
            cursor = vector_index.cursor_of(conn, spec.tier, index.name, index.dims)
            pending[spec.tier] = vector_index.pending(conn, spec, cursor)
    return SearchResults(merge_tiers(per_tier, req), pending)


def _rebuild_op(conn: Connection, specs: list[TierSpec]) -> dict[MemoryTier, int]:
    return {spec.tier: keyword.rebuild(conn, spec) for spec in specs}


def _prepare_op(conn: Connection, specs: list[TierSpec], index: VectorIndex, now_ns: int) -> None:
    for spec in specs:
        vector_index.prepare(conn, spec.tier, index.name, index.dims, now_ns)


def _request(
    store: RecallMethods | AsyncRecallMethods, query: str | None, options: dict[str, Any]
) -> SearchRequest:
    unknown = sorted(set(options) - set(SEARCH_DEFAULTS))
    if unknown:
        raise RecallError(f"unknown search options {unknown} (known: {sorted(SEARCH_DEFAULTS)})")
    options = {**SEARCH_DEFAULTS, **options}
    options.pop("wait_s")
    indexer = store._indexer
    return request(query, **options, has_embedder=indexer is not None)


def _wants_vectors(req: SearchRequest) -> bool:
    return req.query is not None and req.mode in ("vector", "hybrid")


class RecallMethods:
    """``Store``'s recall methods."""

    if TYPE_CHECKING:  # what they use of the store
        clock_settings: ClockSettings
        _indexer: ThreadIndexer | AsyncIndexer | None

        def read(self) -> AbstractContextManager[Connection]: ...

        def write(self) -> AbstractContextManager[Connection]: ...

        def tier(self, tier: MemoryTier | int) -> _TierBase: ...

    def search(
        self,
        query: str | None = None,
        *,
        tiers: Iterable[MemoryTier | int] | None = None,
        **options: Any,
    ) -> SearchResults:
        """Search the tiers (default: all three) and rank their hits together, best first.

        Options (all keyword): ``namespace`` (a prefix: ``("users",)`` finds
        ``("users", "alice")``), ``filter`` (content fields, :mod:`memrepl.storage.filters`),
        ``limit`` (10), ``offset`` (0), ``mode`` (``"auto"``: hybrid with an embedder attached,
        keyword without; or ``"keyword"``, ``"vector"``, ``"hybrid"``), ``syntax`` (``"words"``,
        or ``"fts5"`` for FTS5 query syntax), ``wait_s`` (vector modes: first wait up to this
        long for the vector index to embed every change committed so far). See
        :mod:`memrepl.storage.search` for scores. The results' ``pending`` says, per tier, how
        many changes the vector index had not embedded. Raises a
        :class:`~memrepl.errors.RecallError` subclass for bad arguments, before reading, and
        the embedder's :class:`~memrepl.errors.EmbedderError` if it fails on the query.
        """
        req = _request(self, query, options)
        specs = _specs(self, tiers)
        index = None
        if _wants_vectors(req):
            indexer = self._indexer
            assert isinstance(indexer, ThreadIndexer)
            index = indexer.index
            wait_s = options.get("wait_s")
            if wait_s is not None:
                indexer.wait(wait_s)
            req = replace(req, vector=index.embed_query(req.query or ""))
        with self.read() as conn:
            return _search_op(conn, specs, req, self.clock_settings.wall(), index)

    def list_namespaces(
        self,
        prefix: Sequence[str] = (),
        *,
        suffix: Sequence[str] | None = None,
        max_depth: int | None = None,
        limit: int | None = 100,
        offset: int = 0,
        tiers: Iterable[MemoryTier | int] | None = None,
    ) -> list[Namespace]:
        """The namespaces that hold a live item, sorted (like LangGraph's ``list_namespaces``).

        ``prefix``/``suffix`` match whole parts (``"*"`` matches any one part); ``max_depth``
        cuts each namespace to its first parts; ``tiers`` limits the tiers looked at (default:
        all three). Raises :class:`~memrepl.errors.InvalidNamespaceError` for a bad argument.
        """
        options = _list_options(
            self, prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
        )
        with self.read() as conn:
            return _list_op(conn, _specs(self, tiers), options)

    def rebuild_indexes(
        self, tiers: Iterable[MemoryTier | int] | None = None
    ) -> dict[MemoryTier, int]:
        """Rebuild the keyword index of the tiers (default: all) from their rows, in one write
        transaction; how many live items each now indexes (``memrepl index rebuild``)."""
        with self.write() as conn:
            return _rebuild_op(conn, _specs(self, tiers))

    def attach_embedder(
        self,
        embedder: Embedder,
        *,
        tiers: Iterable[MemoryTier | int] | None = None,
        background: bool = True,
        batch_items: int = DEFAULT_BATCH_ITEMS,
        poll_s: float = DEFAULT_POLL_S,
    ) -> ThreadIndexer:
        """Give the store an embedder: vector and hybrid search, and the indexer that fills the
        vector index from each tier's change feed after commit (in a background thread unless
        ``background=False``; then :meth:`index_vectors` or a search's ``wait_s`` runs it).

        If the index was filled by another model (name or dimension), its vectors are dropped
        and it starts again. Raises :class:`~memrepl.errors.EmbedderError` for something that
        is not an embedder (no ``embed``, no positive ``dims``) or when numpy is missing.
        """
        index = VectorIndex(embedder, batch_items=batch_items)
        specs = _specs(self, tiers)
        with self.write() as conn:
            _prepare_op(conn, specs, index, self.clock_settings.wall())
        if isinstance(self._indexer, ThreadIndexer):
            self._indexer.close()
        indexer = ThreadIndexer(self, index, specs, poll_s)  # type: ignore[arg-type]
        self._indexer = indexer
        if background:
            indexer.start()
        return indexer

    def index_vectors(self) -> int:
        """Embed every change the vector index has not embedded yet, now, in this thread; how
        many items were embedded. Raises the embedder's :class:`~memrepl.errors.EmbedderError`
        (nothing of the failing step is written)."""
        indexer = self._indexer
        if not isinstance(indexer, ThreadIndexer):
            return 0
        return indexer.catch_up()


class AsyncRecallMethods:
    """``AsyncStore``'s recall methods: the same, as coroutines."""

    if TYPE_CHECKING:  # what they use of the store
        clock_settings: ClockSettings
        _indexer: ThreadIndexer | AsyncIndexer | None

        def read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def tier(self, tier: MemoryTier | int) -> _TierBase: ...

    async def search(
        self,
        query: str | None = None,
        *,
        tiers: Iterable[MemoryTier | int] | None = None,
        **options: Any,
    ) -> SearchResults:
        """See :meth:`RecallMethods.search`; the query is embedded in a worker thread."""
        import asyncio

        req = _request(self, query, options)
        specs = _specs(self, tiers)
        index = None
        if _wants_vectors(req):
            indexer = self._indexer
            assert isinstance(indexer, AsyncIndexer)
            index = indexer.index
            wait_s = options.get("wait_s")
            if wait_s is not None:
                await indexer.wait(wait_s)
            vector = await asyncio.to_thread(index.embed_query, req.query or "")
            req = replace(req, vector=vector)
        async with self.read() as conn:
            return await conn.run_sync(_search_op, specs, req, self.clock_settings.wall(), index)

    async def list_namespaces(
        self,
        prefix: Sequence[str] = (),
        *,
        suffix: Sequence[str] | None = None,
        max_depth: int | None = None,
        limit: int | None = 100,
        offset: int = 0,
        tiers: Iterable[MemoryTier | int] | None = None,
    ) -> list[Namespace]:
        """See :meth:`RecallMethods.list_namespaces`."""
        options = _list_options(
            self, prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
        )
        async with self.read() as conn:
            return await conn.run_sync(_list_op, _specs(self, tiers), options)

    async def rebuild_indexes(
        self, tiers: Iterable[MemoryTier | int] | None = None
    ) -> dict[MemoryTier, int]:
        """See :meth:`RecallMethods.rebuild_indexes`."""
        async with self.write() as conn:
            return await conn.run_sync(_rebuild_op, _specs(self, tiers))

    async def attach_embedder(
        self,
        embedder: Embedder,
        *,
        tiers: Iterable[MemoryTier | int] | None = None,
        background: bool = True,
        batch_items: int = DEFAULT_BATCH_ITEMS,
        poll_s: float = DEFAULT_POLL_S,
    ) -> AsyncIndexer:
        """See :meth:`RecallMethods.attach_embedder`; the indexer is a task of the running
        loop, and the model runs in a worker thread."""
        index = VectorIndex(embedder, batch_items=batch_items)
        specs = _specs(self, tiers)
        async with self.write() as conn:
            await conn.run_sync(_prepare_op, specs, index, self.clock_settings.wall())
        if isinstance(self._indexer, AsyncIndexer):
            await self._indexer.close()
        indexer = AsyncIndexer(self, index, specs, poll_s)  # type: ignore[arg-type]
        self._indexer = indexer
        if background:
            indexer.start()
        return indexer

    async def index_vectors(self) -> int:
        """See :meth:`RecallMethods.index_vectors`."""
        indexer = self._indexer
        if not isinstance(indexer, AsyncIndexer):
            return 0
        return await indexer.catch_up()


def _list_options(store: RecallMethods | AsyncRecallMethods, **options: object) -> dict[str, Any]:
    return {**options, "now_ns": store.clock_settings.wall()}


class TierRecallMethods:
    """A tier's search (mixed into ``Tier``): the store's, on this tier alone."""

    if TYPE_CHECKING:
        spec: TierSpec

        @property
        def store(self) -> RecallMethods: ...

    def search(self, query: str | None = None, **options: Any) -> SearchResults:
        """See :meth:`RecallMethods.search` (the same options; ``tiers``: this one)."""
        return self.store.search(query, tiers=[self.spec.tier], **options)


class AsyncTierRecallMethods:
    """The asyncio twin of :class:`TierRecallMethods` (mixed into ``AsyncTier``)."""

    if TYPE_CHECKING:
        spec: TierSpec

        @property
        def store(self) -> AsyncRecallMethods: ...

    async def search(self, query: str | None = None, **options: Any) -> SearchResults:
        """See :meth:`RecallMethods.search` (the same options; ``tiers``: this one)."""
        return await self.store.search(query, tiers=[self.spec.tier], **options)
