"""The semantic tier (L3) objects, sync and asyncio: the seed's tier interface plus the graph,
and graph-aware recall (``search(..., expand=1)``).

Both keep a :class:`~memrepl.storage.semantic.SemanticGraph` (a networkx ``MultiDiGraph``) equal
to the ``semantic_items`` table: loaded when the store opens, then followed by every committed
write and applied batch through the ``_after_commit`` hook. What they share -- the hook and
every graph query, which read memory only -- is written once in :class:`_GraphQueries`; the
asyncio twin differs only where the database is touched (``reload_graph``, ``add_concept``,
``add_relation`` are coroutines there). The graph queries are plain methods on both: they do no
I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Connection

from memrepl.errors import RecallError
from memrepl.namespaces import is_under
from memrepl.protocol.enums import SyncPriority
from memrepl.storage import semantic
from memrepl.storage.items import load_items
from memrepl.storage.records import Record, StoredItem
from memrepl.storage.schema import SEMANTIC, TierSpec
from memrepl.storage.search import Hit, SearchResults, hit_of
from memrepl.storage.tiers import AsyncTier, Tier, _TierBase


class _GraphQueries(_TierBase):
    """The graph a semantic tier keeps, and the queries answered from it."""

    default_spec = SEMANTIC
    _graph_state: semantic.SemanticGraph

    def _after_commit(self, changed: Sequence[StoredItem]) -> None:
        self._graph_state.apply_all(changed)

    @property
    def graph(self) -> Any:
        """The live ``networkx.MultiDiGraph`` (read it, copy it; never change it)."""
        return self._graph_state.graph

    def concept(self, concept_id: str) -> dict[str, Any] | None:
        """The content of the concept in the graph (a copy), or None."""
        return self._graph_state.concept(concept_id)

    def neighbors(self, concept_id: str, direction: str = "both") -> list[str]:
        """See :meth:`~.semantic.SemanticGraph.neighbors`."""
        return self._graph_state.neighbors(concept_id, direction)

    def shortest_path(self, source: str, target: str, *, directed: bool = True) -> list[str] | None:
        """See :meth:`~.semantic.SemanticGraph.shortest_path`."""
        return self._graph_state.shortest_path(source, target, directed=directed)

    def subgraph(self, concept_ids: Iterable[str]) -> semantic.GraphView:
        """See :meth:`~.semantic.SemanticGraph.subgraph`."""
        return self._graph_state.subgraph(concept_ids)

    def pending_relations(self) -> list[str]:
        """Live relations kept out of the graph (an endpoint missing or deleted)."""
        return self._graph_state.pending_relations()


def _check_expand(expand: object) -> int:
    if isinstance(expand, bool) or not isinstance(expand, int) or expand < 0:
        raise RecallError(f"expand must be a non-negative int (graph depth), not {expand!r}")
    return expand


def expand_op(
    conn: Connection,
    spec: TierSpec,
    graph: semantic.SemanticGraph,
    results: SearchResults,
    *,
    depth: int,
    namespace: Sequence[str],
) -> SearchResults:
    """Graph-aware recall: the matches of a semantic search, then the concepts within ``depth``
    edges of them (either direction), and the graph of all of those.

    Seeds are the matching concepts, and the two ends of each matching relation (an end that
    is not itself a match comes first among the neighbours, at distance 1, via the relation).
    Neighbours are live concepts under the search's ``namespace`` (the filter is not applied to
    them: they are context, not matches), ordered by distance, then by their seed's rank; their
    hits have ``score`` None, ``depth`` their distance and ``via`` the seed (or relation) that
    led to them. ``results.graph`` holds the concepts among the hits and the edges between
    them. The search's ``limit`` counts matches only.
    """
    seeds: list[str] = []
    ends: dict[str, tuple[int, str]] = {}
    matched = {hit.item_id for hit in results}
    for hit in results:
        kind = hit.extras.get("kind")
        if kind == "concept":
            seeds.append(hit.item_id)
        elif kind == "relation":
            for end in (hit.extras.get("source_id"), hit.extras.get("target_id")):
                if isinstance(end, str):
                    seeds.append(end)
                    if end not in matched:
                        ends.setdefault(end, (1, hit.item_id))
    around = {
        **ends,
        **{k: v for k, v in graph.neighbourhood(seeds, depth).items() if k not in ends},
    }
    around = {k: v for k, v in around.items() if k not in matched and graph.concept(k) is not None}
    rows = load_items(conn, spec, around)
    neighbours: list[Hit] = []
    for item_id, (distance, via) in around.items():
        item = rows.get(item_id)
        if (
            item is None
            or item.deleted
            or not is_under(item.state.placement.namespace, tuple(namespace))
        ):
            continue
        neighbours.append(replace(hit_of(spec, item, None), depth=distance, via=via))
    order = {hit.item_id: rank for rank, hit in enumerate(results)}
    neighbours.sort(key=lambda hit: (hit.depth, order.get(hit.via or "", len(order)), hit.item_id))
    hits = [*results.hits, *neighbours]
    view = graph.subgraph(hit.item_id for hit in hits)
    return SearchResults(hits, results.pending, view)


def _concept_write(
    name: str, concept_type: str, attributes: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    return semantic.concept_id(name, concept_type), semantic.concept_content(
        name, concept_type, attributes
    )


def _relation_write(
    source_id: str, relation: str, target_id: str, attributes: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    content = semantic.relation_content(source_id, relation, target_id, attributes)
    return semantic.relation_id(source_id, relation, target_id), content


class SemanticMemory(_GraphQueries, Tier):
    """L3: concepts and relations of a knowledge graph, mirrored in a networkx ``MultiDiGraph``
    kept equal to the table after every committed write and applied batch (:mod:`~.semantic`)."""

    def _setup(self, store: Any) -> None:
        super()._setup(store)
        self._graph_state = semantic.SemanticGraph()
        self.reload_graph()

    def reload_graph(self) -> None:
        """Rebuild the graph from the table (after another process wrote the file)."""
        with self._store.read() as conn:
            self._graph_state.load(conn, self.spec)

    def search(self, query: str | None = None, *, expand: int = 0, **options: Any) -> SearchResults:
        """:meth:`Tier.search`, and with ``expand`` > 0 graph-aware recall: the matching concepts
        with their neighbourhood to that depth (:func:`expand_op`)."""
        depth = _check_expand(expand)
        results = super().search(query, **options)
        if not depth:
            return results
        with self._store.read() as conn:
            return expand_op(
                conn,
                self.spec,
                self._graph_state,
                results,
                depth=depth,
                namespace=options.get("namespace") or (),
            )

    def add_concept(
        self,
        name: str,
        concept_type: str = "concept",
        *,
        priority: SyncPriority | None = None,
        **attributes: Any,
    ) -> Record:
        """Add (or merge into) the concept ``name``; its id is ``concept_id(name, type)``."""
        item_id, content = _concept_write(name, concept_type, attributes)
        return self.merge(item_id, content, priority=priority)

    def add_relation(
        self,
        source_id: str,
        relation: str,
        target_id: str,
        *,
        priority: SyncPriority | None = None,
        **attributes: Any,
    ) -> Record:
        """Add (or merge into) a relation; its id is ``relation_id(source, relation, target)``.
        Stored even if an endpoint is missing: its edge appears once the endpoint exists."""
        item_id, content = _relation_write(source_id, relation, target_id, attributes)
        return self.merge(item_id, content, priority=priority)


class AsyncSemanticMemory(_GraphQueries, AsyncTier):
    """The asyncio twin of :class:`SemanticMemory`: the same graph, loaded by
    ``memrepl.aio.open`` (``await reload_graph()`` rebuilds it)."""

    def _setup(self, store: Any) -> None:
        super()._setup(store)
        # Empty until the store's opening awaits reload_graph(): loading reads the database.
        self._graph_state = semantic.SemanticGraph()

    async def reload_graph(self) -> None:
        """See :meth:`SemanticMemory.reload_graph`."""
        async with self._store.read() as conn:
            await conn.run_sync(self._graph_state.load, self.spec)

    async def search(
        self, query: str | None = None, *, expand: int = 0, **options: Any
    ) -> SearchResults:
        """See :meth:`SemanticMemory.search`."""
        depth = _check_expand(expand)
        results = await super().search(query, **options)
        if not depth:
            return results
        async with self._store.read() as conn:
            return await conn.run_sync(
                expand_op,
                self.spec,
                self._graph_state,
                results,
                depth=depth,
                namespace=options.get("namespace") or (),
            )

    async def add_concept(
        self,
        name: str,
        concept_type: str = "concept",
        *,
        priority: SyncPriority | None = None,
        **attributes: Any,
    ) -> Record:
        """See :meth:`SemanticMemory.add_concept`."""
        item_id, content = _concept_write(name, concept_type, attributes)
        return await self.merge(item_id, content, priority=priority)

    async def add_relation(
        self,
        source_id: str,
        relation: str,
        target_id: str,
        *,
        priority: SyncPriority | None = None,
        **attributes: Any,
    ) -> Record:
        """See :meth:`SemanticMemory.add_relation`."""
        item_id, content = _relation_write(source_id, relation, target_id, attributes)
        return await self.merge(item_id, content, priority=priority)
