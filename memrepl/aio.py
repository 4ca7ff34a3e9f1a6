"""memrepl for asyncio: ``await memrepl.aio.open(path, node_id=...)`` returns an AsyncStore.

The asyncio API is a twin, not a second implementation (ARCHITECTURE.md, "The layers"): it
uses the aiosqlite driver, and every tier method is a coroutine running the same storage function
as the synchronous API through ``AsyncConnection.run_sync``. A file written by one is read by
the other.
"""

from __future__ import annotations

from memrepl.storage.graph_tiers import AsyncSemanticMemory
from memrepl.storage.store import AsyncStore
from memrepl.storage.store import open_async as open
from memrepl.storage.tiers import AsyncEpisodicMemory, AsyncTier
from memrepl.storage.working_tiers import AsyncWorkingMemory

__all__ = [
    "AsyncEpisodicMemory",
    "AsyncSemanticMemory",
    "AsyncStore",
    "AsyncTier",
    "AsyncWorkingMemory",
    "open",
]
