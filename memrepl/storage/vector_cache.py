"""One tier's vectors in memory, and the scan a vector search runs over them.

The vector index (:mod:`memrepl.storage.vector_index`) stores one or more unit vectors per item in
``item_vectors`` (one per text its filing options select, :mod:`memrepl.filing`, one after the
other in the row's blob). A
:class:`VectorCache` holds every vector of a tier in one float32 numpy matrix (a *slot* per
vector, grown by doubling), so a query is one matrix-vector product and a partial sort.

The rules that keep it right:

- **An item scores by its best vector** (max pooling, as LangGraph's stores rank an item with
  several embedded fields), and appears once in a ranking.
- **A slot belongs to one item or to none.** Replacing an item's vectors reuses its slots (and
  kills the ones it no longer needs); removing it kills them. A dead slot can never win: its
  score is -infinity before the sort. With no item holding more than one vector (the common
  case), scores are taken per slot and no pooling runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from memrepl.namespaces import prefix_bounds
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.embedders import numpy
from memrepl.storage.schema import item_vectors

#: The owner of a dead slot.
NO_ITEM = -1


@dataclass(slots=True)
class VectorCache:
    """One tier's vectors in memory (see the module docstring)."""

    dims: int
    #: Item ids by item number, and the numbers by id (an item keeps its number once seen).
    ids: list[str] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)
    #: Each live item's slots, and its namespace text by item number.
    slots: dict[str, list[int]] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    #: Live slots by namespace text, to narrow a search to a namespace before scoring.
    by_namespace: dict[str, set[int]] = field(default_factory=dict)
    #: The vectors (one row per slot) and the item number owning each slot (NO_ITEM: dead).
    matrix: Any = None
    owners: Any = None
    #: Slots in use (live or dead), and how many live items hold more than one.
    used: int = 0
    multi: int = 0
    #: The highest ``source_modified_at`` loaded from ``item_vectors``.
    high_water: int = 0

    def _number(self, item_id: str, namespace: str) -> int:
        number = self.numbers.get(item_id)
        if number is None:
            number = self.numbers[item_id] = len(self.ids)
            self.ids.append(item_id)
            self.namespaces.append(namespace)
        return number

    def _new_slot(self) -> int:
        np = numpy()
        slot = self.used
        if self.matrix is None or slot == len(self.matrix):
            grown = np.zeros((max(1024, 2 * slot), self.dims), dtype=np.float32)
            owners = np.full(len(grown), NO_ITEM, dtype=np.int64)
            if self.matrix is not None:
                grown[:slot] = self.matrix
                owners[:slot] = self.owners
            self.matrix, self.owners = grown, owners
        self.used += 1
        return slot

    def put(self, item_id: str, namespace: str, vectors: Any) -> None:
        """Add or replace ``item_id``'s vectors (a matrix of unit rows, at least one)."""
        number = self._number(item_id, namespace)
        old = self.slots.pop(item_id, [])
        if len(old) > 1:
            self.multi -= 1
        self.by_namespace.get(self.namespaces[number], set()).difference_update(old)
        for slot in old[len(vectors) :]:
            self.owners[slot] = NO_ITEM
        slots = old[: len(vectors)]
        while len(slots) < len(vectors):
            slots.append(self._new_slot())
        for slot, vector in zip(slots, vectors, strict=True):
            self.matrix[slot] = vector
            self.owners[slot] = number
        self.slots[item_id] = slots
        if len(slots) > 1:
            self.multi += 1
        self.namespaces[number] = namespace
        self.by_namespace.setdefault(namespace, set()).update(slots)

    def remove(self, item_id: str) -> None:
        """Forget ``item_id``'s vectors (their slots stay, dead)."""
        slots = self.slots.pop(item_id, None)
        if slots is None:
            return
        if len(slots) > 1:
            self.multi -= 1
        for slot in slots:
            self.owners[slot] = NO_ITEM
        number = self.numbers[item_id]
        self.by_namespace.get(self.namespaces[number], set()).difference_update(slots)

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
            vectors = np.frombuffer(blob, dtype=np.float32).reshape(-1, self.dims)
            self.put(item_id, namespace, vectors)
            self.high_water = max(self.high_water, stamp)

    def _candidate_slots(self, namespace: Sequence[str]) -> Any:
        """The live slots under ``namespace`` (a prefix), or None for every slot in use."""
        np = numpy()
        if not namespace:
            return None
        exact, low, high = prefix_bounds(tuple(namespace))
        chosen = [
            slot
            for text_form, slots in self.by_namespace.items()
            if text_form == exact or low <= text_form < high
            for slot in slots
        ]
        return np.fromiter(chosen, dtype=np.int64, count=len(chosen))

    def top(self, query: Any, count: int, namespace: Sequence[str]) -> list[tuple[str, float]]:
        """The ``count`` best (item_id, cosine of its best vector) under ``namespace`` (a
        prefix), best first."""
        np = numpy()
        if self.used == 0 or count == 0:
            return []
        candidates = self._candidate_slots(namespace)
        if candidates is None:
            # The whole matrix in one product; dead slots can never win.
            scores = self.matrix[: self.used] @ query
            owners = self.owners[: self.used]
            scores[owners == NO_ITEM] = -np.inf
        else:
            if len(candidates) == 0:
                return []
            scores = self.matrix[candidates] @ query
            owners = self.owners[candidates]
        if self.multi:
            # Max pooling: each item's best vector (items without a candidate stay -inf).
            pooled = np.full(len(self.ids), -np.inf, dtype=scores.dtype)
            alive = owners != NO_ITEM
            np.maximum.at(pooled, owners[alive], scores[alive])
            scores, owners = pooled, np.arange(len(self.ids))
        count = min(count, len(scores))
        best = np.argpartition(scores, len(scores) - count)[len(scores) - count :]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [
            (self.ids[int(owners[index])], float(scores[index]))
            for index in best
            if np.isfinite(scores[index])
        ]
