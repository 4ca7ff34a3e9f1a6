"""memrepl as a LangGraph store: ``MemreplStore``, LangGraph's ``BaseStore`` over a memrepl
store, so an agent's long-term memory is durable and replicates between machines.

``pip install 'memrepl[langgraph]'``, then change one line::

    from memrepl.integrations.langgraph import MemreplStore

    store = MemreplStore("agent.db", node_id="agent-1")   # was: InMemoryStore()
    graph = builder.compile(store=store)

See :mod:`.store` for what each operation does in memrepl's terms, and the README's "Using
memrepl from LangGraph" for the choices made and a two-machine example.
"""

from __future__ import annotations

from memrepl.integrations.langgraph.embeddings import LangChainEmbedder
from memrepl.integrations.langgraph.status import ConflictEntry, PeerSync, SyncStatus, Version
from memrepl.integrations.langgraph.store import MemreplStore

__all__ = [
    "ConflictEntry",
    "LangChainEmbedder",
    "MemreplStore",
    "PeerSync",
    "SyncStatus",
    "Version",
]
