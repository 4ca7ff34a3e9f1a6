"""The vector index: embeddings of each tier's items, filled from the change feed after commit.

What this module owns: the storage of vectors (``item_vectors``, ``vector_indexes``), one step
of the indexer (:func:`read_changes` then :func:`write_vectors`, with the model called between
the two, outside any transaction), the in-memory matrix a search scans (:class:`VectorCache`),
and the vector ranking a search uses (:meth:`VectorIndex.ranker`).

The rules that keep it right:

- **Writes never wait for a model.** The indexer follows a tier's change feed -- its
  ``modified_at`` cursor, as replication does -- from ``vector_indexes.cursor``; a step reads
  the next changes (their text is the keyword index's: every string value, by the same SQL
  expression), embeds them with no transaction open, then writes their vectors and the new
  cursor in one short write transaction, only if the cursor is still where it read it.
- **Derived and exact where it matters.** Every vector search reads the candidate items' rows
  in its own read transaction and keeps only live ones that match the namespace, the filter and
  (working memory) are not expired: a stale vector can cost a candidate, never return a deleted,
  forgotten or expired item. A tombstone deletes its item's vector when the indexer reaches it;
  a forgotten row's vector goes with the row (a trigger, migration 0007).
- **How far behind** is the number of changes after the cursor (an index range count); a search
  reports it per tier and can wait for it to reach 0 (:mod:`memrepl.storage.indexer`).
- **One model per index.** ``vector_indexes`` records the embedder's name and dimension; a
  store given another one drops the tier's vectors and starts again from cursor 0.

The scan: the cache keeps every vector of a tier in one float32 numpy matrix (unit rows), so a
query is one matrix-vector product and a partial sort; candidates are read back from SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from memrepl.namespaces import prefix_bounds
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.embedders import check_embedder, check_vectors, embedder_name, numpy
from memrepl.storage.keyword import indexed_text
from memrepl.storage.records import StoredItem, decode_json, item_from_values
from memrepl.storage.schema import TierSpec, item_vectors, vector_indexes

if TYPE_CHECKING:
    from memrepl.storage.embedders import Embedder, Matrix
    from memrepl.storage.search import SearchRequest, VectorRanker

#: Items embedded per indexer step (one call of the model, one write transaction).
DEFAULT_BATCH_ITEMS = 64


@dataclass(frozen=True, slots=True)
class Changes:
    """One step's work on one tier: what to embed, what to drop, the cursor it moves between."""

    tier: MemoryTier
    cursor_from: int
    cursor_to: int
    #: (item_id, modified_at, namespace text, text) of live items with text.
    embed: list[tuple[str, int, str, str]]
    #: Items whose vector must go (tombstones, items without text).
    drop: list[str]


def cursor_of(conn: Connection, tier: MemoryTier, name: str, dims: int) -> int:
    """The tier's cursor for this embedder (0 if the index is another model's or new)."""
    row = conn.execute(
        select(vector_indexes.c.embedder, vector_indexes.c.dims, vector_indexes.c.cursor).where(
            vector_indexes.c.tier == int(tier)
        )
    ).first()
    if row is None or (row.embedder, row.dims) != (name, dims):
        return 0
    return int(row.cursor)


def prepare(conn: Connection, tier: MemoryTier, name: str, dims: int, now_ns: int) -> None:
    """Make the tier's index this embedder's (in a write transaction): if it was another
    model's, its vectors are dropped and the cursor starts at 0."""
    row = conn.execute(
        select(vector_indexes.c.embedder, vector_indexes.c.dims).where(
            vector_indexes.c.tier == int(tier)
        )
    ).first()
    if row is not None and (row.embedder, row.dims) == (name, dims):
        return
    conn.execute(delete(item_vectors).where(item_vectors.c.tier == int(tier)))
    upsert = sqlite_insert(vector_indexes).values(
        tier=int(tier), embedder=name, dims=dims, cursor=0, updated_at_ns=now_ns
    )
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[vector_indexes.c.tier],
            set_={"embedder": name, "dims": dims, "cursor": 0, "updated_at_ns": now_ns},
        )
    )


def pending(conn: Connection, spec: TierSpec, cursor: int) -> int:
    """Changes of the tier after ``cursor``: how far behind the index is (an index range)."""
    table = spec.table
    count = conn.execute(select(func.count()).where(table.c.modified_at > cursor))
    return int(count.scalar_one())


def read_changes(
    conn: Connection, spec: TierSpec, name: str, dims: int, limit: int
) -> Changes | None:
    """The next ``limit`` changes to index (None: up to date), in ``modified_at`` order."""
    cursor = cursor_of(conn, spec.tier, name, dims)
    table = spec.table
    rows = conn.execute(
        select(
            table.c.item_id,
            table.c.modified_at,
            table.c.deleted,
            table.c.namespace,
            table.c.content,
        )
        .where(table.c.modified_at > cursor)
        .order_by(table.c.modified_at)
        .limit(limit)
    ).all()
    if not rows:
        return None
    embed, drop = [], []
    for item_id, modified_at, deleted, namespace, content in rows:
        body = "" if deleted else indexed_text(decode_json(content))
        if not body.strip():
            drop.append(item_id)
        else:
            embed.append((item_id, modified_at, namespace, body))
    return Changes(spec.tier, cursor, rows[-1][1], embed, drop)


def write_vectors(
    conn: Connection,
    changes: Changes,
    name: str,
    dims: int,
    *,
    matrix: Matrix | None,
    now_ns: int,
) -> bool:
    """Store one step's vectors and move the cursor, in the caller's write transaction.

    False (and nothing written) when the cursor moved since the step read it: another indexer
    (another process on the file, or a new embedder) got there first.
    """
    tier = int(changes.tier)
    if cursor_of(conn, changes.tier, name, dims) != changes.cursor_from:
        return False
    if changes.embed:
        assert matrix is not None and len(matrix) == len(changes.embed)
        upsert = sqlite_insert(item_vectors)
        upsert = upsert.on_conflict_do_update(
            index_elements=[item_vectors.c.tier, item_vectors.c.item_id],
            set_={
                "source_modified_at": upsert.excluded.source_modified_at,
                "namespace": upsert.excluded.namespace,
                "vector": upsert.excluded.vector,
            },
        )
        conn.execute(
            upsert,
            [
                {
                    "tier": tier,
                    "item_id": item_id,
                    "source_modified_at": modified_at,
                    "namespace": namespace,
                    "vector": row.tobytes(),
                }
                for (item_id, modified_at, namespace, _), row in zip(
                    changes.embed, matrix, strict=True
                )
            ],
        )
    if changes.drop:
        conn.execute(
            delete(item_vectors).where(
                item_vectors.c.tier == tier, item_vectors.c.item_id.in_(changes.drop)
            )
        )
    conn.execute(
        vector_indexes.update()
        .where(vector_indexes.c.tier == tier)
        .values(cursor=changes.cursor_to, updated_at_ns=now_ns)
    )
    return True


@dataclass(slots=True)
class VectorCache:
    """One tier's vectors in memory: a float32 matrix of unit rows, grown by doubling."""

    dims: int
    ids: list[str] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)
    #: Slots by namespace text, to narrow a search to a namespace before scoring.
    by_namespace: dict[str, set[int]] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    matrix: Any = None
    alive: Any = None
    #: The highest ``source_modified_at`` loaded from ``item_vectors``.
    high_water: int = 0

    def put(self, item_id: str, namespace: str, vector: Any) -> None:
        """Add or replace ``item_id``'s vector."""
        np = numpy()
        slot = self.slots.get(item_id)
        if slot is None:
            slot = len(self.ids)
            if self.matrix is None or slot == len(self.matrix):
                grown = np.zeros((max(1024, 2 * slot), self.dims), dtype=np.float32)
                alive = np.zeros(len(grown), dtype=bool)
                if self.matrix is not None:
                    grown[:slot] = self.matrix
                    alive[:slot] = self.alive
                self.matrix, self.alive = grown, alive
            self.ids.append(item_id)
            self.namespaces.append(namespace)
            self.slots[item_id] = slot
        else:
            self.by_namespace.get(self.namespaces[slot], set()).discard(slot)
            self.namespaces[slot] = namespace
        self.by_namespace.setdefault(namespace, set()).add(slot)
        self.matrix[slot] = vector
        self.alive[slot] = True

    def remove(self, item_id: str) -> None:
        """Forget ``item_id``'s vector (its slot stays, dead)."""
        slot = self.slots.get(item_id)
        if slot is not None:
            self.alive[slot] = False
            self.by_namespace.get(self.namespaces[slot], set()).discard(slot)

    def refresh(self, conn: Connection, tier: MemoryTier) -> None:
        """Load the vectors written after :attr:`high_water` (by this process or another)."""
        np = numpy()
        rows = conn.execute(
            select(
                item_vectors.c.item_id,
                item_vectors.c.source_modified_at,
                item_vectors.c.namespace,
                item_vectors.c.vector,
            )
            .where(
                item_vectors.c.tier == int(tier),
                item_vectors.c.source_modified_at > self.high_water,
            )
            .order_by(item_vectors.c.source_modified_at)
        ).all()
        for item_id, stamp, namespace, blob in rows:
            self.put(item_id, namespace, np.frombuffer(blob, dtype=np.float32))
            self.high_water = max(self.high_water, stamp)

    def top(self, query: Any, count: int, namespace: Sequence[str]) -> list[tuple[str, float]]:
        """The ``count`` best (item_id, cosine) under ``namespace`` (a prefix), best first."""
        np = numpy()
        size = len(self.ids)
        if size == 0 or count == 0:
            return []
        if namespace:
            exact, low, high = prefix_bounds(tuple(namespace))
            chosen = [
                slot
                for text_form, slots in self.by_namespace.items()
                if text_form == exact or low <= text_form < high
                for slot in slots
            ]
            if not chosen:
                return []
            candidates = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
            scores = self.matrix[candidates] @ query
        else:
            # The whole matrix in one product; dead slots (removed items) can never win.
            candidates = None
            scores = self.matrix[:size] @ query
            dead = ~self.alive[:size]
            if dead.any():
                scores[dead] = -np.inf
        count = min(count, len(scores))
        best = np.argpartition(scores, len(scores) - count)[len(scores) - count :]
        best = best[np.argsort(-scores[best], kind="stable")]
        slots = best if candidates is None else candidates[best]
        return [
            (self.ids[slot], float(scores[index]))
            for slot, index in zip(slots, best, strict=True)
            if np.isfinite(scores[index])
        ]


class VectorIndex:
    """A store's vector index: the embedder, each tier's cache, and the search ranking.

    Shared by the store's searches and its indexer (thread or task): the caches are guarded by
    one lock.
    """

    def __init__(self, embedder: Embedder, *, batch_items: int = DEFAULT_BATCH_ITEMS) -> None:
        numpy()
        self.embedder = embedder
        self.dims = check_embedder(embedder)
        self.name = embedder_name(embedder)
        self.batch_items = batch_items
        self.caches: dict[MemoryTier, VectorCache] = {}
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Checked unit vectors for ``texts`` (see :func:`check_vectors`)."""
        return check_vectors(self.embedder, texts)

    def embed_query(self, query: str) -> Any:
        """The unit vector of a search query."""
        return self.embed([query])[0]

    def cache(self, tier: MemoryTier) -> VectorCache:
        found = self.caches.get(tier)
        if found is None:
            found = self.caches[tier] = VectorCache(self.dims)
        return found

    def applied(self, changes: Changes, matrix: Matrix | None) -> None:
        """Bring the cache up to a step just committed by this process."""
        with self.lock:
            cache = self.cache(changes.tier)
            for index, (item_id, stamp, namespace, _) in enumerate(changes.embed):
                assert matrix is not None
                cache.put(item_id, namespace, matrix[index])
                cache.high_water = max(cache.high_water, stamp)
            for item_id in changes.drop:
                cache.remove(item_id)

    def ranker(self) -> VectorRanker:
        """The vector ranking a search runs on each tier (see the module docstring)."""
        return self._rank

    def _rank(
        self, conn: Connection, spec: TierSpec, req: SearchRequest, now_ns: int, count: int
    ) -> list[tuple[StoredItem, float]]:
        from memrepl.storage.search import row_conditions

        if count == 0 or req.vector is None:
            return []
        table = spec.table
        conditions = [table.c.deleted.is_(False), *row_conditions(spec, req, now_ns)]
        wanted = count * 2 + 8
        while True:
            with self.lock:
                cache = self.cache(spec.tier)
                cache.refresh(conn, spec.tier)
                candidates = cache.top(req.vector, wanted, req.namespace)
            ids = [item_id for item_id, _ in candidates]
            live = {
                item.item_id: item
                for item in (
                    item_from_values(spec, tuple(row))
                    for row in conn.execute(
                        select(table).where(table.c.item_id.in_(ids), *conditions)
                    )
                )
            }
            ranked = [(live[i], score) for i, score in candidates if i in live]
            if len(ranked) >= count or len(candidates) < wanted:
                return ranked[:count]
            wanted *= 4
