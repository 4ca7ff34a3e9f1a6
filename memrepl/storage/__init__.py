"""memrepl's storage layer: the three memory tiers in SQLite, through SQLAlchemy 2 Core.

What lives where (each module's docstring gives its rule):

- :mod:`~memrepl.storage.schema`: every table and column, defined once; the :class:`TierSpec`
  of each tier.
- :mod:`~memrepl.storage.engine`: engines with memrepl's pragmas and ``BEGIN IMMEDIATE`` writes.
- :mod:`~memrepl.storage.migrate`: the Alembic migrations run on open.
- :mod:`~memrepl.storage.node`: the node row and the persisted hybrid logical clock.
- :mod:`~memrepl.storage.items`: every operation on items, once, over a ``Connection``.
- :mod:`~memrepl.storage.validation`: what a local write may store (ids, JSON content, size).
- :mod:`~memrepl.storage.working`, :mod:`~memrepl.storage.episodic`,
  :mod:`~memrepl.storage.semantic`: what each tier adds (eviction and TTL; episode queries;
  deterministic ids and the networkx graph).
- :mod:`~memrepl.storage.records`: :class:`StoredItem` and its row and record forms.
- :mod:`~memrepl.storage.tiers`: the seed's tier interface, sync and asyncio;
  :mod:`~memrepl.storage.working_tiers`: the working tier's (pinning, TTL);
  :mod:`~memrepl.storage.graph_tiers`: the semantic tier's, with its graph.
- :mod:`~memrepl.storage.driver`: the hot statements, compiled once and run on the DBAPI cursor.
- :mod:`~memrepl.storage.store`: :func:`open`, :class:`Store` and :class:`AsyncStore`.
- :mod:`~memrepl.storage.counts`: counting what a tier holds and what changed after a cursor.
- :mod:`~memrepl.storage.peek`: reading a store file read-only with sqlite3 alone (fast CLI
  reads: no SQLAlchemy, no migration, no access counted).

``memrepl.open(path, node_id=...)`` is the durable entry point; the bare ``WorkingMemory()``,
``EpisodicMemory()`` and ``SemanticMemory()`` each open a private in-memory store that is NOT
durable (it is gone with the object).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memrepl.lazy import lazy_exports

if TYPE_CHECKING:
    from memrepl.storage.graph_tiers import AsyncSemanticMemory, SemanticMemory
    from memrepl.storage.items import LocalWrite, RemoteItem
    from memrepl.storage.records import Record, StoredItem
    from memrepl.storage.schema import TierSpec
    from memrepl.storage.store import AsyncStore, Store, open
    from memrepl.storage.tiers import AsyncEpisodicMemory, AsyncTier, EpisodicMemory, Tier
    from memrepl.storage.working_tiers import AsyncWorkingMemory, WorkingMemory

# Imported when first used (memrepl.lazy): memrepl.storage.peek, which the fast command-line
# reads use, must not pay for SQLAlchemy and networkx through this package.
__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncSemanticMemory": "memrepl.storage.graph_tiers",
        "SemanticMemory": "memrepl.storage.graph_tiers",
        "LocalWrite": "memrepl.storage.items",
        "RemoteItem": "memrepl.storage.items",
        "Record": "memrepl.storage.records",
        "StoredItem": "memrepl.storage.records",
        "TierSpec": "memrepl.storage.schema",
        "AsyncStore": "memrepl.storage.store",
        "Store": "memrepl.storage.store",
        "open": "memrepl.storage.store",
        "AsyncEpisodicMemory": "memrepl.storage.tiers",
        "AsyncTier": "memrepl.storage.tiers",
        "AsyncWorkingMemory": "memrepl.storage.working_tiers",
        "EpisodicMemory": "memrepl.storage.tiers",
        "Tier": "memrepl.storage.tiers",
        "WorkingMemory": "memrepl.storage.working_tiers",
    },
)

__all__ = [
    "AsyncEpisodicMemory",
    "AsyncSemanticMemory",
    "AsyncStore",
    "AsyncTier",
    "AsyncWorkingMemory",
    "EpisodicMemory",
    "LocalWrite",
    "Record",
    "RemoteItem",
    "SemanticMemory",
    "Store",
    "StoredItem",
    "Tier",
    "TierSpec",
    "WorkingMemory",
    "open",
]
