"""Search over the tiers, as functions over a ``Connection``: what a hit is, and how it ranks.

One request (:class:`SearchRequest`) is checked once, then run on each tier asked for in ONE
read transaction, so every tier answers from the same snapshot.

- ``query`` given, mode ``"keyword"``: the tier's FTS5 index (:mod:`.keyword`), BM25; a hit's
  ``score`` is ``-bm25`` (higher is better).
- mode ``"vector"``: cosine similarity of the query's embedding with each item's
  (:mod:`.vector_index`); ``score`` in [-1, 1].
- mode ``"hybrid"``: both lists fused by reciprocal rank: ``score = sum(1 / (60 + rank))``
  over the lists an item is in (rank from 1), so an item near the top of both wins and the two
  scales (BM25, cosine) never need to agree.
- no query (None or blank): the items that match ``namespace`` and ``filter``, most recently
  changed first (``modified_at``), ``score`` None.

Always: only live items (no tombstones, nothing expired: :mod:`.expiry`), under ``namespace``
(a prefix: ``("users",)`` also finds ``("users", "alice")``), matching ``filter``
(:mod:`.filters`); then ``offset`` and ``limit``. Searching never counts an access and never
writes. Across tiers, hits are ordered by score (most recent first without a query).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from memrepl.errors import RecallError
from memrepl.namespaces import Namespace, check_namespace, prefix_bounds
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import driver, keyword, keyword_topk
from memrepl.storage.backends import backend_of
from memrepl.storage.driver import compile_statement
from memrepl.storage.expiry import any_expiring
from memrepl.storage.filters import check_filter, filter_condition
from memrepl.storage.records import StoredItem, item_from_values
from memrepl.storage.schema import TierSpec

if TYPE_CHECKING:
    from memrepl.storage.semantic import GraphView

#: Search modes; "auto" is "hybrid" with an embedder attached, "keyword" without.
MODES = ("auto", "keyword", "vector", "hybrid")
#: Reciprocal rank fusion's constant (the usual 60: it damps the weight of the very top ranks).
RRF_K = 60
#: How many candidates each list contributes to a hybrid ranking, at least.
HYBRID_CANDIDATES = 50


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the item as it is now, and why it was found."""

    tier: MemoryTier
    item_id: str
    namespace: Namespace
    #: The key of a keyed id (:func:`memrepl.keyed_id`), None otherwise.
    key: str | None
    content: dict[str, Any]
    #: Higher is better (see the module docstring); None without a query, and for graph
    #: neighbours (``depth`` > 0).
    score: float | None
    #: The latest write's stamp and node (LWW order): "updated at".
    timestamp_ns: int
    origin_node: str
    #: When this node first stored the item: "created at".
    created_at_ns: int
    modified_at: int
    #: The tier's own columns (working: ``pinned``, ``expires_at_ns``; episodic: ``episode_id``...).
    extras: Mapping[str, Any] = field(default_factory=dict)
    #: 0 for a match; n for a concept n edges from one (graph-aware recall, ``expand``).
    depth: int = 0
    #: For a neighbour: the matching concept it was reached from.
    via: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResults(Sequence[Hit]):
    """The hits, best first (a sequence), and how far behind the vector index was."""

    hits: list[Hit]
    #: Per tier searched by vector: changes the vector index had not embedded yet (0: up to
    #: date). Empty for keyword-only searches.
    pending: dict[MemoryTier, int] = field(default_factory=dict)
    #: Graph-aware recall (semantic tier, ``expand`` > 0): the matching concepts, their
    #: neighbourhood, and the edges among them.
    graph: GraphView | None = None

    @overload
    def __getitem__(self, index: int) -> Hit: ...
    @overload
    def __getitem__(self, index: slice) -> list[Hit]: ...
    def __getitem__(self, index: int | slice) -> Hit | list[Hit]:
        return self.hits[index]

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A checked search: build it with :func:`request`."""

    query: str | None
    #: The FTS5 expression of ``query`` (None: no word to look for).
    match: str | None
    namespace: Namespace
    filter: Mapping[str, Any] | None
    limit: int
    offset: int
    mode: str
    #: The query's unit vector (vector and hybrid modes), computed before the transaction.
    vector: Any = None

    @property
    def wanted(self) -> int:
        """How many hits each tier must find for ``offset`` + ``limit`` to be right."""
        return self.offset + self.limit


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def request(
    query: str | None,
    *,
    namespace: Sequence[str] | None,
    filter: Mapping[str, Any] | None,
    limit: int,
    offset: int,
    mode: str,
    syntax: str,
    has_embedder: bool,
) -> SearchRequest:
    """Check a search's arguments (before any query runs); the mode resolved.

    Raises :class:`~memrepl.errors.InvalidNamespaceError`,
    :class:`~memrepl.errors.InvalidFilterError`, :class:`~memrepl.errors.InvalidQueryError` or
    :class:`~memrepl.errors.RecallError` (limit, offset, mode, a vector mode without an
    embedder).
    """
    checked_namespace = check_namespace(() if namespace is None else namespace)
    checked_filter = check_filter(filter)
    if not _is_count(limit) or not _is_count(offset):
        raise RecallError(f"limit and offset must be non-negative ints, not {limit!r}, {offset!r}")
    if mode not in MODES:
        raise RecallError(f"unknown search mode {mode!r} (use one of {MODES})")
    if mode == "auto":
        mode = "hybrid" if has_embedder else "keyword"
    elif mode != "keyword" and not has_embedder:
        raise RecallError(
            f"a {mode} search needs an embedder: attach one with store.attach_embedder(...)"
        )
    match = None
    if query is not None:
        match = keyword.match_expression(query, syntax)
        if not query.strip():
            query = None
    return SearchRequest(query, match, checked_namespace, checked_filter, limit, offset, mode)


def namespace_condition(spec: TierSpec, prefix: Namespace) -> ColumnElement[bool] | None:
    """Rows whose namespace is ``prefix`` or under it: an index range (None for ``()``)."""
    if not prefix:
        return None
    column = spec.table.c.namespace
    exact, low, high = prefix_bounds(prefix)
    return and_(column >= exact, column < high, or_(column == exact, column >= low))


def row_conditions(
    spec: TierSpec, req: SearchRequest, now_ns: int | None
) -> list[ColumnElement[bool]]:
    """What a row must satisfy besides the query: namespace, filter, not expired at ``now_ns``
    (None: no row of the tier has a deadline, :func:`search_tier` checked)."""
    table = spec.table
    found: list[ColumnElement[bool]] = []
    under = namespace_condition(spec, req.namespace)
    if under is not None:
        found.append(under)
    if req.filter:
        found.append(filter_condition(req.filter, table.c.content))
    if now_ns is not None:
        expires = table.c.expires_at_ns
        found.append(or_(expires.is_(None), expires > now_ns))
    return found


def hit_of(spec: TierSpec, item: StoredItem, score: float | None) -> Hit:
    """The hit for a row just read (its content is the hit's own)."""
    version = item.state.version
    placement = item.state.placement
    return Hit(
        spec.tier,
        item.item_id,
        placement.namespace,
        placement.key or None,
        dict(item.state.content),
        score,
        version.timestamp_ns,
        version.origin,
        item.created_at_ns,
        item.modified_at,
        dict(item.extras),
    )


@lru_cache(maxsize=64)
def _load_by_rowid_sql(table: Table, count: int, backend: str) -> str:
    """``SELECT <every column> ... WHERE <the index's rowid column> IN (count values)``."""
    column = table.c[keyword.ROWID_COLUMN]
    rowids: BindParameter[list[int]] = bindparam(
        "rowids", value=[0] * count, type_=column.type, expanding=True
    )
    query = select(table).where(column.in_(rowids))
    return compile_statement(query, backend, render_postcompile=True).sql


def load_by_rowid(conn: Connection, spec: TierSpec, rowids: Sequence[int]) -> dict[int, StoredItem]:
    """The rows the keyword index's ``rowids`` stand for (:data:`.keyword.ROWID_COLUMN`), by
    rowid."""
    found: dict[int, StoredItem] = {}
    for start in range(0, len(rowids), 500):
        chunk = list(rowids[start : start + 500])
        sql = _load_by_rowid_sql(spec.table, len(chunk), conn.dialect.name)
        for row in driver.execute(conn, sql, chunk):
            item = item_from_values(spec, row)
            found[item.created_at_ns] = item
    return found


def keyword_ranked(
    conn: Connection, spec: TierSpec, req: SearchRequest, now_ns: int | None, count: int
) -> list[tuple[StoredItem, float]]:
    """The best ``count`` live items for ``req.match`` with their BM25 score (higher better):
    an OR of words (plain words) by :mod:`.keyword_topk`, any other FTS5 query ranked whole."""
    if req.match is None or count == 0:
        return []
    conditions = row_conditions(spec, req, now_ns)
    other = backend_of(conn).keyword_index
    phrases = keyword_topk.phrases_of(req.match)
    if other is not None:
        # PostgreSQL's full-text index (memrepl.storage.backends.postgresql_search).
        ranked = other.ranked(conn, spec, req.match, conditions, count)
    elif phrases is None:
        ranked = keyword_topk.whole(conn, spec, req.match, conditions, count)
    else:
        ranked = keyword_topk.ranked(conn, spec, phrases, conditions, count)
    rows = load_by_rowid(conn, spec, [rowid for rowid, _ in ranked])
    # Same transaction as the index: every ranked rowid is a live row of the tier.
    return [(rows[rowid], score) for rowid, score in ranked if rowid in rows]


def recent(
    conn: Connection, spec: TierSpec, req: SearchRequest, now_ns: int | None, count: int
) -> list[StoredItem]:
    """The ``count`` most recently changed live items under ``req``'s namespace and filter."""
    table = spec.table
    query = (
        select(table)
        .where(table.c.deleted.is_(False), *row_conditions(spec, req, now_ns))
        .order_by(table.c.modified_at.desc())
        .limit(count)
    )
    return [item_from_values(spec, tuple(row)) for row in conn.execute(query)]


#: How a tier's vector candidates are found (the vector index's job): ``(conn, spec, request,
#: now_ns, count)`` to ``[(item, cosine)]``, best first (``now_ns``: see :func:`row_conditions`).
VectorRanker = Callable[
    [Connection, TierSpec, SearchRequest, int | None, int], list[tuple[StoredItem, float]]
]


def fuse(*lists: Sequence[tuple[StoredItem, float]]) -> list[tuple[StoredItem, float]]:
    """Reciprocal rank fusion of ranked lists: ``sum(1 / (RRF_K + rank))`` per item."""
    scores: dict[str, float] = {}
    items: dict[str, StoredItem] = {}
    for ranked in lists:
        for rank, (item, _) in enumerate(ranked, start=1):
            scores[item.item_id] = scores.get(item.item_id, 0.0) + 1.0 / (RRF_K + rank)
            items[item.item_id] = item
    order = sorted(scores, key=lambda item_id: (-scores[item_id], item_id))
    return [(items[item_id], scores[item_id]) for item_id in order]


def search_tier(
    conn: Connection,
    spec: TierSpec,
    req: SearchRequest,
    now_ns: int | None,
    vectors: VectorRanker | None = None,
) -> list[Hit]:
    """The best ``req.offset + req.limit`` hits of one tier, best first (not yet cut)."""
    count = req.wanted
    if not any_expiring(conn, spec):
        # No row has a deadline: the queries leave the expiry condition (and its join) out.
        now_ns = None
    if req.query is None:
        return [hit_of(spec, item, None) for item in recent(conn, spec, req, now_ns, count)]
    if req.mode == "keyword":
        ranked = keyword_ranked(conn, spec, req, now_ns, count)
    else:
        assert vectors is not None, "a vector mode needs the vector index"
        if req.mode == "vector":
            ranked = vectors(conn, spec, req, now_ns, count)
        else:
            pool = max(count, HYBRID_CANDIDATES)
            ranked = fuse(
                keyword_ranked(conn, spec, req, now_ns, pool),
                vectors(conn, spec, req, now_ns, pool),
            )[:count]
    return [hit_of(spec, item, score) for item, score in ranked]


def merge_tiers(per_tier: Sequence[list[Hit]], req: SearchRequest) -> list[Hit]:
    """One ranking of several tiers' hits, cut by ``offset`` and ``limit``."""
    hits = [hit for hits in per_tier for hit in hits]
    if req.query is None:
        hits.sort(key=lambda hit: -hit.modified_at)
    else:
        hits.sort(key=lambda hit: (-(hit.score or 0.0), hit.tier, hit.item_id))
    return hits[req.offset : req.offset + req.limit]
