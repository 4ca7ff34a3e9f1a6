"""The semantic tier (L3) objects, sync and asyncio: the seed's tier interface plus the graph.

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
from typing import Any

from memrepl.protocol.enums import SyncPriority
from memrepl.storage import semantic
from memrepl.storage.records import Record, StoredItem
from memrepl.storage.schema import SEMANTIC
from memrepl.storage.tiers import AsyncTier, Tier, _TierBase

_NORMAL = SyncPriority.NORMAL


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

    def add_concept(
        self,
        name: str,
        concept_type: str = "concept",
        *,
        priority: SyncPriority = _NORMAL,
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
        priority: SyncPriority = _NORMAL,
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

    async def add_concept(
        self,
        name: str,
        concept_type: str = "concept",
        *,
        priority: SyncPriority = _NORMAL,
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
        priority: SyncPriority = _NORMAL,
        **attributes: Any,
    ) -> Record:
        """See :meth:`SemanticMemory.add_relation`."""
        item_id, content = _relation_write(source_id, relation, target_id, attributes)
        return await self.merge(item_id, content, priority=priority)
