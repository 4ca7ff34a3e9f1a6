"""Semantic memory (L3): deterministic ids of concepts and relations, and the in-memory graph.

What this module owns (ARCHITECTURE.md, "The tiers"): :func:`concept_id` and :func:`relation_id`
(the same concept, or the same (source, relation, target), added on two nodes gets the same id,
so their writes merge instead of duplicating), the contents of concept and relation items, and
:class:`SemanticGraph`, the typed wrapper around the tier's ``networkx.MultiDiGraph`` (networkx
is untyped: nothing outside this module touches the graph object except to read or copy it).

The graph (the same definition as ``memrepl graph export``): every live item of kind ``concept``
is a node (id: the item id; attributes: its content); every live item of kind ``relation`` whose
``source`` and ``target`` are both live concepts is an edge keyed by the relation's item id
(attributes: its content without ``source``/``target``). Other items are not part of it.

The rule that keeps it right: **the graph is a pure function of the live rows.** The wrapper
keeps the live concepts and relations it has seen (``_concepts``, ``_relations``) and an index
of relations by endpoint; :meth:`SemanticGraph.apply` takes each changed item -- a committed
local write, an applied batch, a tombstone or a forgotten row -- and re-derives just the nodes and
edges it touches. A relation whose endpoint is missing or deleted stays in ``_relations``
(pending) and its edge appears once the endpoint exists. The tier feeds it from
``_after_commit``, so it follows every write made through this store; writes by another process
on the same file are seen after :meth:`SemanticGraph.load` (``SemanticMemory.reload_graph``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from sqlalchemy import select
from sqlalchemy.engine import Connection

from memrepl.errors import InvalidArgumentError, ItemError
from memrepl.storage.fastjson import decode_json
from memrepl.storage.records import StoredItem, item_from_row
from memrepl.storage.schema import SEMANTIC, TierSpec

#: Prefixes of the hashed keys; a new key layout needs a new version (ids would change).
CONCEPT_KEY_PREFIX = "memrepl/semantic/concept/v1"
RELATION_KEY_PREFIX = "memrepl/semantic/relation/v1"
#: Hex characters of an id: 32, the most an item id may carry (PROTOCOL.md section 2).
ID_HEX_CHARS = 32
#: Content keys a concept's attributes may not set.
CONCEPT_KEYS = frozenset({"kind", "name", "type"})
#: Content keys a relation's attributes may not set.
RELATION_KEYS = frozenset({"kind", "source", "target", "relation"})
#: Relation content keys that name the edge's ends (not edge attributes).
ENDPOINT_KEYS = frozenset({"source", "target"})


def _hashed_id(*parts: object) -> str:
    for part in parts:
        if not isinstance(part, str) or "\x00" in part:
            raise ItemError(f"semantic id parts must be str without NUL, not {part!r}")
    key = "\x00".join(parts)  # type: ignore[arg-type]
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def concept_id(name: str, concept_type: str = "concept") -> str:
    """The id of the concept ``name`` of ``concept_type``: 32 hex chars of a SHA-256."""
    return _hashed_id(CONCEPT_KEY_PREFIX, concept_type, name)


def relation_id(source_id: str, relation: str, target_id: str) -> str:
    """The id of the relation ``source_id -relation-> target_id``: 32 hex chars of a SHA-256."""
    return _hashed_id(RELATION_KEY_PREFIX, source_id, relation, target_id)


def _check_attributes(attributes: Mapping[str, Any], reserved: frozenset[str], what: str) -> None:
    clash = sorted(reserved.intersection(attributes))
    if clash:
        raise ItemError(f"{what}: attributes may not set {clash} (set by the tier)")


def concept_content(name: str, concept_type: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A concept item's content; ItemError if ``attributes`` set a reserved key."""
    _check_attributes(attributes, CONCEPT_KEYS, f"concept {name!r}")
    return {"kind": "concept", "name": name, "type": concept_type, **attributes}


def relation_content(
    source_id: str, relation: str, target_id: str, attributes: Mapping[str, Any]
) -> dict[str, Any]:
    """A relation item's content; ItemError if ``attributes`` set a reserved key."""
    _check_attributes(attributes, RELATION_KEYS, f"relation {relation!r}")
    return {
        "kind": "relation",
        "source": source_id,
        "target": target_id,
        "relation": relation,
        **attributes,
    }


@dataclass(frozen=True, slots=True)
class Edge:
    """One edge of the graph: a relation item between two live concepts."""

    key: str
    source: str
    target: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class GraphView:
    """Nodes (id -> attributes) and edges of (part of) the graph, as plain values."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Relation:
    source: str | None
    target: str | None
    attributes: dict[str, Any]


class SemanticGraph:
    """The tier's ``MultiDiGraph`` and what keeps it equal to the live rows (module docstring)."""

    def __init__(self) -> None:
        self.graph: Any = nx.MultiDiGraph()
        self._concepts: dict[str, dict[str, Any]] = {}
        self._relations: dict[str, _Relation] = {}
        #: Relation ids by endpoint concept id (live relations only).
        self._by_endpoint: dict[str, set[str]] = {}

    def _reset(self) -> None:
        # A fresh graph object: a caller holding the old one keeps a consistent (stale) copy.
        self.graph = nx.MultiDiGraph()
        self._concepts.clear()
        self._relations.clear()
        self._by_endpoint.clear()

    # -- keeping it right ---------------------------------------------------------------------

    def load(self, conn: Connection, spec: TierSpec = SEMANTIC) -> None:
        """Rebuild from the table (every live concept and relation)."""
        self._reset()
        table = spec.table
        rows = conn.execute(
            select(table).where(
                table.c.deleted.is_(False), table.c.kind.in_(("concept", "relation"))
            )
        ).mappings()
        self.apply_all(item_from_row(spec, row) for row in rows)

    def apply_all(self, items: Iterable[StoredItem]) -> None:
        """:meth:`apply` each item, in order."""
        for item in items:
            self.apply(item)

    def apply(self, item: StoredItem) -> None:
        """Follow one changed item (live, tombstone or forgotten) into the graph."""
        item_id = item.item_id
        kind = None if item.deleted else item.extras.get("kind")
        self._drop_relation(item_id)
        # The graph keeps its own copy of the content: the item's goes on to the writer's caller
        # (tiers hand records out without copying them).
        content = decode_json(item.encoded_content()) if kind else {}
        if kind == "relation":
            self._add_relation(item_id, item, content)
        if kind == "concept":
            self._set_concept(item_id, content)
        elif item_id in self._concepts:
            self._drop_concept(item_id)

    def _set_concept(self, item_id: str, content: dict[str, Any]) -> None:
        existed = item_id in self._concepts
        self._concepts[item_id] = content
        if existed:
            attributes = self.graph.nodes[item_id]
            attributes.clear()
            attributes.update(content)
            return
        self.graph.add_node(item_id, **content)
        for relation in sorted(self._by_endpoint.get(item_id, ())):
            self._place_edge(relation)

    def _drop_concept(self, item_id: str) -> None:
        del self._concepts[item_id]
        # Its edges leave with it; their relations stay pending in _relations.
        self.graph.remove_node(item_id)

    def _add_relation(self, item_id: str, item: StoredItem, content: dict[str, Any]) -> None:
        source, target = item.extras.get("source_id"), item.extras.get("target_id")
        attributes = {k: v for k, v in content.items() if k not in ENDPOINT_KEYS}
        self._relations[item_id] = _Relation(source, target, attributes)
        for end in {source, target} - {None}:
            self._by_endpoint.setdefault(str(end), set()).add(item_id)
        self._place_edge(item_id)

    def _drop_relation(self, item_id: str) -> None:
        relation = self._relations.pop(item_id, None)
        if relation is None:
            return
        for end in {relation.source, relation.target} - {None}:
            ids = self._by_endpoint.get(str(end))
            if ids is not None:
                ids.discard(item_id)
                if not ids:
                    del self._by_endpoint[str(end)]
        if self.graph.has_edge(relation.source, relation.target, key=item_id):
            self.graph.remove_edge(relation.source, relation.target, key=item_id)

    def _place_edge(self, item_id: str) -> None:
        relation = self._relations[item_id]
        source, target = relation.source, relation.target
        if (
            source in self._concepts
            and target in self._concepts
            and not self.graph.has_edge(source, target, key=item_id)
        ):
            self.graph.add_edge(source, target, key=item_id, **relation.attributes)

    # -- queries (plain values out) ---------------------------------------------------------

    def pending_relations(self) -> list[str]:
        """Live relations kept out of the graph because an endpoint is missing or deleted."""
        return sorted(
            item_id
            for item_id, relation in self._relations.items()
            if not self.graph.has_edge(relation.source, relation.target, key=item_id)
        )

    def concept(self, concept_id: str) -> dict[str, Any] | None:
        """A copy of the live concept's content, or None."""
        content = self._concepts.get(concept_id)
        return None if content is None else dict(content)

    def neighbors(self, concept_id: str, direction: str = "both") -> list[str]:
        """Concepts joined to ``concept_id`` by an edge: ``"out"`` (successors), ``"in"``
        (predecessors) or ``"both"``; sorted, [] if it is not in the graph."""
        if direction not in ("out", "in", "both"):
            raise InvalidArgumentError(
                f"neighbors: direction must be 'out', 'in' or 'both', not {direction!r}"
            )
        if concept_id not in self._concepts:
            return []
        found: set[str] = set()
        if direction in ("out", "both"):
            found.update(self.graph.successors(concept_id))
        if direction in ("in", "both"):
            found.update(self.graph.predecessors(concept_id))
        return sorted(found)

    def shortest_path(self, source: str, target: str, *, directed: bool = True) -> list[str] | None:
        """The concept ids of a shortest path (fewest edges), or None if there is none."""
        if source not in self._concepts or target not in self._concepts:
            return None
        graph = self.graph if directed else self.graph.to_undirected(as_view=True)
        try:
            path: list[str] = nx.shortest_path(graph, source, target)
        except nx.NetworkXNoPath:
            return None
        return list(path)

    def neighbourhood(self, seeds: Iterable[str], depth: int) -> dict[str, tuple[int, str]]:
        """Concepts within ``depth`` edges of the ``seeds`` (either direction), not the seeds:
        ``{concept id: (distance, the seed it was reached from)}``, breadth first, seeds in
        the order given (so the nearer, better-ranked seed names each neighbour)."""
        start = [seed for seed in dict.fromkeys(seeds) if seed in self._concepts]
        found: dict[str, tuple[int, str]] = {}
        seen = set(start)
        frontier = [(seed, seed) for seed in start]
        for distance in range(1, depth + 1):
            following = []
            for node, seed in frontier:
                around = sorted(
                    {*self.graph.successors(node), *self.graph.predecessors(node)} - seen
                )
                for neighbour in around:
                    seen.add(neighbour)
                    found[neighbour] = (distance, seed)
                    following.append((neighbour, seed))
            frontier = following
        return found

    def subgraph(self, concept_ids: Iterable[str]) -> GraphView:
        """The given concepts (those in the graph) and the edges among them."""
        wanted = [cid for cid in dict.fromkeys(concept_ids) if cid in self._concepts]
        return self._view(self.graph.subgraph(wanted))

    def view(self) -> GraphView:
        """The whole graph as plain values."""
        return self._view(self.graph)

    @staticmethod
    def _view(graph: Any) -> GraphView:
        nodes = {str(node): dict(attrs) for node, attrs in graph.nodes(data=True)}
        edges = [
            Edge(str(key), str(source), str(target), dict(attrs))
            for source, target, key, attrs in graph.edges(keys=True, data=True)
        ]
        edges.sort(key=lambda edge: edge.key)
        return GraphView(nodes, edges)
