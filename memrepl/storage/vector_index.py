"""The vector index: embeddings of each tier's items, filled from the change feed after commit.

What this module owns: the storage of vectors (``item_vectors``, ``vector_indexes``), one step
of the indexer (:func:`read_changes` then :func:`write_vectors`, with the model called between
the two, outside any transaction), and the vector ranking a search uses
(:meth:`VectorIndex.ranker`) over each tier's in-memory matrix
(:class:`~memrepl.storage.vector_cache.VectorCache`).

The rules that keep it right:

- **Writes never wait for a model.** The indexer follows a tier's change feed -- its
  ``modified_at`` cursor, as replication does -- from ``vector_indexes.cursor``; a step reads
  the next changes, embeds them with no transaction open, then writes their vectors and the new
  cursor in one short write transaction, only if the cursor is still where it read it.
- **What is embedded** is chosen by the item's filing options (:mod:`memrepl.filing`), which
  replicate with it, so every node embeds an item alike: by default one text, the keyword
  index's (every string value); with content paths, each text they select, as a vector of its
  own (an item scores by its best one); with ``embed=()``, nothing.
- **Derived and exact where it matters.** Every vector search reads the candidate items' rows
  in its own read transaction and keeps only live ones that match the namespace, the filter and
  are not expired: a stale vector can cost a candidate, never return a deleted, forgotten or
  expired item. A tombstone deletes its item's vectors when the indexer reaches it; a forgotten
  row's vectors go with the row (a trigger, migration 0007).
- **How far behind** is the number of changes after the cursor (an index range count); a search
  reports it per tier and can wait for it to reach 0 (:mod:`memrepl.storage.indexer`).
- **One model per index.** ``vector_indexes`` records the embedder's name and dimension; a
  store given another one drops the tier's vectors and starts again from cursor 0.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from memrepl.filing import embed_texts, stored_options
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.backends import backend_of
from memrepl.storage.embedders import (
    check_embedder,
    check_query_vector,
    check_vectors,
    embedder_name,
    numpy,
)
from memrepl.storage.fastjson import decode_json
from memrepl.storage.keyword import indexed_text
from memrepl.storage.records import StoredItem, item_from_values
from memrepl.storage.schema import TierSpec, item_vectors, vector_indexes
from memrepl.storage.vector_cache import VectorCache

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
    #: (item_id, modified_at, namespace text, texts) of live items with text: one vector each.
    embed: list[tuple[str, int, str, list[str]]]
    #: Items whose vectors must go (tombstones, items without text).
    drop: list[str]

    @property
    def texts(self) -> list[str]:
        """Every text to embed, item after item: the rows of the step's matrix."""
        return [text for *_, texts in self.embed for text in texts]


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
    upsert = (
        backend_of(conn)
        .insert(vector_indexes)
        .values(tier=int(tier), embedder=name, dims=dims, cursor=0, updated_at_ns=now_ns)
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
            table.c.item_options,
        )
        .where(table.c.modified_at > cursor)
        .order_by(table.c.modified_at)
        .limit(limit)
    ).all()
    if not rows:
        return None
    embed, drop = [], []
    for item_id, modified_at, deleted, namespace, content, options in rows:
        texts = [] if deleted else item_texts(decode_json(content), options)
        if not texts:
            drop.append(item_id)
        else:
            embed.append((item_id, modified_at, namespace, texts))
    return Changes(spec.tier, cursor, rows[-1][1], embed, drop)


def item_texts(content: Mapping[str, Any], options: str) -> list[str]:
    """The texts embedded for an item: those its filing options' paths select
    (:mod:`memrepl.filing`: each its own vector; none for ``embed=()``), or by default one text,
    every string value (:func:`memrepl.storage.keyword.indexed_text`). Blank texts are left out
    (a model may make a zero vector of one, which has no direction)."""
    paths = stored_options(options).embed
    texts = [indexed_text(content)] if paths is None else embed_texts(content, paths)
    return [text for text in texts if text.strip()]


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
        assert matrix is not None and len(matrix) == len(changes.texts)
        upsert = backend_of(conn).insert(item_vectors)
        upsert = upsert.on_conflict_do_update(
            index_elements=[item_vectors.c.tier, item_vectors.c.item_id],
            set_={
                "source_modified_at": upsert.excluded.source_modified_at,
                "namespace": upsert.excluded.namespace,
                "vector": upsert.excluded.vector,
            },
        )
        rows: list[dict[str, Any]] = []
        start = 0
        for item_id, modified_at, namespace, texts in changes.embed:
            # An item's vectors, one per text, one after the other in one blob.
            vectors = matrix[start : start + len(texts)]
            start += len(texts)
            rows.append(
                {
                    "tier": tier,
                    "item_id": item_id,
                    "source_modified_at": modified_at,
                    "namespace": namespace,
                    "vector": vectors.tobytes(),
                }
            )
        conn.execute(upsert, rows)
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
        """The unit vector of a search query: the embedder's ``embed_query`` when it has one
        (models that embed queries and documents differently), else ``embed``."""
        return check_query_vector(self.embedder, query)

    def cache(self, tier: MemoryTier) -> VectorCache:
        found = self.caches.get(tier)
        if found is None:
            found = self.caches[tier] = VectorCache(self.dims)
        return found

    def applied(self, changes: Changes, matrix: Matrix | None) -> None:
        """Bring the cache up to a step just committed by this process."""
        with self.lock:
            cache = self.cache(changes.tier)
            start = 0
            for item_id, stamp, namespace, texts in changes.embed:
                assert matrix is not None
                cache.put(item_id, namespace, matrix[start : start + len(texts)])
                start += len(texts)
                cache.high_water = max(cache.high_water, stamp)
            for item_id in changes.drop:
                cache.remove(item_id)

    def ranker(self) -> VectorRanker:
        """The vector ranking a search runs on each tier (see the module docstring)."""
        return self._rank

    def _rank(
        self,
        conn: Connection,
        spec: TierSpec,
        req: SearchRequest,
        now_ns: int | None,
        count: int,
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
